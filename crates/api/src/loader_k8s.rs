//! Kubernetes documents a config folder may hold that weft reads too: `Service`s (as the
//! registry entry Istio makes of them) and the ConfigMap `istio` in `istio-system` (Istio's
//! MeshConfig). Everything else non-Istio is skipped by the loader.

use crate::loader::{DocLoader, Loaded};
use crate::positions::Positions;
use crate::resource::{Kind, ObjectMeta, Resource, Source, Spec};
use crate::yaml::{self, Node, Pos, Value};

impl DocLoader<'_> {
    /// A Kubernetes Service, read as the registry entry Istio makes of it (a MESH_INTERNAL
    /// ServiceEntry with the Service's selector), keeping `apiVersion: v1`.
    pub(crate) fn k8s_service(&mut self, root: &Node, source: Source) -> Option<Loaded> {
        let svc: crate::k8s_service::K8sService = self.decode(root, "Service")?;
        if svc.metadata.name.is_empty() {
            self.error(root.pos, "missing metadata.name in Service".to_string());
            return None;
        }
        let namespace = svc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let spec = svc.to_service_entry(&namespace);
        Some(Loaded::Resource(Box::new(Resource {
            api_version: "v1".into(),
            kind: Kind::ServiceEntry,
            metadata: ObjectMeta {
                name: svc.metadata.name.clone(),
                namespace: Some(namespace),
                labels: svc.metadata.labels.clone(),
                ..Default::default()
            },
            spec: Spec::ServiceEntry(spec),
            source,
            positions: Positions::from_node(root),
        })))
    }

    /// The ConfigMap `istio` in `istio-system`: its `mesh` key is MeshConfig (YAML text,
    /// parsed with positions in the file when it is a block scalar).
    pub(crate) fn mesh_config(&mut self, root: &Node, source: Source) -> Option<Loaded> {
        let (ns, name) = crate::mesh_config::MESH_CONFIG_MAP;
        let value = match root.get("data").and_then(|(_, d)| d.get("mesh")) {
            None => serde_json::Value::Null,
            Some((_, node)) => {
                let Value::Str(text) = &node.value else {
                    self.error(
                        node.pos,
                        "data.mesh of the ConfigMap istio must be a string of MeshConfig YAML"
                            .into(),
                    );
                    return None;
                };
                let mut budget = yaml::TreeBudget::FILE;
                match yaml::parse_document(text, &mut budget) {
                    Err((pos, message)) => {
                        let line = node.pos.line + pos.line;
                        self.error(
                            Pos {
                                line,
                                column: pos.column,
                            },
                            format!("invalid YAML in data.mesh (MeshConfig): {message}"),
                        );
                        return None;
                    }
                    Ok(None) => serde_json::Value::Null,
                    Ok(Some(mut mesh)) => {
                        // A block scalar's text starts on the line after `mesh: |`.
                        mesh.shift(node.pos.line);
                        self.decode(&mesh, "MeshConfig")?
                    }
                }
            }
        };
        let spec = match crate::mesh_config::parse(value) {
            Ok(mc) => mc,
            Err(e) => {
                self.error(root.pos, format!("ConfigMap {ns}/{name}: {e}"));
                return None;
            }
        };
        Some(Loaded::Resource(Box::new(Resource {
            api_version: "v1".into(),
            kind: Kind::MeshConfig,
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Spec::MeshConfig(spec),
            source,
            positions: Positions::from_node(root),
        })))
    }

    /// `metadata: {name: istio, namespace: istio-system}`.
    pub(crate) fn is_mesh_config_map(root: &Node) -> bool {
        let (ns, name) = crate::mesh_config::MESH_CONFIG_MAP;
        let field = |k: &str| {
            root.get("metadata")
                .and_then(|(_, m)| m.get(k))
                .and_then(|(_, v)| match &v.value {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                })
        };
        field("name").as_deref() == Some(name) && field("namespace").as_deref() == Some(ns)
    }
}
