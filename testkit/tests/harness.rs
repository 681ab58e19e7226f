//! The harness itself, against a real containerd + runc (needs root; installs missing tools).

use std::path::Path;
use std::time::Duration;

use berth_testkit::{
    IMAGE_REF, PrivateContainerd, TmpfsMount, process_alive, require_root_and_tools, scratch_dir,
};

/// Pid of the task `id` from `ctr tasks ls` (columns TASK PID STATUS).
async fn task_pid_and_status(ctd: &PrivateContainerd, id: &str) -> Option<(u32, String)> {
    let out = ctd.ctr(&["tasks", "ls"]).await.ok()?;
    out.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&id)).then(|| (cols[1].parse().unwrap_or(0), cols[2].to_owned()))
    })
}

async fn run_detached_sleep(ctd: &PrivateContainerd, id: &str) -> u32 {
    ctd.ctr(&[
        "run",
        "-d",
        "--null-io",
        "--snapshotter",
        "overlayfs",
        ctd.image_ref(),
        id,
        "sleep",
        "1000",
    ])
    .await
    .expect("ctr run -d");
    let (pid, status) = task_pid_and_status(ctd, id).await.expect("task listed");
    assert_eq!(status, "RUNNING");
    assert!(pid > 0 && process_alive(pid), "task pid {pid} alive");
    pid
}

fn assert_gone(ctd_pid: u32, dir: &Path, namespace: &str) {
    assert!(!process_alive(ctd_pid), "containerd {ctd_pid} still alive");
    assert!(!dir.exists(), "{} still exists", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&format!("{} ", dir.display()))
            && !mountinfo.contains(&format!("{}/", dir.display())),
        "mounts left under {}",
        dir.display()
    );
    assert!(
        !Path::new("/run/containerd/runc").join(namespace).exists(),
        "runc state of {namespace} left"
    );
    assert!(
        !Path::new("/sys/fs/cgroup/memory").join(namespace).exists()
            && !Path::new("/sys/fs/cgroup").join(namespace).exists(),
        "cgroups of {namespace} left"
    );
}

#[tokio::test]
async fn starts_imports_runs_a_container_and_cleans_up() {
    require_root_and_tools().expect("root and tools");
    let ctd = PrivateContainerd::start().await.expect("start");
    assert!(ctd.socket().as_os_str().len() < 108);
    assert!(ctd.socket().starts_with(ctd.dir()));
    assert!(ctd.namespace().starts_with("berth-test-"));
    assert_eq!(ctd.image_ref(), IMAGE_REF);
    assert!(process_alive(ctd.pid()));

    let images = ctd.ctr(&["images", "ls", "-q"]).await.expect("images ls");
    assert!(
        images.lines().any(|l| l == IMAGE_REF),
        "image missing: {images}"
    );
    // Unpacked for overlayfs: one committed snapshot.
    let snaps = ctd
        .ctr(&["snapshots", "--snapshotter", "overlayfs", "ls"])
        .await
        .expect("snapshots ls");
    assert!(snaps.contains("Committed"), "not unpacked: {snaps}");

    let out = ctd
        .ctr(&[
            "run",
            "--rm",
            "--snapshotter",
            "overlayfs",
            IMAGE_REF,
            "hello",
            "echo",
            "hello",
        ])
        .await
        .expect("ctr run");
    assert_eq!(out, "hello\n");
    // The image's default command and PATH: `sh -c` finds every applet.
    let out = ctd
        .ctr(&[
            "run",
            "--rm",
            "--snapshotter",
            "overlayfs",
            IMAGE_REF,
            "applets",
            "sh",
            "-c",
            "true && ! false && ls /bin/cat >/dev/null && env | grep ^PATH= && cat /etc/passwd | head -n1",
        ])
        .await
        .expect("ctr run sh");
    assert_eq!(
        out,
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nroot:x:0:0:root:/root:/bin/sh\n"
    );
    assert!(ctd.shim_pids().is_empty(), "--rm leaves no shim");

    let (pid, dir, ns) = (ctd.pid(), ctd.dir().to_owned(), ctd.namespace().to_owned());
    drop(ctd);
    assert_gone(pid, &dir, &ns);
}

