//! What CRI asked for: sandbox and container configuration, and the metadata berth stores
//! with the containerd record (as a container extension, like containerd's
//! `io.cri-containerd.container.metadata`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ContainerId, SandboxId};
use crate::image::ImageRef;
use crate::status::Resources;

/// Version tag of the metadata JSON.
pub const META_VERSION: &str = "v1";

/// Linux namespace mode of a sandbox (CRI `NamespaceMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NamespaceMode {
    /// A namespace of the pod, shared by its containers.
    #[default]
    Pod,
    /// The container gets its own namespace.
    Container,
    /// The node's namespace.
    Node,
}

/// CRI `PodSandboxConfig`, the part berth uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxConfig {
    /// Pod name (metadata.name).
    pub name: String,
    /// Pod uid (metadata.uid).
    pub uid: String,
    /// Pod namespace (metadata.namespace).
    pub namespace: String,
    /// Attempt number (metadata.attempt).
    pub attempt: u32,
    /// Hostname of the pod.
    pub hostname: String,
    /// Directory the pod's container logs go under.
    pub log_directory: String,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Pod annotations.
    pub annotations: BTreeMap<String, String>,
    /// PID namespace mode.
    pub pid_namespace: NamespaceMode,
    /// IPC namespace mode.
    pub ipc_namespace: NamespaceMode,
}

impl SandboxConfig {
    /// The registry name of a sandbox, `<name>_<namespace>_<uid>_<attempt>`
    /// (docs/containerd-behaviour.md §8).
    pub fn reservation_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }
}

/// CRI `ContainerConfig`, the part berth uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// Container name (metadata.name).
    pub name: String,
    /// Attempt number (metadata.attempt).
    pub attempt: u32,
    /// Image reference, resolved in containerd's image store.
    pub image: String,
    /// Entrypoint override; empty = image entrypoint.
    pub command: Vec<String>,
    /// Arguments override; empty = image cmd.
    pub args: Vec<String>,
    /// Working directory; empty = image default.
    pub working_dir: String,
    /// Environment, in order.
    pub envs: Vec<(String, String)>,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Container annotations.
    pub annotations: BTreeMap<String, String>,
    /// Log path relative to the sandbox's log directory; empty = no log.
    pub log_path: String,
    /// Stop signal name ("SIGTERM", "TERM", "15"); empty = SIGTERM.
    pub stop_signal: String,
    /// Resource limits.
    pub resources: Option<Resources>,
    /// The root file system is mounted read-only (CRI `security_context.readonly_rootfs`).
    pub readonly_rootfs: bool,
}

impl ContainerConfig {
    /// The registry name of a container, `<name>_<pod>_<podns>_<poduid>_<attempt>`
    /// (docs/containerd-behaviour.md §8).
    pub fn reservation_name(&self, sandbox: &SandboxConfig) -> String {
        format!(
            "{}_{}_{}_{}_{}",
            self.name, sandbox.name, sandbox.namespace, sandbox.uid, self.attempt
        )
    }
}

/// What berth keeps with a sandbox's containerd record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxMeta {
    /// Sandbox id (= pause container id).
    pub id: SandboxId,
    /// Reserved name.
    pub name: String,
    /// The CRI config.
    pub config: SandboxConfig,
    /// When RunPodSandbox accepted it (unix ns).
    pub created_at: i64,
}

/// What berth keeps with a container's containerd record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    /// Container id.
    pub id: ContainerId,
    /// Its sandbox.
    pub sandbox_id: SandboxId,
    /// Reserved name.
    pub name: String,
    /// The CRI config.
    pub config: ContainerConfig,
    /// Full log path (sandbox log directory joined with the config's log path); empty = none.
    pub log_path: String,
    /// The resolved stop signal number.
    pub stop_signal: i32,
    /// What `config.image` resolved to in containerd's image store when the container was
    /// created (the core asks before `Containers.Create`, docs/containerd-behaviour.md
    /// §4.1.1). Absent in metadata of an older berth: then empty.
    #[serde(default)]
    pub image: ImageRef,
}

/// Why stored metadata could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Bad JSON or wrong shape.
    #[error("metadata is not valid: {detail}")]
    Invalid {
        /// The decoder's description.
        detail: String,
    },
    /// A version berth does not know.
    #[error("metadata version {version:?} is not supported (only {META_VERSION:?})")]
    UnknownVersion {
        /// The version found.
        version: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    #[serde(rename = "Version")]
    version: String,
    #[serde(rename = "Metadata")]
    metadata: T,
}

fn encode_versioned<T: Serialize>(metadata: &T) -> Vec<u8> {
    serde_json::to_vec(&Versioned {
        version: META_VERSION.to_owned(),
        metadata,
    })
    .unwrap_or_default()
}

fn decode_versioned<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, MetaError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "Version")]
        version: String,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| MetaError::Invalid {
        detail: crate::ids::shorten(&e.to_string()),
    })?;
    if probe.version != META_VERSION {
        return Err(MetaError::UnknownVersion {
            version: crate::ids::shorten(&probe.version),
        });
    }
    let v: Versioned<T> = serde_json::from_slice(bytes).map_err(|e| MetaError::Invalid {
        detail: crate::ids::shorten(&e.to_string()),
    })?;
    Ok(v.metadata)
}

impl ContainerMeta {
    /// Encodes as `{"Version":"v1","Metadata":{...}}`.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }
    /// Decodes; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaError> {
        decode_versioned(bytes)
    }
}

impl SandboxMeta {
    /// Encodes as `{"Version":"v1","Metadata":{...}}`.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self)
    }
    /// Decodes; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaError> {
        decode_versioned(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_errors() {
        let m = ContainerMeta {
            id: ContainerId::new("c1").unwrap(),
            sandbox_id: SandboxId::new("s1").unwrap(),
            name: "web_pod_ns_uid_0".into(),
            config: ContainerConfig {
                name: "web".into(),
                image: "busybox".into(),
                ..ContainerConfig::default()
            },
            log_path: "/var/log/pods/x/web.log".into(),
            stop_signal: 15,
            image: ImageRef {
                id: format!("sha256:{}", "ab".repeat(32)),
                name: "docker.io/library/busybox:latest".into(),
                repo_tag: "docker.io/library/busybox:latest".into(),
                repo_digest: String::new(),
            },
        };
        assert_eq!(ContainerMeta::decode(&m.encode()), Ok(m.clone()));
        // Metadata written before images were resolved decodes with an empty image.
        let mut old: serde_json::Value = serde_json::from_slice(&m.encode()).unwrap();
        old["Metadata"].as_object_mut().unwrap().remove("image");
        let old = ContainerMeta::decode(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(old.image, ImageRef::default());
        assert_eq!(old.config, m.config);
        assert!(matches!(
            ContainerMeta::decode(br#"{"Version":"v9","Metadata":{}}"#),
            Err(MetaError::UnknownVersion { .. })
        ));
        assert!(matches!(
            ContainerMeta::decode(b"{"),
            Err(MetaError::Invalid { .. })
        ));
        assert!(matches!(
            SandboxMeta::decode(br#"{"Version":"v1","Metadata":{"id":"a/b"}}"#),
            Err(MetaError::Invalid { .. })
        ));
    }

    #[test]
    fn reservation_names() {
        let s = SandboxConfig {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            attempt: 1,
            ..SandboxConfig::default()
        };
        assert_eq!(s.reservation_name(), "p_ns_u_1");
        let c = ContainerConfig {
            name: "c".into(),
            attempt: 2,
            ..ContainerConfig::default()
        };
        assert_eq!(c.reservation_name(&s), "c_p_ns_u_2");
    }
}
