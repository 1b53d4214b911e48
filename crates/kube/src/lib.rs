//! weft's Kubernetes config source (istiod's Kubernetes controllers): watches Istio's
//! kinds (every served apiVersion, as dynamic objects) and the core kinds that make the
//! service registry (Services, Pods, Namespaces) with kube-rs reflectors, and turns them
//! into the same [`weft_api::Resource`]s a config folder loads: Istio objects through the
//! same loader and validation (located at `Kind/ns/name`), Services as the loader reads
//! them from files, Pods as WorkloadEntries. The control plane takes the result through
//! its config-source seam ([`weft_control::source`]); no second compiler.
#![forbid(unsafe_code)]

pub mod inject;
pub mod install;
pub mod kinds;
pub mod manual;
pub mod source;
pub mod translate;
pub mod webhook;

pub use source::{client, start, Source};
