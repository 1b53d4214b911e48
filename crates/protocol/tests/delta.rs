//! Delta pushes: a config survives the split, a stream sends only what changed, big pushes
//! are split under the message limit, a part too big for any message is refused by name,
//! and a proxy one version behind ignores what it does not know.

use weft_model::{Cluster, Endpoint, Listener, ListenerKind, ProxyConfig, RouteTable, VirtualHost};
use weft_protocol::delta::{assemble, split, Desired, Received, Sent};
use weft_protocol::pb;

fn cluster(service: &str, endpoints: usize) -> Cluster {
    Cluster {
        service: service.into(),
        endpoints: (0..endpoints)
            .map(|i| Endpoint {
                address: format!("127.0.0.1:{}", 1000 + i),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn config(clusters: usize) -> ProxyConfig {
    let mut cfg = ProxyConfig::default();
    cfg.listeners.push(Listener {
        name: "outbound".into(),
        kind: ListenerKind::Outbound,
        port: 0,
        route_table: "outbound".into(),
        tls: None,
    });
    let vhost = |name: &str| VirtualHost {
        name: name.into(),
        domains: vec![name.into()],
        ..Default::default()
    };
    // Two virtual hosts with one name: both kept, in order.
    let table = RouteTable {
        virtual_hosts: vec![
            vhost("a.game"),
            vhost("b.game"),
            vhost("a.game"),
            vhost("*"),
        ],
    };
    cfg.routes.insert("outbound".into(), table);
    for i in 0..clusters {
        let name = format!("outbound|8080||svc-{i}.game.svc.cluster.local");
        cfg.clusters.insert(name, cluster(&format!("svc-{i}"), 2));
    }
    cfg
}

/// Applies every push; the config of the last one.
fn deliver(rx: &mut Received, pushes: &[pb::ConfigPush]) -> ProxyConfig {
    let (last, rest) = pushes.split_last().expect("at least one push");
    for p in rest {
        assert!(p.more, "every message but the last says more follow");
        assert_eq!(
            rx.apply(p).unwrap(),
            None,
            "not applied before the last message"
        );
    }
    assert!(!last.more);
    rx.apply(last)
        .unwrap()
        .expect("the last message completes the version")
}

#[test]
fn a_config_survives_the_split_in_order() {
    let cfg = config(3);
    assert_eq!(assemble(&split(&cfg)).unwrap(), cfg);
}

#[test]
fn the_first_push_is_full_and_later_ones_carry_only_what_changed() {
    let (mut sent, mut rx) = (Sent::default(), Received::default());
    let mut cfg = config(5);
    let first = sent.pushes(&Desired::new("1", &cfg), 1 << 20);
    assert!(first[0].full);
    assert_eq!(deliver(&mut rx, &first), cfg);

    // One endpoint moves, one cluster goes away.
    let moved = "outbound|8080||svc-1.game.svc.cluster.local";
    cfg.clusters.get_mut(moved).unwrap().endpoints[0].address = "127.0.0.1:9999".into();
    cfg.clusters
        .remove("outbound|8080||svc-4.game.svc.cluster.local");
    let second = sent.pushes(&Desired::new("2", &cfg), 1 << 20);
    assert_eq!(second.len(), 1);
    assert!(!second[0].full);
    let names: Vec<&str> = second[0]
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, [format!("cluster/{moved}")]);
    assert_eq!(
        second[0].removed,
        ["cluster/outbound|8080||svc-4.game.svc.cluster.local"]
    );
    assert_eq!(deliver(&mut rx, &second), cfg);

    // Nothing changed: a push with the version only (the proxy still ACKs it).
    let third = sent.pushes(&Desired::new("3", &cfg), 1 << 20);
    assert!(third[0].resources.is_empty() && third[0].removed.is_empty());
    assert_eq!(deliver(&mut rx, &third), cfg);
}

#[test]
fn a_push_larger_than_the_limit_is_split_between_parts() {
    let cfg = config(200);
    let desired = Desired::new("1", &cfg);
    let limit = 4096;
    let pushes = Sent::default().pushes(&desired, limit);
    assert!(pushes.len() > 3, "{} messages", pushes.len());
    for p in &pushes {
        let size = prost::Message::encoded_len(p);
        assert!(size <= limit, "a message of {size} bytes");
    }
    assert!(pushes[0].full && pushes[1..].iter().all(|p| !p.full));
    assert_eq!(deliver(&mut Received::default(), &pushes), cfg);
}

#[test]
fn a_part_too_big_for_any_message_is_refused_by_name_and_the_stream_state_stays() {
    let (mut sent, mut rx) = (Sent::default(), Received::default());
    let mut cfg = config(2);
    deliver(&mut rx, &sent.pushes(&Desired::new("1", &cfg), 2048));
    let big = "outbound|8080||svc-0.game.svc.cluster.local";
    cfg.clusters.insert(big.into(), cluster("svc-0", 200));
    let refused = sent.pushes(&Desired::new("2", &cfg), 2048);
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].error.contains(&format!("part cluster/{big}")),
        "{}",
        refused[0].error
    );
    let err = rx.apply(&refused[0]).unwrap_err();
    assert!(err.contains("cannot serve config 2"), "{err}");
    // Back under the limit: the delta is from what the proxy really has.
    cfg.clusters.insert(big.into(), cluster("svc-0", 3));
    let third = sent.pushes(&Desired::new("3", &cfg), 2048);
    assert_eq!(third[0].resources.len(), 1);
    assert_eq!(deliver(&mut rx, &third), cfg);
}

#[test]
fn a_part_that_does_not_decode_is_named_and_the_next_delta_repairs_it() {
    let (mut sent, mut rx) = (Sent::default(), Received::default());
    let cfg = config(1);
    let mut first = sent.pushes(&Desired::new("1", &cfg), 1 << 20);
    let part = first[0]
        .resources
        .iter_mut()
        .find(|r| r.name.starts_with("cluster/"))
        .unwrap();
    part.body_json = b"{not json".to_vec();
    let err = rx.apply(&first[0]).unwrap_err();
    assert!(
        err.contains("part cluster/") && err.contains("does not decode"),
        "{err}"
    );
    // The control plane believes the proxy has the good part; a full resync fixes it.
    let fixed = Sent::default().pushes(&Desired::new("2", &cfg), 1 << 20);
    assert_eq!(deliver(&mut rx, &fixed), cfg);
}

#[test]
fn a_proxy_ignores_parts_and_fields_from_a_newer_control_plane() {
    let cfg = config(1);
    let mut pushes = Sent::default().pushes(&Desired::new("1", &cfg), 1 << 20);
    // A kind this proxy does not know, and a field it does not know inside a known part.
    pushes[0].resources.push(pb::ConfigResource {
        name: "rate_limit/global".into(),
        body_json: br#"{"requests_per_unit": 10}"#.to_vec(),
    });
    for r in &mut pushes[0].resources {
        if r.name.starts_with("cluster/") {
            let mut v: serde_json::Value = serde_json::from_slice(&r.body_json).unwrap();
            v["slow_start_window_ms"] = 30_000.into();
            r.body_json = serde_json::to_vec(&v).unwrap();
        }
    }
    assert_eq!(deliver(&mut Received::default(), &pushes), cfg);
}

#[test]
fn a_whole_config_from_an_older_control_plane_is_accepted() {
    let cfg = config(2);
    let push = weft_protocol::encode_config("7", &cfg, 1 << 20);
    assert_eq!(Received::default().apply(&push).unwrap(), Some(cfg));
}
