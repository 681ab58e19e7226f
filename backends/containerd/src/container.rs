//! Container records: create (snapshot + spec + labels + metadata extension), delete
//! (record + snapshot), list by berth's label.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use berth_backend::{
    BackendError, BackendErrorKind, ContainerMeta, Listed, Listing, SandboxMeta, TaskState,
};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateRequest as CreateLeaseRequest, DeleteContainerRequest,
    DeleteRequest as DeleteLeaseRequest, GetContainerRequest, ListContainersRequest,
};

use crate::backend::ContainerdBackend;
use crate::error::local;
use crate::spec::{self, SPEC_TYPE_URL, SpecInput};
use crate::time::{rfc3339_in, unix_nanos};

/// Label on every record berth creates.
pub const LABEL_MANAGED: &str = "io.berth.managed";
/// Label saying what a record is: [`KIND_CONTAINER`] or [`KIND_SANDBOX`].
pub const LABEL_KIND: &str = "io.berth.kind";
/// Label naming the sandbox a record belongs to (a sandbox names itself).
pub const LABEL_SANDBOX: &str = "io.berth.sandbox";
/// [`LABEL_KIND`] of a CRI container.
pub const KIND_CONTAINER: &str = "container";
/// [`LABEL_KIND`] of a sandbox's pause container.
pub const KIND_SANDBOX: &str = "sandbox";
/// Extension holding a container's [`ContainerMeta::encode`].
pub const CONTAINER_EXTENSION: &str = "io.berth.container.metadata";
/// Extension holding a sandbox's [`SandboxMeta::encode`].
pub const SANDBOX_EXTENSION: &str = "io.berth.sandbox.metadata";
/// Type URL of [`CONTAINER_EXTENSION`] (berth's own; containerd stores it verbatim).
pub const CONTAINER_META_TYPE_URL: &str = "berth.dev/ContainerMeta.v1+json";
/// Type URL of [`SANDBOX_EXTENSION`].
pub const SANDBOX_META_TYPE_URL: &str = "berth.dev/SandboxMeta.v1+json";
/// The `Containers.List` filter selecting berth's records.
pub const MANAGED_FILTER: &str = "labels.\"io.berth.managed\"==true";

const GC_EXPIRE_LABEL: &str = "containerd.io/gc.expire";

/// What [`ContainerdBackend::create_record`] writes.
/// OCI annotation naming a task's pod; the runc v2 shim groups tasks of one pod in one shim.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// OCI annotation telling a pause container ("sandbox") from a CRI container.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

struct NewRecord<'a> {
    id: &'a str,
    kind: &'static str,
    sandbox: &'a str,
    image: &'a str,
    chain_id: &'a str,
    spec: serde_json::Value,
    extension: (&'static str, &'static str, Vec<u8>),
}

impl ContainerdBackend {
    /// Creates a CRI container: resolves its image, joins its pod's namespaces (the pause
    /// task must exist), prepares its snapshot and writes the record.
    pub(crate) async fn create_cri_container(
        &self,
        meta: &ContainerMeta,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Containers.Create";
        let id = meta.id.as_str();
        let sandbox = self.sandbox_meta(meta.sandbox_id.as_str(), id).await?;
        let pause_pid = match self.status(meta.sandbox_id.as_str()).await? {
            TaskState::Running { pid } | TaskState::Created { pid } => pid,
            other => {
                return Err(local(
                    BackendErrorKind::FailedPrecondition,
                    VERB,
                    id,
                    format!(
                        "sandbox {} has no live pause task ({other:?}): cannot join its namespaces",
                        meta.sandbox_id
                    ),
                ));
            }
        };
        let cfg = self.config();
        let (image_name, image) = self
            .inner
            .images
            .for_container(
                self.client(),
                &meta.image,
                &meta.config.image,
                id,
                cfg.call_timeout,
            )
            .await?;
        let process = spec::container_process(&meta.config, &image.config, &sandbox.hostname)
            .map_err(|e| {
                local(
                    BackendErrorKind::FailedPrecondition,
                    VERB,
                    id,
                    e.to_string(),
                )
            })?;
        let spec = spec::build(&SpecInput {
            namespace: cfg.namespace.clone(),
            id: id.to_owned(),
            process,
            hostname: sandbox.hostname.clone(),
            namespaces: spec::container_namespaces(&sandbox, pause_pid),
            resources: meta.config.resources.clone(),
            oom_score_adj_floor: self.inner.oom_score_adj_floor,
            readonly_rootfs: meta.config.readonly_rootfs,
        });
        self.create_record(NewRecord {
            id,
            kind: KIND_CONTAINER,
            sandbox: meta.sandbox_id.as_str(),
            image: &image_name,
            chain_id: &image.chain_id,
            spec,
            extension: (CONTAINER_EXTENSION, CONTAINER_META_TYPE_URL, meta.encode()),
        })
        .await
    }