#[tokio::test]
async fn survives_kill9_and_restart_with_tasks_running() {
    require_root_and_tools().expect("root and tools");
    let mut ctd = PrivateContainerd::start().await.expect("start");
    let task = run_detached_sleep(&ctd, "sleeper").await;
    let shims = ctd.shim_pids();
    assert_eq!(shims.len(), 1, "one shim: {shims:?}");

    let first = ctd.pid();
    ctd.kill9().expect("kill9");
    assert!(!process_alive(first), "containerd survived SIGKILL");
    assert!(!ctd.is_running());
    assert!(
        tokio::net::UnixStream::connect(ctd.socket()).await.is_err(),
        "socket answers while containerd is dead"
    );
    assert!(ctd.ctr(&["version"]).await.is_err());
    assert!(process_alive(task), "task died with containerd");
    assert_eq!(ctd.shim_pids(), shims, "shim died with containerd");

    ctd.start_again().await.expect("start_again");
    assert_ne!(ctd.pid(), first);
    assert!(ctd.ctr(&["version"]).await.is_ok());
    assert_eq!(
        task_pid_and_status(&ctd, "sleeper").await,
        Some((task, "RUNNING".to_owned()))
    );
    assert!(matches!(
        ctd.start_again().await,
        Err(berth_testkit::HarnessError::AlreadyRunning { .. })
    ));

    ctd.restart().await.expect("restart");
    assert!(ctd.ctr(&["version"]).await.is_ok());
    assert_eq!(
        task_pid_and_status(&ctd, "sleeper").await,
        Some((task, "RUNNING".to_owned()))
    );

    // A shim crash while containerd runs: containerd kills the container itself.
    let killed = ctd.kill_shims().await.expect("kill_shims");
    assert_eq!(killed, shims);
    assert!(ctd.shim_pids().is_empty());
    let mut waited = Duration::ZERO;
    while process_alive(task) && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert!(!process_alive(task), "containerd did not reap the task");

    let (pid, dir, ns) = (ctd.pid(), ctd.dir().to_owned(), ctd.namespace().to_owned());
    ctd.shutdown().await.expect("clean shutdown");
    assert_gone(pid, &dir, &ns);
}

#[tokio::test]
async fn drop_kills_running_tasks_even_with_containerd_dead() {
    require_root_and_tools().expect("root and tools");
    let mut ctd = PrivateContainerd::start().await.expect("start");
    let a = run_detached_sleep(&ctd, "a").await;
    let b = run_detached_sleep(&ctd, "b").await;
    let shims = ctd.shim_pids();
    assert_eq!(shims.len(), 2);
    let bundles = ctd
        .dir()
        .join("state/io.containerd.runtime.v2.task")
        .join(ctd.namespace());
    let sockets: Vec<String> = ["a", "b"]
        .iter()
        .map(|id| std::fs::read_to_string(bundles.join(id).join("address")).expect("address"))
        .map(|a| a.trim().trim_start_matches("unix://").to_owned())
        .collect();
    assert!(sockets.iter().all(|s| Path::new(s).exists()));
    // The worst case for cleanup: containerd gone, shims, tasks and rootfs mounts left.
    ctd.kill9().expect("kill9");

    let (pid, dir, ns) = (ctd.pid(), ctd.dir().to_owned(), ctd.namespace().to_owned());
    ctd.shutdown().await.expect("clean shutdown");
    for p in [a, b].iter().chain(&shims) {
        assert!(!process_alive(*p), "pid {p} left running");
    }
    for s in &sockets {
        assert!(!Path::new(s).exists(), "shim socket {s} left");
    }
    assert_gone(pid, &dir, &ns);
}

#[tokio::test]
async fn instances_are_independent() {
    require_root_and_tools().expect("root and tools");
    let (one, two) = tokio::join!(PrivateContainerd::start(), PrivateContainerd::start());
    let (one, two) = (one.expect("one"), two.expect("two"));
    assert_ne!(one.namespace(), two.namespace());
    assert_ne!(one.dir(), two.dir());
    run_detached_sleep(&one, "same-id").await;
    run_detached_sleep(&two, "same-id").await;
    assert_eq!(one.shim_pids().len(), 1);
    assert_eq!(two.shim_pids().len(), 1);
    assert_ne!(one.shim_pids(), two.shim_pids());
    let two_shims = two.shim_pids();
    one.shutdown().await.expect("shutdown one");
    assert_eq!(two.shim_pids(), two_shims, "shutting one down touched two");
    two.shutdown().await.expect("shutdown two");
}

#[test]
fn scratch_dirs_and_tmpfs() {
    require_root_and_tools().expect("root and tools");
    let s = scratch_dir("harness").expect("scratch");
    assert!(s.path().starts_with("/tmp") && s.path().is_dir());

    let fs = TmpfsMount::new(64 * 1024).expect("mount tmpfs");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mountinfo.contains(&format!(" {} ", fs.path().display())));
    let err = std::fs::write(fs.path().join("big"), vec![0u8; 256 * 1024]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC expected, got {err}");
    std::fs::remove_file(fs.path().join("big")).unwrap();
    fs.remount_ro().expect("remount ro");
    let err = std::fs::write(fs.path().join("x"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS expected, got {err}");
    fs.remount_rw().expect("remount rw");
    std::fs::write(fs.path().join("x"), b"x").expect("write after rw");
    let path = fs.path().to_owned();
    drop(fs);
    assert!(!path.exists());
}

#[test]
fn the_script_writes_the_same_config() {
    let dir = scratch_dir("cfg").expect("scratch");
    let out =
        std::process::Command::new(berth_testkit::scripts_dir().join("containerd-private.sh"))
            .arg("config")
            .arg(dir.path())
            .output()
            .expect("run containerd-private.sh");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        berth_testkit::config_toml(dir.path())
    );
}
