//! Container records against a real containerd: listing by label, the metadata round trip,
//! and how containerd's errors map to berth's kinds.

mod common;

use std::collections::HashMap;

use berth_backend::{Backend, BackendErrorKind, Target, TaskState};
use berth_containerd::{
    CONTAINER_EXTENSION, CONTAINER_META_TYPE_URL, KIND_CONTAINER, LABEL_KIND, LABEL_MANAGED,
};
use berth_core::{ContainerMeta, Resources, SandboxId};
use common::{BackendFixture, POD, target};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::{Container, CreateContainerRequest, DeleteContainerRequest};

/// Writes a record straight through the client (not through the backend).
async fn raw_record(w: &BackendFixture, id: &str, labels: &[(&str, &str)], ext: Option<&[u8]>) {
    let c = w.backend.client();
    let container = Container {
        id: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        runtime: Some(Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: berth_containerd::spec::SPEC_TYPE_URL.into(),
            value: b"{}".to_vec(),
        }),
        extensions: ext
            .map(|b| {
                HashMap::from([(
                    CONTAINER_EXTENSION.to_owned(),
                    prost_types::Any {
                        type_url: CONTAINER_META_TYPE_URL.into(),
                        value: b.to_vec(),
                    },
                )])
            })
            .unwrap_or_default(),
        ..Container::default()
    };
    c.containers()
        .create(c.request(CreateContainerRequest {
            container: Some(container),
        }))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_by_label_with_metadata_round_trip() {
    let w = BackendFixture::start().await;
    let before = common::now_ns();
    let mut a = w.meta("ctr-a", &["sleep", "1000"]);
    a.config.labels.insert("app".into(), "web".into());
    a.config.resources = Some(Resources {
        cpu_shares: 256,
        ..Resources::default()
    });
    a.log_path = "/var/log/pods/x/a.log".into();
    let b = w.meta("ctr-b", &["true"]);
    w.backend.create_container(&a).await.unwrap();
    w.backend.create_container(&b).await.unwrap();
    // Not berth's: no label. Berth's label but garbage metadata: reported, not trusted.
    raw_record(&w, "foreign", &[], None).await;
    raw_record(
        &w,
        "garbled",
        &[(LABEL_MANAGED, "true"), (LABEL_KIND, KIND_CONTAINER)],
        Some(b"{not json"),
    )
    .await;

    let listing = w.backend.list().await.unwrap();
    let ids: Vec<&str> = listing.containers.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, vec!["ctr-a", "ctr-b", "garbled"]);
    assert_eq!(listing.containers[0].meta, Ok(a.clone()));
    assert_eq!(listing.containers[1].meta, Ok(b));
    let err = listing.containers[2].meta.as_ref().unwrap_err();
    assert!(err.contains("not valid"), "{err}");
    assert!(listing.containers[0].created_at >= before - 1_000_000_000);
    assert_eq!(listing.sandboxes.len(), 1);
    assert_eq!(listing.sandboxes[0].id, POD);
    assert_eq!(listing.sandboxes[0].meta, Ok(w.sandbox_meta(POD)));

    let c = w.backend.client();
    c.containers()
        .delete(c.request(DeleteContainerRequest {
            id: "foreign".into(),
        }))
        .await
        .unwrap();
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_already_exists_and_failed_precondition() {
    let w = BackendFixture::start().await;
    let missing = target("nosuch");
    // NotFound.
    assert_eq!(
        w.backend.task_status(&missing).await.unwrap(),
        TaskState::NotFound
    );
    for (what, r) in [
        (
            "delete container",
            w.backend.delete_container(&missing).await,
        ),
        ("kill", w.backend.kill_task(&missing, 9).await),
        ("delete task", w.backend.delete_task(&missing, false).await),
        (
            "delete task with kill",
            w.backend.delete_task(&missing, true).await,
        ),
    ] {
        assert_eq!(r.unwrap_err().kind, BackendErrorKind::NotFound, "{what}");
    }
    for (what, r) in [
        ("create task", w.backend.create_task(&missing).await),
        ("start", w.backend.start_task(&missing).await),
    ] {
        assert_eq!(r.unwrap_err().kind, BackendErrorKind::NotFound, "{what}");
    }
    let e = w.backend.wait_task(&missing).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound);
    assert_eq!(
        (e.verb.as_str(), e.target.as_str()),
        ("Tasks.Wait", "nosuch")
    );

    // AlreadyExists: the record, and a second task.
    let meta = w.meta("dup", &["sleep", "1000"]);
    let t = target("dup");
    w.backend.create_container(&meta).await.unwrap();
    let e = w.backend.create_container(&meta).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::AlreadyExists, "{e}");
    w.backend.create_task(&t).await.unwrap();
    let e = w.backend.create_task(&t).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::AlreadyExists, "{e}");
    // A task with no record: NotFound, while the record exists but has no task: NotFound too.
    let meta2 = w.meta("notask", &["true"]);
    w.backend.create_container(&meta2).await.unwrap();
    assert_eq!(
        w.backend.task_status(&target("notask")).await.unwrap(),
        TaskState::NotFound
    );
    assert_eq!(
        w.backend
            .kill_task(&target("notask"), 9)
            .await
            .unwrap_err()
            .kind,
        BackendErrorKind::NotFound
    );

    // FailedPrecondition: deleting a running task without kill, starting twice.
    w.backend.start_task(&t).await.unwrap();
    let e = w.backend.delete_task(&t, false).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");
    let e = w.backend.start_task(&t).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");

    // FailedPrecondition naming the image, or the sandbox, when they are missing.
    let mut noimg = w.meta("noimg", &["true"]);
    noimg.config.image = "docker.io/library/absent:1".into();
    let e = w.backend.create_container(&noimg).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound, "{e}");
    assert!(e.message.contains("docker.io/library/absent:1"), "{e}");
    let orphan = ContainerMeta {
        sandbox_id: SandboxId::new("nopod").unwrap(),
        ..w.meta("orphan", &["true"])
    };
    let e = w.backend.create_container(&orphan).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");
    assert!(e.message.contains("nopod"), "{e}");
    // Neither failed create left a record behind.
    let ids: Vec<String> = w
        .backend
        .list()
        .await
        .unwrap()
        .containers
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, vec!["dup", "notask"]);
    // A sandbox whose pause task is gone cannot take new containers.
    let pod = Target::Sandbox(SandboxId::new(POD).unwrap());
    w.backend.delete_task(&pod, true).await.unwrap();
    let e = w
        .backend
        .create_container(&w.meta("late", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_left_by_a_crashed_create_does_not_block_the_id() {
    use containerd_client::services::v1::snapshots::PrepareSnapshotRequest;
    let w = BackendFixture::start().await;
    // A crash between Snapshots.Prepare and Containers.Create leaves a snapshot named after
    // the container and no record.
    let image = w.ctd.image_ref().to_owned();
    let diff_id = {
        let c = w.backend.client();
        let list = c
            .snapshots()
            .list(c.request(
                containerd_client::services::v1::snapshots::ListSnapshotsRequest {
                    snapshotter: "overlayfs".into(),
                    filters: vec![],
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let mut committed = Vec::new();
        let mut stream = list;
        while let Some(m) = stream.message().await.unwrap() {
            committed.extend(
                m.info
                    .into_iter()
                    .filter(|i| i.parent.is_empty())
                    .map(|i| i.name),
            );
        }
        assert_eq!(committed.len(), 1, "{image} has one layer: {committed:?}");
        committed.remove(0)
    };
    let c = w.backend.client();
    c.snapshots()
        .prepare(c.request(PrepareSnapshotRequest {
            snapshotter: "overlayfs".into(),
            key: "phoenix".into(),
            parent: diff_id,
            labels: HashMap::new(),
        }))
        .await
        .unwrap();
    let meta = w.meta("phoenix", &["sh", "-c", "exit 9"]);
    w.run(&meta).await;
    assert_eq!(
        w.backend.wait_task(&target("phoenix")).await.unwrap().code,
        9
    );
    w.cleanup().await;
}
