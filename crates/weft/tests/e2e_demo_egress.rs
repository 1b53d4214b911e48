//! `weft demo` with the NECPGAME example's `service-entry.yaml`: the demo starts a real
//! redis-server and PostgreSQL outside the mesh plus a dnsmasq for their names, checks
//! each through a sidecar's TCP listener (Redis PING, PostgreSQL `select 1`), reports Kafka
//! skipped (no Kafka on this machine), and stops those servers when it ends.
//!
//! Needs redis-server, PostgreSQL under /usr/lib/postgresql and dnsmasq (.ci/run installs
//! them). About 5 s.

mod common;

use common::*;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

#[test]
fn demo_starts_and_checks_the_services_outside_the_mesh() {
    let _serial = serial();
    let dir = TempDir::new("demo-egress");
    let state = dir.path().join("state");
    let (mut child, stdout, stderr) = ChildGuard::spawn(
        Command::new(WEFT)
            .args(["demo", "--duration", "1", "--state-dir"])
            .arg(&state),
    );
    let status = child.wait_timeout(Duration::from_secs(120));
    let text = stdout.wait_closed(Duration::from_secs(10));
    let report = || format!("stdout:\n{text}\nstderr:\n{}", stderr.text());
    assert!(
        status.success(),
        "weft demo exited with {status}\n{}",
        report()
    );
    let line = |prefix: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}\n{}", report()))
            .to_string()
    };

    // Started, each at a loopback address of its own on its declared port.
    let redis = line("egress: redis.necpgame-data.example:6379 (redis-server) started at ");
    let postgres = line("egress: postgres.necpgame-data.example:5432 (postgres) started at ");
    let addr = |l: &str| l.rsplit_once(" started at ").unwrap().1.to_string();
    let (redis_addr, pg_addr) = (addr(&redis), addr(&postgres));
    assert!(
        redis_addr.starts_with("127.") && redis_addr.ends_with(":6379"),
        "{redis}"
    );
    assert!(
        pg_addr.starts_with("127.") && pg_addr.ends_with(":5432"),
        "{postgres}"
    );
    assert!(
        line("egress: kafka.necpgame-data.example:9092 ").contains("skipped (Kafka not found"),
        "{}",
        report()
    );
    assert!(line("egress: DNS for those names: dnsmasq at 127.0.0.1:").len() > 40);

    // Checked through a sidecar's TCP listener (resolved by the demo's dnsmasq).
    let redis_check = line("egress: redis.necpgame-data.example via sidecar-");
    assert!(redis_check.ends_with("→ PONG"), "{}", report());
    let pg_check = line("egress: postgres.necpgame-data.example via sidecar-");
    assert!(pg_check.ends_with("→ select 1 = 1 (psql)"), "{}", report());
    assert!(!text.contains("FAILED"), "{}", report());
    assert!(
        text.lines()
            .rev()
            .find(|l| l.starts_with("success"))
            .is_some_and(|l| l.contains("PASS")),
        "{}",
        report()
    );

    // The servers stopped with the demo.
    for a in [&redis_addr, &pg_addr] {
        poll_until(
            "the demo's servers to stop",
            Duration::from_secs(10),
            || {
                TcpStream::connect_timeout(&a.parse().unwrap(), Duration::from_millis(200))
                    .is_err()
                    .then_some(())
            },
        );
    }
}
