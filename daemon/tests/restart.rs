//! End to end: crashes. berthd SIGKILLed with running containers (some exiting while it is
//! down), berthd stopped gracefully, containerd SIGKILLed under berthd.

mod common;

use berth_testkit::process_alive;
use common::*;
use k8s_cri::v1 as cri;
use rustix::process::Signal;

const LOOP: &str = "while :; do sleep 0.05; done";

/// The container both tests see exit while something is down: it says `ready`, then on
/// SIGTERM says `bye` and exits 7.
fn leaver_config(image: &str) -> cri::ContainerConfig {
    shell(
        "leaver",
        image,
        &format!("trap 'echo bye; exit 7' TERM; echo ready; {LOOP}"),
    )
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Waits until the shim has reaped `pids` (no /proc entry left).
async fn wait_reaped(pids: &[u32]) {
    wait_for("processes to be reaped", || async {
        pids.iter().all(|&p| !proc_exists(p)).then_some(())
    })
    .await;
}

/// Waits until containerd reports the tasks `ids` STOPPED (their shims have recorded the
/// exits, with their times).
async fn wait_stopped_in_containerd(env: &Env, ids: &[&String]) {
    wait_for("containerd to report the tasks stopped", || async {
        let out = env.ctd.ctr(&["tasks", "ls"]).await.ok()?;
        ids.iter()
            .all(|id| {
                out.lines()
                    .any(|l| l.starts_with(id.as_str()) && l.contains("STOPPED"))
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berthd_kill9_with_exits_while_down_then_graceful_restart() {
    let mut env = Env::start("k9", &[]).await;
    let image = env.ctd.image_ref().to_owned();
    let mut cri = env.cri().await;
    let pod = run_pod(&mut cri, pod_config("k9", &env.logs())).await;
    let stay = run_container(
        &mut cri,
        &pod,
        shell(
            "stay",
            &image,
            &format!("n=0; trap 'n=$((n+1)); echo usr1-$n' USR1; echo ready; {LOOP}"),
        ),
    )
    .await;
    let leaver = run_container(&mut cri, &pod, leaver_config(&image)).await;
    let killed = run_container(
        &mut cri,
        &pod,
        shell("killed", &image, &format!("echo ready; {LOOP}")),
    )
    .await;
    let created = create_container(&mut cri, &pod, shell("created", &image, "true")).await;
    let mut pids = std::collections::HashMap::new();
    for id in [&stay, &leaver, &killed] {
        let (s, pid) = status(&mut cri, id).await;
        wait_log(&s.log_path, "ready").await;
        pids.insert(id.clone(), (pid, s.log_path));
    }

    // berthd dies; while it is down one container exits 7, one is SIGKILLed, and the one
    // that stays writes a line (into the FIFO nobody reads now).
    env.kill9_berthd();
    let outage_start = now_ns();
    signal(pids[&leaver].0, Signal::TERM);
    signal(pids[&killed].0, Signal::KILL);
    signal(pids[&stay].0, Signal::USR1);
    wait_reaped(&[pids[&leaver].0, pids[&killed].0]).await;
    wait_stopped_in_containerd(&env, &[&leaver, &killed]).await;
    // A time made up at the restart (instead of the shim's) would come after this.
    let outage_end = now_ns();
    env.start_berthd().await;
    let mut cri = env.cri().await;

    let (s, pid) = status(&mut cri, &stay).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    assert_eq!(pid, pids[&stay].0, "same process");
    let s = wait_state(&cri, &leaver, cri::ContainerState::ContainerExited).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (7, "Error"), "{s:?}");
    assert!(
        outage_start <= s.finished_at && s.finished_at <= outage_end,
        "the real exit time ({}) within the outage [{outage_start}, {outage_end}]",
        s.finished_at
    );
    let s = wait_state(&cri, &killed, cri::ContainerState::ContainerExited).await;
    assert_eq!(s.exit_code, 137, "{s:?}");
    let (s, _) = status(&mut cri, &created).await;
    assert_eq!(s.state, cri::ContainerState::ContainerCreated as i32);
    assert_eq!(
        pod_state(&mut cri, &pod).await,
        cri::PodSandboxState::SandboxReady as i32
    );
    // Output a running container wrote while berthd was down reached its log (the shim
    // keeps the FIFO and its buffer). The last words of a container that exited meanwhile
    // may be lost, as under containerd: its shim closes the FIFO when the copy ends.
    wait_log(&pids[&stay].1, "usr1-1").await;

    // Graceful stop: the container keeps running, and the next berthd picks up its log.
    assert!(env.berthd.take().unwrap().terminate(), "exit 0 on SIGTERM");
    assert!(
        process_alive(pids[&stay].0),
        "SIGTERM to berthd left the container running"
    );
    signal(pids[&stay].0, Signal::USR1);
    env.start_berthd().await;
    let mut cri = env.cri().await;
    let (s, pid) = status(&mut cri, &stay).await;
    assert_eq!(
        (s.state, pid),
        (cri::ContainerState::ContainerRunning as i32, pids[&stay].0)
    );
    let text = wait_log(&pids[&stay].1, "usr1-2").await;
    let lines = log_lines(&pids[&stay].1);
    assert_eq!(
        lines.iter().filter(|(_, l)| l.starts_with("usr1-")).count(),
        2,
        "each line once: {text:?}"
    );

    // Everything goes; no task, record or shim is left.
    remove_pod(&mut cri, &pod).await;
    env.wait_all_gone(true).await;
    assert!(!env.berthd_log().contains("panicked"));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_kill9_under_berthd_no_spurious_exit_and_outage_exit_recorded() {
    let mut env = Env::start("ctdk9", &[]).await;
    let image = env.ctd.image_ref().to_owned();
    let mut cri = env.cri().await;
    let pod = run_pod(&mut cri, pod_config("ck", &env.logs())).await;
    let stay = run_container(
        &mut cri,
        &pod,
        shell("stay", &image, &format!("echo ready; {LOOP}")),
    )
    .await;
    let leaver = run_container(&mut cri, &pod, leaver_config(&image)).await;
    let (s, stay_pid) = status(&mut cri, &stay).await;
    wait_log(&s.log_path, "ready").await;
    let (s, leaver_pid) = status(&mut cri, &leaver).await;
    let leaver_log = s.log_path;
    wait_log(&leaver_log, "ready").await;

    env.ctd.kill9().unwrap();
    let outage_start = now_ns();
    signal(leaver_pid, Signal::TERM);
    wait_reaped(&[leaver_pid]).await;
    // berthd keeps answering from its state; a broken wait is not an exit.
    let (s, _) = status(&mut cri, &stay).await;
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    env.ctd.start_again().await.unwrap();

    let s = wait_state(&cri, &leaver, cri::ContainerState::ContainerExited).await;
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (7, "Error"),
        "not 255: {s:?}"
    );
    // Exit code 7, not 255, shows the real exit was found; its time is the shim's.
    assert!(outage_start <= s.finished_at && s.finished_at <= now_ns());
    wait_log(&leaver_log, "bye").await;
    let (s, pid) = status(&mut cri, &stay).await;
    assert_eq!(
        (s.state, pid, s.exit_code),
        (cri::ContainerState::ContainerRunning as i32, stay_pid, 0),
        "no spurious exit"
    );
    assert!(process_alive(stay_pid));
    // The stop path works on the restarted containerd.
    stop_container(&mut cri, &stay, 1).await;
    let (s, _) = status(&mut cri, &stay).await;
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    remove_pod(&mut cri, &pod).await;
    env.wait_all_gone(false).await;
    env.finish().await;
}
