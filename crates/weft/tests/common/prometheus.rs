//! A real Prometheus (Debian's `prometheus` package) for the end-to-end tests: started on
//! `127.0.0.1:0` (Prometheus binds the port the OS picks and logs the address it listens
//! on, which we read — no port is chosen ahead), stopped on drop, and queried through its
//! HTTP API with curl.

use super::{curl, poll_until, stdout_of, Captured, ChildGuard, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Prometheus {
    /// `127.0.0.1:P` of its web/API listener.
    pub addr: String,
    pub stderr: Captured,
    _child: ChildGuard,
    _data: TempDir,
}

impl Prometheus {
    /// Starts `prometheus --config.file=<config>` with a fresh TSDB folder.
    pub fn start(config: &Path) -> Prometheus {
        let found = Command::new("prometheus").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "this test runs Debian's Prometheus: apt-get install prometheus (.ci/run does)"
        );
        let data = TempDir::new("prometheus-data");
        let (child, _stdout, stderr) = ChildGuard::spawn(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.path().display()))
                // Port 0: Go's listener takes what the OS gives; Prometheus logs it.
                .arg("--web.listen-address=127.0.0.1:0"),
        );
        let addr = stderr.wait_for("Prometheus to listen", 0, Duration::from_secs(60), |text| {
            let found = text
                .lines()
                .filter(|l| l.contains("msg=\"Listening on\""))
                .find_map(|l| l.split("address=").nth(1))
                .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
                .filter(|a| !a.ends_with(":0"));
            assert!(!text.contains("level=error"), "prometheus failed:\n{text}");
            found
        });
        let p = Prometheus {
            addr,
            stderr,
            _child: child,
            _data: data,
        };
        poll_until("Prometheus to be ready", Duration::from_secs(60), || {
            let out = curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{}/-/ready", p.addr),
            ]);
            (stdout_of(&out) == "200").then_some(())
        });
        p
    }

    /// `GET /api/v1/<path>` with URL-encoded parameters; the parsed JSON answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("http://{}/api/v1/{path}", self.addr);
        let mut args = vec!["-s".to_string(), "-G".to_string(), url];
        for (k, v) in params {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(&args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("Prometheus answered no JSON ({e}): {}", stdout_of(&out)))
    }

    /// An instant query at `time` (Unix seconds; `None` = now): the answer's `data.result`,
    /// or the error Prometheus gave.
    pub fn query(&self, q: &str, time: Option<f64>) -> Result<Vec<Value>, String> {
        let t = time.map(|t| format!("{t:.3}"));
        let mut params = vec![("query", q)];
        if let Some(t) = &t {
            params.push(("time", t.as_str()));
        }
        let v = self.api("query", &params);
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of each series of an instant vector, keyed by `label`'s value.
    pub fn by_label(&self, q: &str, label: &str, time: Option<f64>) -> Vec<(String, f64)> {
        self.query(q, time)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .iter()
            .map(|s| {
                let key = s["metric"][label].as_str().unwrap_or("").to_string();
                let v = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (key, v)
            })
            .collect()
    }
}
