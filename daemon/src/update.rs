//! UpdateContainerResources against containerd: a running container's task gets
//! `Tasks.Update` (its cgroup changes at once); a created container's record gets the new
//! resources in its OCI spec (`Containers.Update` with a `spec` field mask), so its task
//! starts with them. The server then records them in berth's status through the service
//! (`ServiceHandle::update_container_resources`).

use berth_containerd::ContainerdBackend;
use berth_containerd::spec::{self, Process, SpecInput};
use berth_core::{ContainerState, Resources};
use containerd_client::services::v1::{
    GetContainerRequest, UpdateContainerRequest, UpdateTaskRequest,
};
use serde_json::Value;

use crate::error::ApiError;

/// Type URL of OCI `LinuxResources` in `Tasks.Update`.
pub const LINUX_RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// This process's `oom_score_adj`, the lowest runc may set (see `spec::clamp_oom_score_adj`).
fn oom_floor() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The OCI `linux.resources` object and `process.oomScoreAdj` berth's spec builder makes
/// of `r`.
pub fn oci_resources(r: &Resources) -> (Value, Value) {
    let built = spec::build(&SpecInput {
        namespace: String::new(),
        id: String::new(),
        process: Process {
            args: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
        },
        hostname: String::new(),
        namespaces: Vec::new(),
        resources: Some(r.clone()),
        oom_score_adj_floor: oom_floor(),
    });
    (
        built["linux"]["resources"].clone(),
        built["process"]["oomScoreAdj"].clone(),
    )
}

fn backend_err(id: &str, error: berth_core::BackendError) -> ApiError {
    ApiError::Backend {
        id: id.to_owned(),
        op: "update resources",
        error,
    }
}

/// Applies `r` to the container `id` in `state`.
pub async fn update_resources(
    backend: &ContainerdBackend,
    id: &str,
    state: ContainerState,
    r: &Resources,
) -> Result<(), ApiError> {
    let (resources, oom) = oci_resources(r);
    let c = backend.client();
    let timeout = backend.config().call_timeout;
    let call = |verb: &'static str, status: tonic::Status| {
        backend_err(id, berth_containerd::map_status(&status, verb, id))
    };
    let deadline = |verb: &'static str| {
        backend_err(id, berth_containerd::deadline_exceeded(verb, id, timeout))
    };
    match state {
        ContainerState::Running => {
            let value = serde_json::to_vec(&resources).unwrap_or_default();
            let req = c.request(UpdateTaskRequest {
                container_id: id.to_owned(),
                resources: Some(prost_types::Any {
                    type_url: LINUX_RESOURCES_TYPE_URL.to_owned(),
                    value,
                }),
                annotations: Default::default(),
            });
            tokio::time::timeout(timeout, c.tasks().update(req))
                .await
                .map_err(|_| deadline("Tasks.Update"))?
                .map_err(|s| call("Tasks.Update", s))?;
            Ok(())
        }
        ContainerState::Created => {
            let get = c.request(GetContainerRequest { id: id.to_owned() });
            let mut rec = tokio::time::timeout(timeout, c.containers().get(get))
                .await
                .map_err(|_| deadline("Containers.Get"))?
                .map_err(|s| call("Containers.Get", s))?
                .into_inner()
                .container
                .ok_or_else(|| ApiError::WrongState {
                    id: id.to_owned(),
                    op: "update resources",
                    state: "CONTAINER_UNKNOWN",
                })?;
            let Some(mut any) = rec.spec.take() else {
                return Err(ApiError::WrongState {
                    id: id.to_owned(),
                    op: "update resources",
                    state: "CONTAINER_UNKNOWN",
                });
            };
            let mut oci: Value = serde_json::from_slice(&any.value).map_err(|e| {
                backend_err(
                    id,
                    berth_core::BackendError::new(
                        berth_core::BackendErrorKind::Other,
                        "Containers.Get",
                        id,
                        format!("the record's OCI spec is not JSON: {e}"),
                    ),
                )
            })?;
            oci["linux"]["resources"] = resources;
            if !oom.is_null() {
                oci["process"]["oomScoreAdj"] = oom;
            }
            any.value = serde_json::to_vec(&oci).unwrap_or_default();
            let update = c.request(UpdateContainerRequest {
                container: Some(containerd_client::services::v1::Container {
                    id: id.to_owned(),
                    spec: Some(any),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["spec".to_owned()],
                }),
            });
            tokio::time::timeout(timeout, c.containers().update(update))
                .await
                .map_err(|_| deadline("Containers.Update"))?
                .map_err(|s| call("Containers.Update", s))?;
            Ok(())
        }
        other => Err(ApiError::WrongState {
            id: id.to_owned(),
            op: "update resources",
            state: other.cri_name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_become_oci_json() {
        let (res, oom) = oci_resources(&Resources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 512,
            oom_score_adj: 1000,
            ..Resources::default()
        });
        assert_eq!(res["memory"]["limit"], 64 << 20);
        assert_eq!(res["cpu"]["shares"], 512);
        assert_eq!(oom, 1000);
    }
}
