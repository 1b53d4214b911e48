//! Where each sidecar serves the SPIFFE Workload API: `<state>/sockets/<proxy>.sock`, in a
//! folder only this user may enter (mode 0700). Unix socket paths are short (`sun_path`:
//! 108 bytes on Linux, 104 on macOS), so when the state folder is too deep for them the
//! sockets go to a private folder under the system temp dir named after the state folder,
//! and if even that is too long `weft up` stops saying so.

use super::{Mesh, Role};
use anyhow::{bail, Context};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use weft_protocol::workload::MAX_SOCKET_PATH;

impl Mesh {
    fn sidecar_names(&self) -> impl Iterator<Item = &str> {
        self.procs
            .iter()
            .filter(|p| p.role == Role::Sidecar)
            .map(|p| p.name.as_str())
    }

    /// The folder of the Workload API sockets: `<state>/sockets` (absolute) when every
    /// sidecar's socket path fits, else `<temp>/weft-<hash of the state folder>`.
    pub(crate) fn socket_dir(&self) -> PathBuf {
        let state = std::path::absolute(&self.opts.state_dir)
            .unwrap_or_else(|_| self.opts.state_dir.clone());
        let preferred = state.join("sockets");
        if self.fits(&preferred) {
            return preferred;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        state.hash(&mut h);
        std::env::temp_dir().join(format!("weft-{:016x}", h.finish()))
    }

    fn fits(&self, dir: &Path) -> bool {
        self.sidecar_names()
            .all(|n| socket_in(dir, n).as_os_str().len() <= MAX_SOCKET_PATH)
    }

    /// The Workload API socket of sidecar process `name`.
    pub(crate) fn workload_api_socket(&self, name: &str) -> PathBuf {
        socket_in(&self.socket_dir(), name)
    }

    /// Creates the socket folder, private to this user, before any sidecar starts.
    pub(crate) fn create_socket_dir(&self) -> anyhow::Result<()> {
        let dir = self.socket_dir();
        if !self.fits(&dir) {
            let longest = self
                .sidecar_names()
                .map(|n| socket_in(&dir, n))
                .max_by_key(|p| p.as_os_str().len())
                .unwrap_or_default();
            bail!(
                "the Workload API socket {} would be {} bytes, over the {MAX_SOCKET_PATH} a Unix socket path may have; use shorter workload names or a shorter temp dir (TMPDIR)",
                longest.display(),
                longest.as_os_str().len()
            );
        }
        match std::fs::symlink_metadata(&dir) {
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating the socket folder {}", dir.display()))?,
            Ok(m) if self.in_state(&dir) => {
                // Our own state folder: make sure it is private.
                if !m.is_dir() {
                    bail!("{} exists and is not a folder", dir.display());
                }
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("making {} private", dir.display()))?;
            }
            Ok(m) => {
                // A folder in the shared temp dir: only if it is ours and private already.
                let me = std::fs::metadata(&self.opts.state_dir)
                    .with_context(|| format!("reading {}", self.opts.state_dir.display()))?
                    .uid();
                if !m.is_dir() || m.uid() != me || m.mode() & 0o077 != 0 {
                    bail!(
                        "refusing to put the Workload API sockets in {}: it exists and is not a private folder of this user",
                        dir.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// After shutdown: removes the sockets (a killed proxy leaves its own), and the
    /// folder too when it is the one in the temp dir.
    pub(crate) fn remove_sockets(&self) {
        let dir = self.socket_dir();
        for n in self.sidecar_names() {
            let _ = std::fs::remove_file(socket_in(&dir, n));
        }
        if !self.in_state(&dir) {
            let _ = std::fs::remove_dir(&dir);
        }
    }

    fn in_state(&self, dir: &Path) -> bool {
        std::path::absolute(&self.opts.state_dir).is_ok_and(|s| dir.starts_with(s))
    }
}

fn socket_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{App, Plan, Workload};
    use crate::UpOptions;
    use std::time::Duration;

    fn mesh(state_dir: PathBuf) -> Mesh {
        let opts = UpOptions {
            config_dir: state_dir.join("config"),
            state_dir,
            weft: "weft".into(),
            trust_domain: "cluster.local".into(),
            ca_files: None,
            cacerts: None,
            cert_ttl: Duration::from_secs(60),
            traffic: None,
            https_hint: None,
            dns_server: None,
        };
        let plan = Plan {
            gateways: Vec::new(),
            workloads: vec![Workload {
                name: "inventory-v1".into(),
                namespace: "necpgame".into(),
                app: App::Command {
                    command: "true".into(),
                    address: None,
                },
                metrics: None,
            }],
        };
        Mesh::new(opts, &plan)
    }

    #[test]
    fn sockets_live_in_the_state_folder_when_they_fit() {
        let m = mesh("/srv/mesh/state".into());
        assert_eq!(
            m.workload_api_socket("sidecar-inventory-v1.necpgame"),
            Path::new("/srv/mesh/state/sockets/sidecar-inventory-v1.necpgame.sock")
        );
    }

    #[test]
    fn a_deep_state_folder_moves_them_to_a_private_temp_folder() {
        let base = std::env::temp_dir().join(format!("weft-sockets-{}", std::process::id()));
        let deep = base.join("d".repeat(90)).join("state");
        std::fs::create_dir_all(&deep).unwrap();
        let m = mesh(deep.clone());
        let socket = m.workload_api_socket("sidecar-inventory-v1.necpgame");
        assert!(!socket.starts_with(&deep), "{socket:?}");
        assert!(socket.as_os_str().len() <= MAX_SOCKET_PATH, "{socket:?}");
        // The same state folder always maps to the same place (restarts find it).
        assert_eq!(mesh(deep.clone()).socket_dir(), m.socket_dir());
        m.create_socket_dir().unwrap();
        let mode = std::fs::metadata(m.socket_dir()).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A folder there that others may enter is not used.
        std::fs::set_permissions(m.socket_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = m.create_socket_dir().unwrap_err().to_string();
        assert!(err.contains("not a private folder"), "{err}");
        std::fs::set_permissions(m.socket_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        m.remove_sockets();
        assert!(!m.socket_dir().exists());
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn names_too_long_for_any_folder_are_an_error_in_words() {
        let mut m = mesh("/srv/state".into());
        m.procs[2].name = format!("sidecar-{}.ns", "w".repeat(120));
        let err = m.create_socket_dir().unwrap_err().to_string();
        assert!(
            err.contains("over the 103 a Unix socket path may have"),
            "{err}"
        );
    }
}
