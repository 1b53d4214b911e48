//! Unit tests of `lb`: picking, outlier detection (split local-origin errors too), panic
//! mode, consistent hashing, the request limit (kept apart so the module stays readable).

use super::*;

fn cluster(policy: LbPolicy, n: usize) -> Cluster {
    Cluster {
        lb: policy,
        endpoints: (0..n)
            .map(|i| Endpoint {
                address: format!("127.0.0.1:{}", 1000 + i),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn outlier(
    consecutive_5xx: u32,
    max_ejection_percent: u32,
    min_health_percent: u32,
) -> Option<Outlier> {
    Some(Outlier {
        consecutive_5xx,
        consecutive_gateway: 0,
        base_ejection_ms: 30_000,
        interval_ms: 10_000,
        max_ejection_percent,
        min_health_percent,
        split_local_origin: false,
        consecutive_local_origin: 5,
    })
}

#[test]
fn split_local_origin_errors_count_on_their_own() {
    let mut c = cluster(LbPolicy::RoundRobin, 1);
    c.outlier = outlier(2, 100, 0).map(|o| Outlier {
        split_local_origin: true,
        consecutive_local_origin: 3,
        ..o
    });
    let lb = LbState::new(&c);
    let p = lb.pick().unwrap();
    // Two local failures: not 5xx any more (consecutive_5xx is 2), not 3 local yet.
    assert_eq!(lb.report(&p, Outcome::LocalFailure), Ejection::None);
    assert_eq!(lb.report(&p, Outcome::LocalFailure), Ejection::None);
    // An answer resets the local count; the third local failure in a row ejects.
    assert_eq!(lb.report(&p, Outcome::Status(200)), Ejection::None);
    for _ in 0..2 {
        assert_eq!(lb.report(&p, Outcome::LocalFailure), Ejection::None);
    }
    assert_eq!(lb.report(&p, Outcome::LocalFailure), Ejection::Enforced);
    // Without split, two local failures are two 5xx: ejected at the second.
    let mut c = cluster(LbPolicy::RoundRobin, 2);
    c.outlier = outlier(2, 100, 0);
    let lb = LbState::new(&c);
    let p = lb.pick().unwrap();
    assert_eq!(lb.report(&p, Outcome::LocalFailure), Ejection::None);
    assert_eq!(lb.report(&p, Outcome::LocalFailure), Ejection::Enforced);
}

#[test]
fn round_robin_cycles_through_all() {
    let lb = LbState::new(&cluster(LbPolicy::RoundRobin, 3));
    let mut seen: Vec<String> = (0..6)
        .map(|_| lb.pick().unwrap().endpoint.address.clone())
        .collect();
    assert_eq!(seen[0..3], seen[3..6]);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3);
}

#[test]
fn least_request_avoids_busy_endpoint() {
    let lb = LbState::new(&cluster(LbPolicy::LeastRequest, 2));
    let held = lb.pick().unwrap();
    // With one of two endpoints busy, P2C always sees both and picks the idle one.
    for _ in 0..50 {
        let p = lb.pick().unwrap();
        assert_ne!(p.endpoint.address, held.endpoint.address);
    }
}

#[test]
fn empty_cluster_has_no_pick() {
    assert!(LbState::new(&cluster(LbPolicy::RoundRobin, 0))
        .pick()
        .is_none());
}

#[test]
fn consecutive_5xx_eject_and_success_resets_the_count() {
    let mut c = cluster(LbPolicy::RoundRobin, 4);
    c.outlier = outlier(3, 50, 0);
    let lb = LbState::new(&c);
    let bad = lb.pick().unwrap();
    lb.report(&bad, Outcome::Status(503));
    lb.report(&bad, Outcome::Status(503));
    lb.report(&bad, Outcome::Status(200));
    lb.report(&bad, Outcome::LocalFailure);
    lb.report(&bad, Outcome::Status(500));
    assert!(
        lb.ejected().is_empty(),
        "a success in between resets the count"
    );
    lb.report(&bad, Outcome::Status(502));
    assert_eq!(lb.ejected(), vec![bad.endpoint.address.clone()]);
    for _ in 0..20 {
        assert_ne!(
            lb.pick().unwrap().endpoint.address,
            bad.endpoint.address,
            "ejected endpoints are not picked"
        );
    }
}

#[test]
fn max_ejection_percent_caps_but_one_is_always_allowed() {
    let mut c = cluster(LbPolicy::RoundRobin, 4);
    c.outlier = outlier(1, 10, 0);
    let lb = LbState::new(&c);
    let picks: Vec<Pick> = (0..4).map(|_| lb.pick().unwrap()).collect();
    for p in &picks {
        lb.report(p, Outcome::Status(500));
    }
    assert_eq!(
        lb.ejected().len(),
        1,
        "10% of 4 rounds down to 0, but Envoy ejects at least one"
    );
}

#[test]
fn panic_mode_and_a_fully_ejected_cluster() {
    let mut c = cluster(LbPolicy::RoundRobin, 1);
    c.outlier = outlier(1, 100, 0);
    let lb = LbState::new(&c);
    let p = lb.pick().unwrap();
    lb.report(&p, Outcome::Status(500));
    drop(p);
    assert!(
        lb.pick().is_none(),
        "Istio's default minHealthPercent 0: no panic mode, no endpoint (UH)"
    );
    c.outlier = outlier(1, 100, 50);
    let lb = LbState::new(&c);
    let p = lb.pick().unwrap();
    lb.report(&p, Outcome::Status(500));
    assert!(
        lb.pick().is_some(),
        "below minHealthPercent ejections are ignored"
    );
}

#[test]
fn consistent_hash_is_sticky_spreads_keys_and_moves_only_a_failed_endpoints_keys() {
    let mut c = cluster(LbPolicy::RoundRobin, 4);
    c.hash = Some(weft_model::HashKey::Header("x-player-id".into()));
    c.outlier = outlier(1, 100, 0);
    let lb = LbState::new(&c);
    let key = |k: u32| Some(stable_hash(format!("player-{k}").as_bytes()));
    let first: Vec<String> = (0..200)
        .map(|k| lb.pick_for(key(k)).unwrap().endpoint.address.clone())
        .collect();
    let again: Vec<String> = (0..200)
        .map(|k| lb.pick_for(key(k)).unwrap().endpoint.address.clone())
        .collect();
    assert_eq!(first, again, "same key, same endpoint");
    let mut used = first.clone();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 4, "keys spread over every endpoint");
    // Eject one endpoint: only its keys move.
    let p = lb.pick_for(key(0)).unwrap();
    let gone = p.endpoint.address.clone();
    lb.report(&p, Outcome::Status(500));
    let after: Vec<String> = (0..200)
        .map(|k| lb.pick_for(key(k)).unwrap().endpoint.address.clone())
        .collect();
    for (a, b) in first.iter().zip(&after) {
        if *a != gone {
            assert_eq!(a, b, "keys of healthy endpoints stay put");
        } else {
            assert_ne!(b, &gone);
        }
    }
}

#[test]
fn the_ejection_multiplier_decays_while_healthy() {
    let mut h = Health {
        ejections: 3,
        ..Default::default()
    };
    let t0 = Instant::now();
    h.ejected_until = Some(t0);
    let interval = Duration::from_millis(100);
    h.decay(t0 + Duration::from_millis(250), interval);
    assert_eq!(h.ejections, 1, "two whole intervals healthy");
    h.decay(t0 + Duration::from_millis(260), interval);
    assert_eq!(h.ejections, 1, "no new whole interval yet");
    h.decay(t0 + Duration::from_millis(1000), interval);
    assert_eq!(h.ejections, 0);
    let mut ejected = Health {
        ejections: 3,
        ejected_until: Some(t0 + Duration::from_secs(60)),
        ..Default::default()
    };
    ejected.decay(t0 + Duration::from_secs(1), interval);
    assert_eq!(ejected.ejections, 3, "no decay while still ejected");
}

#[test]
fn request_limit_trips_the_circuit_breaker() {
    let mut c = cluster(LbPolicy::RoundRobin, 2);
    c.max_requests = Some(2);
    let lb = LbState::new(&c);
    let a = lb.pick().unwrap();
    assert!(!lb.overflowing());
    let b = lb.pick().unwrap();
    assert!(lb.overflowing());
    drop((a, b));
    assert!(!lb.overflowing());
}
