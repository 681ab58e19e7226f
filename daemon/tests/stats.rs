//! ContainerStats and ListContainerStats against a real berthd on a private containerd: the
//! figures come from the running task's cgroup.

mod common;

use std::time::Duration;

use berth_cli::client::CriClient;
use common::*;
use k8s_cri::v1 as cri;

const MIB: u64 = 1 << 20;

async fn list(
    cri: &mut CriClient,
    filter: Option<cri::ContainerStatsFilter>,
) -> Vec<cri::ContainerStats> {
    cri.list_container_stats(cri::ListContainerStatsRequest { filter })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats
}

fn of<'a>(stats: &'a [cri::ContainerStats], id: &str) -> &'a cri::ContainerStats {
    stats
        .iter()
        .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == id))
        .unwrap_or_else(|| panic!("no stats of {id} in {stats:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_of_running_and_created_containers_with_filters() {
    let env = Env::start("stats", &[]).await;
    let mut cri = env.cri().await;
    let image = env.ctd.image_ref().to_owned();
    let pod = run_pod(&mut cri, pod_config("statspod", &env.logs())).await;
    // Burns some CPU, then sleeps.
    let mut busy = shell(
        "busy",
        &image,
        "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo ready; sleep 100000",
    );
    limit_memory(&mut busy, (64 * MIB) as i64);
    let running = run_container(&mut cri, &pod, busy).await;
    let created = create_container(&mut cri, &pod, shell("idle", &image, "true")).await;
    let log = env.logs().join("statspod").join("busy.log");
    wait_for("the busy loop to finish", || {
        let log = log.clone();
        async move {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("ready")
                .then_some(())
        }
    })
    .await;

    let all = list(&mut cri, None).await;
    assert_eq!(all.len(), 2, "{all:?}");
    let r = of(&all, &running);
    let attrs = r.attributes.as_ref().unwrap();
    assert_eq!(attrs.metadata.as_ref().unwrap().name, "busy");
    assert_eq!(attrs.labels.get("name").map(String::as_str), Some("busy"));
    let cpu = r.cpu.as_ref().expect("cpu of a running container");
    assert!(cpu.timestamp > 0);
    let used = cpu.usage_core_nano_seconds.as_ref().unwrap().value;
    assert!(used > 1_000_000, "the busy loop used CPU: {used} ns");
    // The first sample has nothing to compare with: no rate rather than a made-up 0.
    assert!(cpu.usage_nano_cores.is_none(), "{cpu:?}");
    let mem = r.memory.as_ref().expect("memory of a running container");
    let working_set = mem.working_set_bytes.as_ref().unwrap().value;
    let usage = mem.usage_bytes.as_ref().unwrap().value;
    assert!(working_set > 0 && working_set <= usage, "{mem:?}");
    let available = mem.available_bytes.as_ref().unwrap().value;
    assert_eq!(available, 64 * MIB - working_set, "{mem:?}");
    // Created, no task: attributes only.
    let c = of(&all, &created);
    assert!(c.cpu.is_none() && c.memory.is_none(), "{c:?}");

    // A second sample gives the rate since the first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = cri
        .container_stats(cri::ContainerStatsRequest {
            container_id: running.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let cpu2 = again.cpu.unwrap();
    assert!(cpu2.timestamp > cpu.timestamp);
    assert!(cpu2.usage_nano_cores.is_some(), "{cpu2:?}");
    assert!(cpu2.usage_core_nano_seconds.unwrap().value >= used);

    // Filters: by id (prefix), by pod, by label.
    let by_id = list(
        &mut cri,
        Some(cri::ContainerStatsFilter {
            id: running[..12].to_owned(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_id.len(), 1);
    assert!(by_id[0].cpu.is_some());
    let by_label = list(
        &mut cri,
        Some(cri::ContainerStatsFilter {
            label_selector: [("name".to_owned(), "idle".to_owned())].into(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].attributes.as_ref().unwrap().id, created);
    let by_pod = list(
        &mut cri,
        Some(cri::ContainerStatsFilter {
            pod_sandbox_id: "0000000000000000".into(),
            ..Default::default()
        }),
    )
    .await;
    assert!(by_pod.is_empty(), "{by_pod:?}");

    // Unknown and malformed ids name themselves.
    let e = cri
        .container_stats(cri::ContainerStatsRequest {
            container_id: "f00d".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = cri
        .container_stats(cri::ContainerStatsRequest {
            container_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("container_id"), "{}", e.message());

    stop_container(&mut cri, &running, 0).await;
    remove_container(&mut cri, &running).await;
    remove_container(&mut cri, &created).await;
    stop_pod(&mut cri, &pod).await;
    remove_pod(&mut cri, &pod).await;
    env.wait_all_gone(true).await;
    env.finish().await;
}
