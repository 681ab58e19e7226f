//! Recovery at scale (docs/architecture.md §3.8, docs/containerd-behaviour.md §6): 200 running
//! containers over 10 sandboxes,
//! berth crashes, 30 of them exit while it is down (each with its own code), and the next
//! instance gets every one right: the 30 EXITED with their real codes and the shim's exit
//! times, the 170 RUNNING with their pids and watched, every sandbox Ready, and no task left
//! in containerd that does not belong to a RUNNING container or a Ready sandbox.

#![cfg(not(madsim))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use berth_backend::TaskState;
use berth_core::{ContainerId, ContainerState, SandboxState, Target};
use common::{ServiceFixture, await_log, eventually, exits_on_term, now_ns, signal, sleeper};
use futures::StreamExt;
use rustix::process::Signal;

const PODS: usize = 10;
const PER_POD: usize = 20;
/// The first `LEAVERS_PER_POD` containers of each pod exit while berth is down.
const LEAVERS_PER_POD: usize = 3;
/// How many containers are created and started at once.
const PARALLEL: usize = 8;

/// One container of the test.
struct Spec {
    name: String,
    pod: usize,
    /// The exit code it leaves with while berth is down; None = keeps running.
    code: Option<i32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_containers_over_ten_pods_recover_after_a_crash() {
    let w = ServiceFixture::start().await;
    let node = w.ready_node().await;
    let mut pods = Vec::new();
    for p in 0..PODS {
        pods.push(w.pod(&node, &format!("pod{p}")).await);
    }
    let specs: Vec<Spec> = (0..PODS * PER_POD)
        .map(|i| {
            let (pod, slot) = (i % PODS, i / PODS);
            Spec {
                name: format!("c{i}"),
                pod,
                code: (slot < LEAVERS_PER_POD).then_some(10 + i as i32),
            }
        })
        .collect();
    let leavers = specs.iter().filter(|s| s.code.is_some()).count();
    assert_eq!(leavers, 30);

    let started = Instant::now();
    let ran: Vec<(ContainerId, u32)> = futures::stream::iter(&specs)
        .map(|s| {
            let command = match s.code {
                Some(code) => exits_on_term(code),
                None => sleeper(),
            };
            w.run(&node, &pods[s.pod], &s.name, command)
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    eprintln!(
        "created and started {} containers in {:?}",
        ran.len(),
        started.elapsed()
    );
    let before = node.containers().await;
    assert_eq!(before.len(), PODS * PER_POD);
    let pause_pids: BTreeMap<String, u32> = node
        .sandboxes()
        .await
        .into_iter()
        .map(|s| (s.meta.id.to_string(), s.pid))
        .collect();
    for ((id, _), spec) in ran.iter().zip(&specs) {
        if spec.code.is_some() {
            await_log(&before[id.as_str()].meta.log_path, "ready").await;
        }
    }

    node.crash().await;
    let outage_start = now_ns();
    for ((_, pid), spec) in ran.iter().zip(&specs) {
        if spec.code.is_some() {
            signal(*pid, Signal::TERM);
        }
    }
    let mut exits = BTreeMap::new();
    for ((id, _), spec) in ran.iter().zip(&specs) {
        if let Some(code) = spec.code {
            let exit = w.await_task_stopped(id).await;
            assert_eq!(exit.code, code, "{}: containerd's record", spec.name);
            exits.insert(id.clone(), exit);
        }
    }
    let outage_end = now_ns();

    let restarted = Instant::now();
    let node = w.node().await;
    node.wait_ready().await.expect("recovery finishes");
    eprintln!(
        "recovered {} containers in {:?}",
        before.len(),
        restarted.elapsed()
    );

    let after = node.containers().await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the same containers"
    );
    let mut wrong = Vec::new();
    for ((id, pid), spec) in ran.iter().zip(&specs) {
        let v = &after[id.as_str()];
        let ok = match spec.code {
            Some(code) => {
                v.state == ContainerState::Exited
                    && v.status.exit_code == code
                    && v.status.reason.is_empty()
                    && v.status.finished_at == exits[id].exited_at
                    && (outage_start..=outage_end).contains(&v.status.finished_at)
                    && v.status.started_at == before[id.as_str()].status.started_at
            }
            None => v.state == ContainerState::Running && v.status == before[id.as_str()].status,
        };
        if !ok {
            wrong.push(format!(
                "{} (pid {pid}, expected exit {:?}): {:?}",
                spec.name, spec.code, v.status
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} containers recovered wrong:\n{}",
        wrong.len(),
        ran.len(),
        wrong.join("\n")
    );
    for s in node.sandboxes().await {
        assert_eq!(s.state, SandboxState::Ready, "{s:?}");
        assert_eq!(s.pid, pause_pids[s.meta.id.as_str()], "{s:?}");
    }

    // Leaks: every task containerd holds is a RUNNING container's (with its pid) or a
    // Ready sandbox's, and every one of those has its task; no shim beyond them.
    let want: BTreeMap<String, TaskState> = ran
        .iter()
        .zip(&specs)
        .filter(|(_, s)| s.code.is_none())
        .map(|((id, pid), _)| {
            (
                Target::Container(id.clone()).to_string(),
                TaskState::Running { pid: *pid },
            )
        })
        .chain(pods.iter().map(|p| {
            (
                Target::Sandbox(p.clone()).to_string(),
                TaskState::Running {
                    pid: pause_pids[p.as_str()],
                },
            )
        }))
        .collect();
    eventually("containerd holds exactly the live tasks", || async {
        let live = w.live_tasks().await;
        let shims = w.ctd.shim_pids().len();
        if live == want && shims <= want.len() {
            Ok(())
        } else {
            let extra: BTreeSet<_> = live.keys().filter(|k| !want.contains_key(*k)).collect();
            let missing: BTreeSet<_> = want.keys().filter(|k| !live.contains_key(*k)).collect();
            Err(format!(
                "extra tasks {extra:?}, missing {missing:?}, {shims} shims for {} tasks",
                want.len()
            ))
        }
    })
    .await;

    // The survivors are watched: a few killed now are recorded with their real code.
    let victims: Vec<&(ContainerId, u32)> = ran
        .iter()
        .zip(&specs)
        .filter(|(_, s)| s.code.is_none())
        .map(|(r, _)| r)
        .step_by(57)
        .collect();
    for (_, pid) in &victims {
        signal(*pid, Signal::KILL);
    }
    for (id, _) in &victims {
        let v = node
            .await_state(
                &format!("{id} is EXITED after SIGKILL"),
                id.as_str(),
                ContainerState::Exited,
            )
            .await;
        assert_eq!(v.status.exit_code, 137, "{v:?}");
    }
    w.finish(node).await;
}
