//! The built-in NECPGAME example (the files of `examples/necpgame/`, compiled in), written
//! out for `weft demo`.

use anyhow::Context;
use std::path::Path;

/// (file name, contents) of the example.
pub const NECPGAME: &[(&str, &str)] = &[
    (
        "registry.yaml",
        include_str!("../../../examples/necpgame/registry.yaml"),
    ),
    (
        "istio-gateway.yaml",
        include_str!("../../../examples/necpgame/istio-gateway.yaml"),
    ),
    (
        "destination-rule.yaml",
        include_str!("../../../examples/necpgame/destination-rule.yaml"),
    ),
    (
        "peer-authentication.yaml",
        include_str!("../../../examples/necpgame/peer-authentication.yaml"),
    ),
    (
        "authorization-policy.yaml",
        include_str!("../../../examples/necpgame/authorization-policy.yaml"),
    ),
    (
        "service-entry.yaml",
        include_str!("../../../examples/necpgame/service-entry.yaml"),
    ),
];

/// Writes the example into `dir` (replacing files of the same name).
pub fn write_necpgame(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in NECPGAME {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    Ok(())
}
