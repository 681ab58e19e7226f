//! End to end through the CRI: CreateContainer takes the image by ID (what the kubelet
//! sends), by unique ID prefix and by a name containerd's CRI normalises; ContainerStatus
//! reports the image's tag and ID as containerd's does, also after a berthd restart; a
//! missing image is NotFound naming it and creates nothing; a reference that is neither a
//! name nor an ID is InvalidArgument naming the field (docs/containerd-behaviour.md §4.1.1).

mod common;

use berth_cli::client::CriClient;
use common::*;
use k8s_cri::v1 as cri;

async fn create(
    cri: &mut CriClient,
    pod: &str,
    name: &str,
    image: &str,
) -> Result<String, tonic::Status> {
    cri.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(shell(name, image, "sleep 30")),
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().container_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_by_id_prefix_and_name_and_report_the_image_id() {
    let mut env = Env::start("images", &[]).await;
    let image = env.ctd.image_ref().to_owned(); // docker.io/library/berth-busybox:latest
    let mut cri = env.cri().await;
    let pod = run_pod(&mut cri, pod_config("imgpod", &env.logs())).await;

    // By the short name: normalised to the imported image.
    let by_name = create(&mut cri, &pod, "byname", "berth-busybox")
        .await
        .unwrap();
    let (st, _) = status(&mut cri, &by_name).await;
    let id = st.image_id.clone();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{st:?}");
    // No repo digest (ctr import made none): image_ref is the image ID, as containerd's.
    assert_eq!(st.image_ref, id);
    assert_eq!(st.image.as_ref().unwrap().image, image, "the repo tag");
    assert_eq!(
        st.image.as_ref().unwrap().user_specified_image,
        "berth-busybox"
    );

    // By ID (what the kubelet sends) and by a 12-hex prefix, then started: it runs.
    let hex = id["sha256:".len()..].to_owned();
    let by_id = create(&mut cri, &pod, "byid", &id).await.unwrap();
    let by_prefix = create(&mut cri, &pod, "byprefix", &hex[..12])
        .await
        .unwrap();
    for c in [&by_id, &by_prefix] {
        cri.start_container(cri::StartContainerRequest {
            container_id: c.clone(),
        })
        .await
        .expect("StartContainer");
        let st = wait_state(&cri, c, cri::ContainerState::ContainerRunning).await;
        assert_eq!(st.image_ref, id);
        assert_eq!(st.image_id, id);
        assert_eq!(st.image.as_ref().unwrap().image, image);
    }
    // ListContainers: the image as sent, image_ref the ID (containerd's `toCRIContainer`).
    let listed = cri
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    let item = listed.iter().find(|c| c.id == by_prefix).expect("listed");
    assert_eq!(item.image.as_ref().unwrap().image, &hex[..12]);
    assert_eq!(item.image_ref, id);

    // A missing image: NotFound naming it, nothing created in containerd.
    let records = env.records().await;
    for missing in ["berth-busybox:9", "docker.io/library/nope", "beefbeef"] {
        let e = create(&mut cri, &pod, "missing", missing)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{missing}: {e:?}");
        assert!(e.message().contains(&format!("{missing:?}")), "{e:?}");
    }
    // Not a reference nor an ID: refused before anything happens, naming the field.
    let e = create(&mut cri, &pod, "bad", "BusyBox").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("config.image.image"), "{e:?}");
    assert_eq!(env.records().await, records, "no record was created");
    // The name is free again: the same container with an existing image is created.
    let again = create(&mut cri, &pod, "missing", &image).await.unwrap();

    // After a berthd restart ContainerStatus answers the same (the resolution is durable).
    let before = status(&mut cri, &by_prefix).await.0;
    env.kill9_berthd();
    env.start_berthd().await;
    let mut cri = env.cri().await;
    let after = status(&mut cri, &by_prefix).await.0;
    assert_eq!(after.image_ref, before.image_ref);
    assert_eq!(after.image_id, before.image_id);
    assert_eq!(after.image, before.image);

    for c in [&by_name, &by_id, &by_prefix, &again] {
        remove_container(&mut cri, c).await;
    }
    remove_pod(&mut cri, &pod).await;
    env.wait_all_gone(true).await;
    env.finish().await;
}
