//! A container the kernel OOM-kills under its memory limit is EXITED 137 with reason
//! OOMKilled, as containerd's CRI reports it; an ordinary SIGKILL stays "Error".

mod common;

use common::*;
use k8s_cri::v1 as cri;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_reported_as_oomkilled() {
    let env = Env::start("oom", &[]).await;
    let mut cri = env.cri().await;
    let image = env.ctd.image_ref().to_owned();
    let pod = run_pod(&mut cri, pod_config("oompod", &env.logs())).await;
    // dd's 64 MiB buffer does not fit under a 16 MiB limit.
    let mut hog = shell(
        "hog",
        &image,
        "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
    );
    limit_memory(&mut hog, 16 << 20);
    let hog = run_container(&mut cri, &pod, hog).await;
    let s = wait_state(&cri, &hog, cri::ContainerState::ContainerExited).await;
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (137, "OOMKilled"),
        "{s:?}"
    );
    // A plain SIGKILL is not an OOM kill.
    let sleeper = run_container(&mut cri, &pod, shell("sleeper", &image, "exec sleep 1000")).await;
    stop_container(&mut cri, &sleeper, 0).await;
    let s = wait_state(&cri, &sleeper, cri::ContainerState::ContainerExited).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"), "{s:?}");
    for id in [&hog, &sleeper] {
        remove_container(&mut cri, id).await;
    }
    stop_pod(&mut cri, &pod).await;
    remove_pod(&mut cri, &pod).await;
    env.wait_all_gone(true).await;
    env.finish().await;
}
