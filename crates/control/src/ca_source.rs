//! The CA the control plane signs with, and where it came from. A plug-in CA folder
//! (`--cacerts`) is re-read when its files change — checked on each certificate request,
//! as istiod watches its `cacerts` — so an operator rotates the signing CA or the trust
//! bundle (old and new roots together, then the new alone) without a restart; workloads
//! pick the change up at their next renewal. A folder that fails to load leaves the last
//! good CA in place and says why.

use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use weft_identity::Ca;

const FILES: [&str; 4] = [
    "ca-cert.pem",
    "ca-key.pem",
    "root-cert.pem",
    "cert-chain.pem",
];

/// The signing CA, reloaded from its folder when the files change.
pub struct CaSource {
    current: ArcSwap<Ca>,
    folder: Option<(PathBuf, String)>,
    /// Modification times of the folder's files when last loaded.
    loaded: Mutex<Vec<Option<SystemTime>>>,
}

fn mtimes(dir: &std::path::Path) -> Vec<Option<SystemTime>> {
    FILES
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

impl CaSource {
    /// A CA that never changes (generated, or a root given as files).
    pub fn fixed(ca: Ca) -> CaSource {
        CaSource {
            current: ArcSwap::from_pointee(ca),
            folder: None,
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// Istio's plug-in CA folder.
    pub fn cacerts(dir: PathBuf, trust_domain: &str) -> weft_identity::Result<CaSource> {
        let stamp = mtimes(&dir);
        let ca = Ca::from_istio_cacerts(&dir, trust_domain)?;
        Ok(CaSource {
            current: ArcSwap::from_pointee(ca),
            folder: Some((dir, trust_domain.to_string())),
            loaded: Mutex::new(stamp),
        })
    }

    /// The CA to sign with now (re-read first if its folder changed).
    pub fn get(&self) -> Arc<Ca> {
        if let Some((dir, td)) = &self.folder {
            let now = mtimes(dir);
            let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if *loaded != now {
                // Recorded only once the files load: a folder caught half-written is
                // read again on the next request.
                match Ca::from_istio_cacerts(dir, td) {
                    Ok(ca) => {
                        *loaded = now;
                        tracing::info!(folder = %dir.display(), "plug-in CA files changed; signing with the reloaded CA and trust bundle");
                        self.current.store(Arc::new(ca));
                    }
                    Err(e) => {
                        tracing::error!(folder = %dir.display(), error = %e, "plug-in CA files changed but do not load; still signing with the previous CA")
                    }
                }
            }
        }
        self.current.load_full()
    }
}