    /// Creates a sandbox's pause container from [`crate::BackendConfig::sandbox_image`].
    pub(crate) async fn create_pause_container(
        &self,
        meta: &SandboxMeta,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Containers.Create";
        let id = meta.id.as_str();
        let cfg = self.config();
        let image = self
            .inner
            .images
            .resolve(self.client(), &cfg.sandbox_image, id, cfg.call_timeout)
            .await?;
        let process =
            spec::sandbox_process(&cfg.sandbox_command, &cfg.sandbox_image, &image.config)
                .map_err(|e| {
                    local(
                        BackendErrorKind::FailedPrecondition,
                        VERB,
                        id,
                        e.to_string(),
                    )
                })?;
        let spec = spec::build(&SpecInput {
            namespace: cfg.namespace.clone(),
            id: id.to_owned(),
            process,
            hostname: meta.config.hostname.clone(),
            namespaces: spec::sandbox_namespaces(&meta.config),
            resources: None,
            oom_score_adj_floor: self.inner.oom_score_adj_floor,
            readonly_rootfs: false,
        });
        self.create_record(NewRecord {
            id,
            kind: KIND_SANDBOX,
            sandbox: id,
            image: &cfg.sandbox_image,
            chain_id: &image.chain_id,
            spec,
            extension: (SANDBOX_EXTENSION, SANDBOX_META_TYPE_URL, meta.encode()),
        })
        .await
    }

    /// Reads a sandbox's config from its record, for a container `for_id` being created.
    async fn sandbox_meta(
        &self,
        sandbox: &str,
        for_id: &str,
    ) -> Result<berth_core::SandboxConfig, BackendError> {
        const VERB: &str = "Containers.Create";
        let rec = match self.record(sandbox).await {
            Ok(rec) => rec,
            Err(e) if e.is_not_found() => {
                return Err(local(
                    BackendErrorKind::FailedPrecondition,
                    VERB,
                    for_id,
                    format!("sandbox {sandbox} does not exist in containerd"),
                ));
            }
            Err(e) => return Err(e),
        };
        let bytes = rec
            .extensions
            .get(SANDBOX_EXTENSION)
            .map(|a| a.value.as_slice())
            .unwrap_or_default();
        SandboxMeta::decode(bytes).map(|m| m.config).map_err(|e| {
            local(
                BackendErrorKind::FailedPrecondition,
                VERB,
                for_id,
                format!("sandbox {sandbox}: {e}"),
            )
        })
    }

    /// `Containers.Get`.
    pub(crate) async fn record(&self, id: &str) -> Result<Container, BackendError> {
        let c = self.client();
        let reply = self
            .call(
                "Containers.Get",
                id,
                c.containers()
                    .get(c.request(GetContainerRequest { id: id.to_owned() })),
            )
            .await?;
        reply.container.ok_or_else(|| {
            local(
                BackendErrorKind::Other,
                "Containers.Get",
                id,
                "containerd answered without a container",
            )
        })
    }

    /// Prepares the snapshot (under a lease, so containerd's GC cannot take it before the
    /// record references it) and creates the record; on failure removes what it made.
    async fn create_record(&self, rec: NewRecord<'_>) -> Result<(), BackendError> {
        let c = self.client();
        let cfg = self.config();
        let seq = self.inner.lease_seq.fetch_add(1, Ordering::Relaxed);
        let lease = format!(
            "berth-{}-{}-{seq}",
            std::process::id(),
            crate::time::now_nanos()
        );
        self.call(
            "Leases.Create",
            rec.id,
            c.leases().create(c.request(CreateLeaseRequest {
                id: lease.clone(),
                labels: HashMap::from([(GC_EXPIRE_LABEL.to_owned(), rfc3339_in(cfg.lease_expiry))]),
            })),
        )
        .await?;
        let result = self.create_record_leased(&rec, &lease).await;
        if let Err(e) = self
            .call(
                "Leases.Delete",
                rec.id,
                c.leases().delete(c.request(DeleteLeaseRequest {
                    id: lease.clone(),
                    sync: false,
                })),
            )
            .await
        {
            tracing::warn!(lease, error = %e, "lease not deleted; it expires by itself");
        }
        result
    }

