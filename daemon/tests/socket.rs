//! End to end: the CRI socket (mode, a live one refused, a stale one replaced, a foreign
//! file kept) and Unavailable until berthd reaches containerd. No containerd is started:
//! berthd points at a socket nobody serves.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use k8s_cri::v1 as cri;

fn args(dir: &std::path::Path) -> Vec<String> {
    let d = dir.display();
    [
        "--socket".to_owned(),
        format!("{d}/cri.sock"),
        "--containerd-socket".to_owned(),
        format!("{d}/no-containerd.sock"),
        "--containerd-namespace".to_owned(),
        "berth-socket-test".to_owned(),
        "--root-dir".to_owned(),
        format!("{d}/root"),
        "--state-dir".to_owned(),
        format!("{d}/state"),
    ]
    .to_vec()
}

async fn answering(socket: &std::path::Path) -> berth_cli::client::CriClient {
    wait_for("berthd to answer", || async {
        let mut c = berth_cli::client::connect(socket).await.ok()?;
        c.version(cri::VersionRequest::default()).await.ok()?;
        Some(c)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_rules_and_unavailable_until_containerd_answers() {
    berth_testkit::require_root_and_tools().unwrap();
    let dir = berth_testkit::scratch_dir("sock").unwrap();
    let socket = dir.path().join("cri.sock");
    let log = dir.path().join("berthd.log");

    // A stale socket file (its server is gone) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let first = spawn_berthd(&args(dir.path()), &log);
    let mut cri = answering(&socket).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    // Not connected to containerd: Unavailable, after validation.
    let s = cri
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let ready = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(!ready.status);
    assert_eq!(ready.reason, "ContainerdUnavailable");
    let e = cri
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    let e = cri
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("p", dir.path())),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    let e = cri
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: None,
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::InvalidArgument,
        "validation comes first"
    );

    // A live socket is refused.
    let second_log = dir.path().join("second.log");
    let status = spawn_berthd(&args(dir.path()), &second_log).wait_exit();
    assert!(!status.success());
    let said = std::fs::read_to_string(&second_log).unwrap();
    assert!(said.contains("another berthd"), "{said:?}");
    cri.version(cri::VersionRequest::default()).await.unwrap();

    // SIGTERM: exit 0, socket removed.
    assert!(first.terminate());
    assert!(!socket.exists());

    // A file that is not a socket is never replaced.
    std::fs::write(&socket, b"precious").unwrap();
    let status = spawn_berthd(&args(dir.path()), &second_log).wait_exit();
    assert!(!status.success());
    assert_eq!(std::fs::read(&socket).unwrap(), b"precious");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(!log_text.contains("panicked"), "{log_text}");
}
