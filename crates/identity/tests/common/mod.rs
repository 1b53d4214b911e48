//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use weft_identity::{Ca, Identity, SpiffeId, WorkloadKey};

pub const TD: &str = "cluster.local";

pub fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(TD, ns, sa).unwrap()
}

/// A fresh, unique temporary directory (not created).
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weft-identity-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn new_ca(tag: &str) -> Ca {
    Ca::load_or_create(&temp_dir(tag), TD).unwrap()
}

/// Full workload bootstrap: key → CSR → CA → identity.
pub fn issue(ca: &Ca, id: &SpiffeId) -> Identity {
    let key = WorkloadKey::generate();
    let csr = key.csr_pem(id).unwrap();
    let issued = ca.sign_csr(&csr, id, Duration::from_secs(3600)).unwrap();
    Identity::new(key, &issued.cert_chain_pem, &issued.root_pem).unwrap()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64_decode(s: &str) -> Vec<u8> {
    let vals: Vec<u32> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .map(|b| B64.iter().position(|c| *c == b).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in vals.chunks(4) {
        let mut n = 0u32;
        for (i, v) in chunk.iter().enumerate() {
            n |= v << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

pub fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// (label, DER) of the first PEM block.
pub fn pem_decode(pem: &str) -> (String, Vec<u8>) {
    let begin = pem.find("-----BEGIN ").unwrap() + 11;
    let label_end = begin + pem[begin..].find("-----").unwrap();
    let label = pem[begin..label_end].to_owned();
    let body_start = label_end + 5;
    let body_end = body_start + pem[body_start..].find("-----END").unwrap();
    (label, b64_decode(&pem[body_start..body_end]))
}

pub fn pem_encode(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        b64_encode(der)
    )
}
