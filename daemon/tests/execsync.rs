//! ExecSync end to end: a real berthd on a private containerd, over the CRI socket
//! (docs/containerd-behaviour.md §11). Needs the containerd exec implementation
//! (`backends/containerd/src/exec.rs`).

mod common;

use berth_cli::client::CriClient;
use common::*;
use k8s_cri::v1 as cri;

/// Processes whose command line is exactly `argv` (`/proc/<pid>/cmdline`).
fn procs_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

async fn exec(
    cri: &mut CriClient,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri::ExecSyncResponse, tonic::Status> {
    cri.exec_sync(cri::ExecSyncRequest {
        container_id: id.to_owned(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
    })
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_output_codes_timeout_and_nothing_left() {
    let env = Env::start("exec", &[]).await;
    let mut cri = env.cri().await;
    let image = env.ctd.image_ref().to_owned();
    let pod = run_pod(&mut cri, pod_config("execpod", &env.logs())).await;
    let sleeper = run_container(&mut cri, &pod, shell("sleeper", &image, "sleep 1000")).await;

    let hi = exec(&mut cri, &sleeper, &["echo", "hi"], 0).await.unwrap();
    assert_eq!((hi.exit_code, hi.stdout.as_slice()), (0, &b"hi\n"[..]));
    assert!(hi.stderr.is_empty());

    let three = exec(
        &mut cri,
        &sleeper,
        &["sh", "-c", "echo oops >&2; exit 3"],
        5,
    )
    .await
    .unwrap();
    assert_eq!(three.exit_code, 3, "a non-zero code is an answer");
    assert_eq!(three.stderr, b"oops\n");

    // critest: `sleep 4321` with a 1 s timeout fails, and no `sleep` is left.
    let started = std::time::Instant::now();
    let e = exec(&mut cri, &sleeper, &["sleep", "4321"], 1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(
        e.message().contains("timeout 1s exceeded"),
        "{}",
        e.message()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    wait_for("the timed-out sleep to be gone", || async {
        procs_running(&["sleep", "4321"]).is_empty().then_some(())
    })
    .await;

    // A background child holding the pipe open cannot hold the answer.
    let started = std::time::Instant::now();
    let bg = exec(
        &mut cri,
        &sleeper,
        &["sh", "-c", "sleep 600 & echo started"],
        30,
    )
    .await
    .unwrap();
    assert_eq!((bg.exit_code, bg.stdout.as_slice()), (0, &b"started\n"[..]));
    assert!(started.elapsed() < std::time::Duration::from_secs(25));

    // Validation names the field.
    let e = exec(&mut cri, &sleeper, &[], 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("cmd"), "{}", e.message());
    let e = exec(&mut cri, "", &["true"], 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = exec(&mut cri, "nosuchcontainer", &["true"], 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // An exited container: refused, naming its state.
    stop_container(&mut cri, &sleeper, 1).await;
    let e = exec(&mut cri, &sleeper, &["true"], 0).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("CONTAINER_EXITED"), "{}", e.message());

    remove_container(&mut cri, &sleeper).await;
    remove_pod(&mut cri, &pod).await;
    env.wait_all_gone(true).await;
    env.finish().await;
}
