//! UpdateContainerResources against containerd: a running container's task gets
//! `Tasks.Update` (its cgroup changes at once); a created container's record gets the new
//! resources in its OCI spec (`Containers.Update` with a `spec` field mask), so its task
//! starts with them. Which of the two is the core's decision ([`berth_core::ResourcesOf`]),
//! made under its `Updating` guard.

use berth_backend::{BackendError, BackendErrorKind, Resources};
use containerd_client::services::v1::{Container, UpdateContainerRequest, UpdateTaskRequest};
use serde_json::Value;

use crate::backend::ContainerdBackend;
use crate::error::local;
use crate::spec::{self, Process, SpecInput};

/// Type URL of OCI `LinuxResources` in `Tasks.Update`.
pub const LINUX_RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// The OCI `linux.resources` object and `process.oomScoreAdj` berth's spec builder makes of
/// `r` (the same builder as at creation, so an update and a create agree), with `floor` the
/// lowest `oom_score_adj` this process may set.
pub fn oci_resources(r: &Resources, floor: i64) -> (Value, Value) {
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
        oom_score_adj_floor: floor,
        readonly_rootfs: false,
    });
    (
        built["linux"]["resources"].clone(),
        built["process"]["oomScoreAdj"].clone(),
    )
}

impl ContainerdBackend {
    /// `Tasks.Update` of the running task `id` with `r` as OCI `LinuxResources`.
    pub(crate) async fn update_task_resources(
        &self,
        id: &str,
        r: &Resources,
    ) -> Result<(), BackendError> {
        let (resources, _) = oci_resources(r, self.inner.oom_score_adj_floor);
        let c = self.client();
        self.call(
            "Tasks.Update",
            id,
            c.tasks().update(c.request(UpdateTaskRequest {
                container_id: id.to_owned(),
                resources: Some(prost_types::Any {
                    type_url: LINUX_RESOURCES_TYPE_URL.to_owned(),
                    value: serde_json::to_vec(&resources).unwrap_or_default(),
                }),
                annotations: Default::default(),
            })),
        )
        .await?;
        Ok(())
    }

    /// `Containers.Get`, then `Containers.Update` of the record's OCI spec with `r` as its
    /// `linux.resources` (and `process.oomScoreAdj`), under a `spec` field mask so nothing
    /// else of the record changes.
    pub(crate) async fn update_record_resources(
        &self,
        id: &str,
        r: &Resources,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Containers.Update";
        let (resources, oom) = oci_resources(r, self.inner.oom_score_adj_floor);
        let mut rec = self.record(id).await?;
        let Some(mut any) = rec.spec.take() else {
            return Err(local(
                BackendErrorKind::Other,
                VERB,
                id,
                "the container record has no OCI spec",
            ));
        };
        let mut oci: Value = serde_json::from_slice(&any.value).map_err(|e| {
            local(
                BackendErrorKind::Other,
                VERB,
                id,
                format!("the record's OCI spec is not JSON: {e}"),
            )
        })?;
        oci["linux"]["resources"] = resources;
        if !oom.is_null() {
            oci["process"]["oomScoreAdj"] = oom;
        }
        any.value = serde_json::to_vec(&oci).unwrap_or_default();
        let c = self.client();
        self.call(
            VERB,
            id,
            c.containers().update(c.request(UpdateContainerRequest {
                container: Some(Container {
                    id: id.to_owned(),
                    spec: Some(any),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["spec".to_owned()],
                }),
            })),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_become_oci_json() {
        let (res, oom) = oci_resources(
            &Resources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                oom_score_adj: 1000,
                ..Resources::default()
            },
            0,
        );
        assert_eq!(res["memory"]["limit"], 64 << 20);
        assert_eq!(res["cpu"]["shares"], 512);
        assert_eq!(oom, 1000);
    }
}
