//! End to end: a real berthd on a private containerd, driven over its CRI socket.

mod common;

use common::*;
use k8s_cri::v1 as cri;
use tokio_stream::StreamExt;

/// Max log record size berthd runs with here, so a long line is split.
const MAX_LINE: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_lifecycle_with_logs_events_filters_and_no_task_left() {
    let env = Env::start("life", &["--max-log-line-bytes", &MAX_LINE.to_string()]).await;
    let mut cri = env.cri().await;
    let image = env.ctd.image_ref().to_owned();

    let v = cri
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("berth", "v1")
    );
    let st = cri
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conds = st.status.unwrap().conditions;
    let net = conds.iter().find(|c| c.r#type == "NetworkReady").unwrap();
    assert!(
        !net.status && !net.reason.is_empty(),
        "host network only: {net:?}"
    );
    let rc = cri
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );

    // Events from now on.
    let mut stream = cri
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(e)) = stream.next().await {
            if ev_tx.send(e).is_err() {
                break;
            }
        }
    });

    let pod = run_pod(&mut cri, pod_config("life", &env.logs())).await;
    let ps = cri
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ps.status.as_ref().unwrap().state,
        cri::PodSandboxState::SandboxReady as i32
    );
    let info: serde_json::Value = serde_json::from_str(&ps.info["info"]).unwrap();
    assert!(
        info["pid"].as_u64().unwrap() > 0,
        "pause pid in verbose info: {info}"
    );

    // A container that prints (stdout, stderr, a long line, an unterminated tail) and exits 3.
    let long = "x".repeat(MAX_LINE * 2 + 10);
    let hello = run_container(
        &mut cri,
        &pod,
        shell(
            "hello",
            &image,
            &format!("echo hello; echo oops >&2; echo {long}; printf tail; exit 3"),
        ),
    )
    .await;
    let sleeper = run_container(&mut cri, &pod, shell("sleeper", &image, "sleep 1000")).await;
    let created = create_container(&mut cri, &pod, shell("idle", &image, "true")).await;

    let s = wait_state(&cri, &hello, cri::ContainerState::ContainerExited).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    assert!(s.started_at > 0 && s.finished_at >= s.started_at);
    let log = s.log_path.clone();
    assert_eq!(log, env.logs().join("life/hello.log").display().to_string());
    // Every record is `<RFC 3339> <stream> <P|F> <content>`; the long line is split.
    let text = wait_log(&log, "hello").await;
    for line in text.lines() {
        let r = berth_cli::crilog::parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            r.content.len() <= MAX_LINE,
            "record over the max size: {line:?}"
        );
    }
    let records: Vec<_> = text
        .lines()
        .map(|l| berth_cli::crilog::parse(l).unwrap())
        .collect();
    let long_parts: Vec<_> = records
        .iter()
        .filter(|r| r.content.starts_with('x'))
        .collect();
    assert_eq!(
        long_parts.iter().map(|r| r.partial).collect::<Vec<_>>(),
        vec![true, true, false],
        "{MAX_LINE}+{MAX_LINE}+10 bytes: P, P, F"
    );
    use berth_cli::crilog::Stream::{Stderr, Stdout};
    let lines = log_lines(&log);
    assert!(lines.contains(&(Stdout, "hello".into())), "{lines:?}");
    assert!(lines.contains(&(Stderr, "oops".into())), "{lines:?}");
    assert!(lines.contains(&(Stdout, long.clone())), "{lines:?}");
    // The unterminated tail is written as a P record once the task is gone.
    let text = wait_log(&log, "stdout P tail").await;
    assert!(text.ends_with("stdout P tail\n"), "{text:?}");

    // The sleeper runs, with its pid in the verbose info.
    let (s, pid) = status(&mut cri, &sleeper).await;
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    assert!(pid > 0 && proc_exists(pid));

    // ListContainers filters.
    let list = |filter: cri::ContainerFilter| {
        let mut c = cri.clone();
        async move {
            let mut ids: Vec<String> = c
                .list_containers(cri::ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let state = |s: cri::ContainerState| Some(cri::ContainerStateValue { state: s as i32 });
    assert_eq!(
        list(cri::ContainerFilter {
            state: state(cri::ContainerState::ContainerRunning),
            ..Default::default()
        })
        .await,
        vec![sleeper.clone()]
    );
    assert_eq!(
        list(cri::ContainerFilter {
            state: state(cri::ContainerState::ContainerCreated),
            ..Default::default()
        })
        .await,
        vec![created.clone()]
    );
    assert_eq!(
        list(cri::ContainerFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        })
        .await,
        sorted(vec![hello.clone(), sleeper.clone(), created.clone()])
    );
    assert_eq!(
        list(cri::ContainerFilter {
            label_selector: [("name".to_owned(), "hello".to_owned())].into(),
            ..Default::default()
        })
        .await,
        vec![hello.clone()]
    );
    assert_eq!(
        list(cri::ContainerFilter {
            id: sleeper[..12].to_owned(),
            ..Default::default()
        })
        .await,
        vec![sleeper.clone()]
    );
    assert!(
        list(cri::ContainerFilter {
            pod_sandbox_id: "0000".into(),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    // UpdateContainerResources reaches the running task's cgroup.
    cri.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: sleeper.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let ns = env.ctd.namespace();
    let v1 = format!("/sys/fs/cgroup/memory/{ns}/{sleeper}/memory.limit_in_bytes");
    let v2 = format!("/sys/fs/cgroup/{ns}/{sleeper}/memory.max");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap();
    assert_eq!(limit.trim(), (96u64 << 20).to_string());
    // ... and berth's status records it (ContainerStatus reports the new limit).
    let st = cri
        .container_status(cri::ContainerStatusRequest {
            container_id: sleeper.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        st.resources
            .and_then(|r| r.linux)
            .map(|l| l.memory_limit_in_bytes),
        Some(96 << 20)
    );

    // A created container gets them in its OCI spec (its task starts with them).
    cri.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: created.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 80 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let info: serde_json::Value = serde_json::from_str(
        &env.ctd
            .ctr(&["containers", "info", &created])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        info["Spec"]["linux"]["resources"]["memory"]["limit"],
        80 << 20,
        "{info}"
    );
    let e = cri
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: hello.clone(),
            linux: Some(cri::LinuxContainerResources::default()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "exited: {e:?}");

    // Not built yet: a clear Unimplemented.
    let e = cri
        .exec(cri::ExecRequest {
            container_id: sleeper.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    assert!(e.message().contains("Exec"), "{}", e.message());

    // StopContainer: SIGTERM ends `sleep` (not PID 1: the pod's pause process is).
    stop_container(&mut cri, &sleeper, 1).await;
    let (s, _) = status(&mut cri, &sleeper).await;
    assert_eq!(
        (s.state, s.exit_code),
        (cri::ContainerState::ContainerExited as i32, 143)
    );
    assert!(!proc_exists(pid) || !berth_testkit::process_alive(pid));

    for id in [&hello, &sleeper, &created] {
        remove_container(&mut cri, id).await;
    }
    // Unknown ids: stop and remove succeed, start and status are NotFound.
    let ghost = "0123456789abcdef".to_owned();
    stop_container(&mut cri, &ghost, 0).await;
    remove_container(&mut cri, &ghost).await;
    let e = cri
        .start_container(cri::StartContainerRequest {
            container_id: ghost.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    stop_pod(&mut cri, &ghost).await;

    stop_pod(&mut cri, &pod).await;
    assert_eq!(
        pod_state(&mut cri, &pod).await,
        cri::PodSandboxState::SandboxNotready as i32
    );
    let notready = cri
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                state: Some(cri::PodSandboxStateValue {
                    state: cri::PodSandboxState::SandboxNotready as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(notready.len(), 1);
    remove_pod(&mut cri, &pod).await;
    let pods = list_pods(&mut cri).await;
    assert!(pods.is_empty(), "{pods:?}");

    // The event stream saw hello's whole life, in order.
    let deleted = cri::ContainerEventType::ContainerDeletedEvent as i32;
    let mut seen: Vec<i32> = Vec::new();
    let kinds = wait_for("hello's deleted event", || {
        while let Ok(e) = ev_rx.try_recv() {
            if e.container_id == hello {
                seen.push(e.container_event_type);
            }
        }
        std::future::ready(seen.contains(&deleted).then(|| seen.clone()))
    })
    .await;
    use cri::ContainerEventType::*;
    let want = [
        ContainerCreatedEvent,
        ContainerStartedEvent,
        ContainerStoppedEvent,
        ContainerDeletedEvent,
    ]
    .map(|k| k as i32);
    let mut it = kinds.iter();
    for k in want {
        assert!(
            it.any(|x| *x == k),
            "{k} missing or out of order in {kinds:?}"
        );
    }

    // Nothing left in containerd.
    env.wait_all_gone(false).await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_container_log_follows_rotation() {
    let env = Env::start("reopen", &[]).await;
    let mut cri = env.cri().await;
    let pod = run_pod(&mut cri, pod_config("rot", &env.logs())).await;
    // Prints a line each time it gets USR1 (no timing involved).
    let id = run_container(
        &mut cri,
        &pod,
        shell(
            "rot",
            env.ctd.image_ref(),
            "n=0; trap 'n=$((n+1)); echo line-$n' USR1; echo ready; while :; do sleep 0.05; done",
        ),
    )
    .await;
    let (s, pid) = status(&mut cri, &id).await;
    let log = s.log_path;
    wait_log(&log, "ready").await;
    signal(pid, rustix::process::Signal::USR1);
    wait_log(&log, "line-1").await;
    let rotated = format!("{log}.1");
    std::fs::rename(&log, &rotated).unwrap();
    cri.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    signal(pid, rustix::process::Signal::USR1);
    let new = wait_log(&log, "line-2").await;
    assert!(
        !new.contains("line-1"),
        "the new file holds only new lines: {new:?}"
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("line-1") && !old.contains("line-2"), "{old:?}");
    // Not running: FailedPrecondition.
    stop_container(&mut cri, &id, 0).await;
    let e = cri
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    remove_pod(&mut cri, &pod).await;
    env.finish().await;
}
