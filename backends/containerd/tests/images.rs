//! Image resolution against a real containerd (docs/containerd-behaviour.md §4.1.1): by
//! name (normalised, untagged = `:latest`), by image ID, by unique ID prefix, with or
//! without `sha256:`; a missing image is NotFound naming it; a container created from a
//! resolved image records it and runs.

mod common;

use berth_backend::{Backend, BackendErrorKind, ContainerId, TaskState};
use common::{BackendFixture, target};

fn cid(s: &str) -> ContainerId {
    ContainerId::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn resolves_by_name_id_and_prefix_and_creates_from_it() {
    let w = BackendFixture::start().await;
    let image = w.ctd.image_ref().to_owned(); // docker.io/library/berth-busybox:latest
    let by_name = w
        .backend
        .resolve_image(&cid("r1"), "berth-busybox")
        .await
        .unwrap();
    assert_eq!(by_name.name, image, "the short name is normalised");
    assert_eq!(by_name.repo_tag, image);
    assert!(
        by_name.id.starts_with("sha256:") && by_name.id.len() == 71,
        "{by_name:?}"
    );
    // ctr import leaves no repo digest: image_ref is the image ID.
    assert_eq!(by_name.repo_digest, "");
    assert_eq!(by_name.cri_image_ref(), by_name.id);
    // The ID is the config digest, as containerd's CRI has it: read it independently, the
    // manifest digest from `ctr images ls`, the config digest from that manifest.
    let ls = w.ctd.ctr(&["images", "ls"]).await.expect("ctr images ls");
    let manifest = ls
        .lines()
        .find(|l| l.starts_with(&image))
        .and_then(|l| l.split_whitespace().find(|f| f.starts_with("sha256:")))
        .unwrap_or_else(|| panic!("{image} not in {ls}"))
        .to_owned();
    let body = w
        .ctd
        .ctr(&["content", "get", &manifest])
        .await
        .expect("ctr content get");
    let m: serde_json::Value = serde_json::from_str(&body).expect("manifest JSON");
    assert_eq!(m["config"]["digest"], by_name.id.as_str(), "{body}");

    let hex = &by_name.id["sha256:".len()..];
    for alias in [
        by_name.id.clone(),
        hex.to_owned(),
        hex[..12].to_owned(),
        format!("sha256:{}", &hex[..12]),
        "docker.io/berth-busybox".to_owned(),
        "library/berth-busybox:latest".to_owned(),
    ] {
        let r = w.backend.resolve_image(&cid("r1"), &alias).await.unwrap();
        assert_eq!(r.id, by_name.id, "{alias}");
        assert_eq!(
            r.name, image,
            "{alias}: created from the image's first reference"
        );
    }

    // Another name for the same image; an untagged reference means `:latest` (critest's
    // hostnet-nginx image is referenced so).
    let untagged = "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64";
    w.ctd
        .ctr(&["images", "tag", &image, &format!("{untagged}:latest")])
        .await
        .expect("ctr images tag");
    let r = w.backend.resolve_image(&cid("r1"), untagged).await.unwrap();
    assert_eq!(r.id, by_name.id);
    assert_eq!(r.name, format!("{untagged}:latest"));
    // The first repo tag in docker's order, whatever name it was asked by.
    assert_eq!(r.repo_tag, image);

    // Missing images: NotFound, naming what was asked for.
    for missing in ["berth-busybox:9", "docker.io/library/absent", "beefbeef"] {
        let e = w
            .backend
            .resolve_image(&cid("r1"), missing)
            .await
            .unwrap_err();
        assert_eq!(e.kind, BackendErrorKind::NotFound, "{missing}: {e}");
        assert!(e.message.contains(&format!("{missing:?}")), "{e}");
    }

    // Created from an image resolved by prefix: the record names the image it came from,
    // the metadata carries the resolution, the process runs.
    let mut meta = w.meta("img1", &["sleep", "30"]);
    meta.config.image = hex[..12].to_owned();
    meta.image = w
        .backend
        .resolve_image(&meta.id, &meta.config.image)
        .await
        .unwrap();
    let pid = w.run(&meta).await;
    assert!(matches!(
        w.backend.task_status(&target("img1")).await.unwrap(),
        TaskState::Running { pid: p } if p == pid
    ));
    let listed = w.backend.list().await.unwrap();
    let stored = listed
        .containers
        .iter()
        .find(|l| l.id == "img1")
        .and_then(|l| l.meta.as_ref().ok())
        .expect("img1 listed with metadata");
    assert_eq!(
        stored.image, meta.image,
        "the resolution is durable in the record"
    );
    let rec = w
        .ctd
        .ctr(&["containers", "info", "img1"])
        .await
        .expect("ctr containers info");
    assert!(rec.contains(&format!("\"Image\": \"{image}\"")), "{rec}");

    // A container whose image is gone by the time it is created: NotFound, nothing made.
    let mut gone = w.meta("img2", &["true"]);
    gone.image = berth_backend::ImageRef {
        id: format!("sha256:{}", "0".repeat(64)),
        name: "docker.io/library/gone:1".into(),
        ..Default::default()
    };
    let e = w.backend.create_container(&gone).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound, "{e}");
    assert!(
        !w.backend
            .list()
            .await
            .unwrap()
            .containers
            .iter()
            .any(|l| l.id == "img2")
    );
    w.cleanup().await;
}
