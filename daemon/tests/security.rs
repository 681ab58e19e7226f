//! Security context fields berthd honours, checked from inside the running container.

mod common;

use common::*;
use k8s_cri::v1 as cri;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_root_file_system_refuses_writes_and_a_writable_one_takes_them() {
    let env = Env::start("rofs", &[]).await;
    let mut cri = env.cri().await;
    let image = env.ctd.image_ref().to_owned();
    let pod = run_pod(&mut cri, pod_config("rofspod", &env.logs())).await;
    let mut ro = shell("ro", &image, "touch /probe; echo code=$?; sleep 1000");
    ro.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let ro = run_container(&mut cri, &pod, ro).await;
    let rw = run_container(
        &mut cri,
        &pod,
        shell("rw", &image, "touch /probe; echo code=$?; sleep 1000"),
    )
    .await;
    let dir = env.logs().join("rofspod");
    let ro_log = wait_log(dir.join("ro.log").to_str().unwrap(), "code=").await;
    assert!(ro_log.contains("Read-only file system"), "{ro_log}");
    assert!(ro_log.contains("code=1"), "{ro_log}");
    let rw_log = wait_log(dir.join("rw.log").to_str().unwrap(), "code=").await;
    assert!(rw_log.contains("code=0"), "{rw_log}");
    // The exec of a read-only container sees the same root.
    let r = cri
        .exec_sync(cri::ExecSyncRequest {
            container_id: ro.clone(),
            cmd: vec!["sh".into(), "-c".into(), "echo x > /other".into()],
            timeout: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(r.exit_code, 0);
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("Read-only file system"),
        "{r:?}"
    );
    for id in [&ro, &rw] {
        stop_container(&mut cri, id, 0).await;
        remove_container(&mut cri, id).await;
    }
    stop_pod(&mut cri, &pod).await;
    remove_pod(&mut cri, &pod).await;
    env.wait_all_gone(true).await;
    env.finish().await;
}