    async fn create_record_leased(
        &self,
        rec: &NewRecord<'_>,
        lease: &str,
    ) -> Result<(), BackendError> {
        let c = self.client();
        let cfg = self.config();
        match self.prepare_snapshot(rec, lease).await {
            Ok(_) => {}
            Err(e) if e.kind == BackendErrorKind::AlreadyExists => {
                // Either the container exists, or a crashed create left its snapshot.
                match self.record(rec.id).await {
                    Ok(_) => {
                        return Err(local(
                            BackendErrorKind::AlreadyExists,
                            "Containers.Create",
                            rec.id,
                            format!("container {:?}: already exists", rec.id),
                        ));
                    }
                    Err(g) if g.is_not_found() => {
                        self.remove_snapshot(&cfg.snapshotter, rec.id).await?;
                        self.prepare_snapshot(rec, lease).await?;
                    }
                    Err(g) => return Err(g),
                }
            }
            Err(e) if e.is_not_found() => {
                return Err(local(
                    BackendErrorKind::FailedPrecondition,
                    "Snapshots.Prepare",
                    rec.id,
                    format!(
                        "image {:?} is not unpacked for snapshotter {:?} (no snapshot {}): {}",
                        rec.image, cfg.snapshotter, rec.chain_id, e.message
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
        // The runc v2 shim groups tasks by this annotation: one shim per pod, as under
        // containerd's CRI, so a shim death takes the whole pod (what the simulator models).
        let mut spec = rec.spec.clone();
        spec["annotations"] = serde_json::json!({
            SANDBOX_ID_ANNOTATION: rec.sandbox,
            CONTAINER_TYPE_ANNOTATION: if rec.kind == KIND_SANDBOX { "sandbox" } else { "container" },
        });
        let spec_bytes = serde_json::to_vec(&spec).unwrap_or_default();
        let (ext_key, ext_url, ext_bytes) = &rec.extension;
        let container = Container {
            id: rec.id.to_owned(),
            labels: HashMap::from([
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_KIND.to_owned(), rec.kind.to_owned()),
                (LABEL_SANDBOX.to_owned(), rec.sandbox.to_owned()),
            ]),
            image: rec.image.to_owned(),
            runtime: Some(Runtime {
                name: cfg.runtime.clone(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_owned(),
                value: spec_bytes,
            }),
            snapshotter: cfg.snapshotter.clone(),
            snapshot_key: rec.id.to_owned(),
            extensions: HashMap::from([(
                (*ext_key).to_owned(),
                prost_types::Any {
                    type_url: (*ext_url).to_owned(),
                    value: ext_bytes.clone(),
                },
            )]),
            ..Container::default()
        };
        let created = self
            .call(
                "Containers.Create",
                rec.id,
                c.containers().create(c.request(CreateContainerRequest {
                    container: Some(container),
                })),
            )
            .await;
        if let Err(e) = created {
            // Unavailable or DeadlineExceeded: the record may exist after all (applied, reply
            // lost); keep the snapshot it would reference. If it does not exist, the expiring
            // lease leaves the snapshot to containerd's garbage collector.
            if matches!(
                e.kind,
                BackendErrorKind::Unavailable | BackendErrorKind::DeadlineExceeded
            ) {
                return Err(e);
            }
            if let Err(r) = self.remove_snapshot(&cfg.snapshotter, rec.id).await {
                tracing::warn!(id = rec.id, error = %r, "snapshot of a failed create not removed");
            }
            return Err(e);
        }
        Ok(())
    }

    /// `Snapshots.Prepare` of the container's snapshot on its image's top layer.
    async fn prepare_snapshot(&self, rec: &NewRecord<'_>, lease: &str) -> Result<(), BackendError> {
        let c = self.client();
        let cfg = self.config();
        let mut snapshots = c.snapshots();
        self.call(
            "Snapshots.Prepare",
            rec.id,
            snapshots.prepare(c.leased_request(
                PrepareSnapshotRequest {
                    snapshotter: cfg.snapshotter.clone(),
                    key: rec.id.to_owned(),
                    parent: rec.chain_id.to_owned(),
                    labels: HashMap::from([(LABEL_MANAGED.to_owned(), "true".to_owned())]),
                },
                lease,
            )),
        )
        .await?;
        Ok(())
    }

    /// `Snapshots.Remove`; NotFound is success.
    async fn remove_snapshot(&self, snapshotter: &str, key: &str) -> Result<(), BackendError> {
        let c = self.client();
        match self
            .call(
                "Snapshots.Remove",
                key,
                c.snapshots().remove(c.request(RemoveSnapshotRequest {
                    snapshotter: snapshotter.to_owned(),
                    key: key.to_owned(),
                })),
            )
            .await
        {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes the record, then its snapshot (NotFound tolerated). A missing record is
    /// NotFound, after removing a snapshot a half-done delete may have left.
    pub(crate) async fn delete_record(&self, id: &str) -> Result<(), BackendError> {
        let c = self.client();
        let (snapshotter, key) = match self.record(id).await {
            Ok(rec) => (rec.snapshotter, rec.snapshot_key),
            Err(e) if e.is_not_found() => {
                self.remove_snapshot(&self.config().snapshotter, id).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.call(
            "Containers.Delete",
            id,
            c.containers()
                .delete(c.request(DeleteContainerRequest { id: id.to_owned() })),
        )
        .await?;
        if !key.is_empty() {
            self.remove_snapshot(&snapshotter, &key).await?;
        }
        Ok(())
    }

    /// Every record labelled [`LABEL_MANAGED`], sorted by id, with its metadata decoded.
    pub(crate) async fn list_records(&self) -> Result<Listing, BackendError> {
        let c = self.client();
        let reply = self
            .call(
                "Containers.List",
                "",
                c.containers().list(c.request(ListContainersRequest {
                    filters: vec![MANAGED_FILTER.to_owned()],
                })),
            )
            .await?;
        let mut listing = Listing::default();
        for rec in reply.containers {
            let created_at = unix_nanos(rec.created_at.as_ref()).unwrap_or(0);
            let ext = |key: &str| rec.extensions.get(key).map(|a| a.value.as_slice());
            let kind = rec.labels.get(LABEL_KIND).map(String::as_str);
            let is_sandbox = match kind {
                Some(KIND_SANDBOX) => true,
                Some(KIND_CONTAINER) => false,
                _ => ext(SANDBOX_EXTENSION).is_some(),
            };
            if is_sandbox {
                let meta = match ext(SANDBOX_EXTENSION) {
                    None => Err(format!("no {SANDBOX_EXTENSION} extension")),
                    Some(b) => SandboxMeta::decode(b)
                        .map_err(|e| e.to_string())
                        .and_then(|m| same_id(m.id.as_str(), &rec.id).map(|()| m)),
                };
                listing.sandboxes.push(Listed {
                    id: rec.id.clone(),
                    created_at,
                    meta,
                });
            } else {
                let meta = match (kind, ext(CONTAINER_EXTENSION)) {
                    (Some(k), _) if k != KIND_CONTAINER => {
                        Err(format!("unknown {LABEL_KIND} label {k:?}"))
                    }
                    (_, None) => Err(format!("no {CONTAINER_EXTENSION} extension")),
                    (_, Some(b)) => ContainerMeta::decode(b)
                        .map_err(|e| e.to_string())
                        .and_then(|m| same_id(m.id.as_str(), &rec.id).map(|()| m)),
                };
                listing.containers.push(Listed {
                    id: rec.id.clone(),
                    created_at,
                    meta,
                });
            }
        }
        listing.sandboxes.sort_by(|a, b| a.id.cmp(&b.id));
        listing.containers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listing)
    }
}

/// Metadata must describe the record it is stored on.
fn same_id(in_meta: &str, record: &str) -> Result<(), String> {
    if in_meta == record {
        Ok(())
    } else {
        Err(format!(
            "metadata names {in_meta:?} but is stored on record {record:?}"
        ))
    }
}
