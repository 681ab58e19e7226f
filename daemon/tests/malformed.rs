//! End to end: malformed requests get typed errors naming the field, change nothing, and
//! never bring berthd down.

mod common;

use common::*;
use k8s_cri::v1 as cri;

fn expect_invalid<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, field: &str) {
    let e = r.expect_err("a malformed request must fail");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
    assert!(
        e.message().contains(field),
        "the message names {field}: {:?}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_change_nothing() {
    let env = Env::start("bad", &[]).await;
    let image = env.ctd.image_ref().to_owned();
    let mut cri = env.cri().await;
    let good = pod_config("good", &env.logs());
    let pod = run_pod(&mut cri, good.clone()).await;
    let records_before = env.records().await;

    // RunPodSandbox.
    type PodMut = fn(&mut cri::RunPodSandboxRequest);
    let pod_cases: Vec<(PodMut, &str)> = vec![
        (|r| r.config = None, "config"),
        (
            |r| r.config.as_mut().unwrap().metadata = None,
            "config.metadata",
        ),
        (
            |r| r.config.as_mut().unwrap().metadata.as_mut().unwrap().name = String::new(),
            "config.metadata.name",
        ),
        (
            |r| r.config.as_mut().unwrap().metadata.as_mut().unwrap().uid = "../../etc".into(),
            "config.metadata.uid",
        ),
        (
            |r| {
                r.config
                    .as_mut()
                    .unwrap()
                    .metadata
                    .as_mut()
                    .unwrap()
                    .namespace = "n".repeat(100_000)
            },
            "config.metadata.namespace",
        ),
        (
            |r| r.config.as_mut().unwrap().hostname = "h".repeat(1000),
            "config.hostname",
        ),
        (
            |r| r.config.as_mut().unwrap().log_directory = "/var/log/../../etc".into(),
            "config.log_directory",
        ),
        (
            |r| {
                r.config
                    .as_mut()
                    .unwrap()
                    .labels
                    .insert("big".into(), "v".repeat(1 << 20));
            },
            "config.labels",
        ),
        (|r| r.runtime_handler = "kata".into(), "runtime_handler"),
    ];
    for (i, (mutate, field)) in pod_cases.into_iter().enumerate() {
        let mut req = cri::RunPodSandboxRequest {
            config: Some(pod_config(&format!("bad{i}"), &env.logs())),
            runtime_handler: String::new(),
        };
        mutate(&mut req);
        expect_invalid(cri.run_pod_sandbox(req).await, field);
    }

    // CreateContainer.
    type CtrMut = fn(&mut cri::CreateContainerRequest);
    let ctr_cases: Vec<(CtrMut, &str)> = vec![
        (|r| r.pod_sandbox_id = "../etc".into(), "pod_sandbox_id"),
        (|r| r.pod_sandbox_id = "a/b".into(), "pod_sandbox_id"),
        (|r| r.pod_sandbox_id = String::new(), "pod_sandbox_id"),
        (|r| r.config = None, "config"),
        (
            |r| r.config.as_mut().unwrap().metadata = None,
            "config.metadata",
        ),
        (
            |r| r.config.as_mut().unwrap().image = None,
            "config.image.image",
        ),
        (
            |r| r.config.as_mut().unwrap().log_path = "../../../etc/x".into(),
            "config.log_path",
        ),
        (
            |r| r.config.as_mut().unwrap().log_path = "/etc/x".into(),
            "config.log_path",
        ),
        (
            |r| r.config.as_mut().unwrap().args = vec!["a\0b".into()],
            "config.args[0]",
        ),
        (
            |r| r.config.as_mut().unwrap().metadata.as_mut().unwrap().name = "c".repeat(10_000),
            "config.metadata.name",
        ),
        (
            |r| r.config.as_mut().unwrap().mounts = vec![cri::Mount::default()],
            "config.mounts",
        ),
        (|r| r.config.as_mut().unwrap().tty = true, "config.tty"),
    ];
    for (mutate, field) in ctr_cases {
        let mut req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(shell("c", &image, "true")),
            sandbox_config: None,
        };
        mutate(&mut req);
        expect_invalid(cri.create_container(req).await, field);
    }

    // Ids.
    for bad in ["a/b", "..", "../../x", &"f".repeat(200), "", "x\ny"] {
        expect_invalid(
            cri.start_container(cri::StartContainerRequest {
                container_id: bad.into(),
            })
            .await,
            "container_id",
        );
        expect_invalid(
            cri.container_status(cri::ContainerStatusRequest {
                container_id: bad.into(),
                verbose: true,
            })
            .await,
            "container_id",
        );
        expect_invalid(
            cri.remove_container(cri::RemoveContainerRequest {
                container_id: bad.into(),
            })
            .await,
            "container_id",
        );
        expect_invalid(
            cri.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: bad.into(),
            })
            .await,
            "pod_sandbox_id",
        );
    }
    expect_invalid(
        cri.stop_container(cri::StopContainerRequest {
            container_id: "abc".into(),
            timeout: -5,
        })
        .await,
        "timeout",
    );
    expect_invalid(
        cri.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue { state: 99 }),
                ..Default::default()
            }),
        })
        .await,
        "filter.state.state",
    );

    // Unknown ids: NotFound for reads and start, success for stop and remove.
    let ghost = "feedface".to_owned();
    let e = cri
        .container_status(cri::ContainerStatusRequest {
            container_id: ghost.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = cri
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: ghost.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = cri
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: ghost.clone(),
            config: Some(shell("c", &image, "true")),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    stop_container(&mut cri, &ghost, 0).await;
    remove_container(&mut cri, &ghost).await;
    remove_pod(&mut cri, &ghost).await;

    // A name taken: FailedPrecondition, nothing new.
    let e = cri
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(good),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");

    // A message over the 4 MiB limit is refused by the transport, typed.
    let mut huge = pod_config("huge", &env.logs());
    huge.annotations.insert("a".into(), "v".repeat(5 << 20));
    let e = cri
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(huge),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_ne!(e.code(), tonic::Code::Ok);

    // Nothing changed; berthd is alive and well.
    let pods = list_pods(&mut cri).await;
    assert_eq!(
        pods.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![pod.clone()]
    );
    let containers = cri
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(containers.is_empty(), "{containers:?}");
    assert_eq!(
        env.records().await,
        records_before,
        "no containerd record was created"
    );
    let log_dirs: Vec<_> = std::fs::read_dir(env.logs())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(log_dirs.len() <= 1, "no stray log directory: {log_dirs:?}");
    cri.version(cri::VersionRequest::default()).await.unwrap();
    assert!(!env.berthd_log().contains("panicked"));
    let b = env.berthd.as_ref().unwrap().pid();
    assert!(berth_testkit::process_alive(b));
    remove_pod(&mut cri, &pod).await;
    env.finish().await;
}
