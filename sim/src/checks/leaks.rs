//! No leak once the run has settled: no orphaned task (its record deleted under it), no
//! containerd record berth does not know, no live task berth does not own, no stopped task
//! left undeleted after its exit was recorded, no live shim without tasks or of a pod berth
//! does not know, and (after a restart's orphan sweep) no checkpoint directory of a container
//! berth does not know. (A temp file a crash left in a live container's directory is
//! documented behaviour: the container's next write removes it.) After the teardown: nothing at all.

use std::collections::{BTreeMap, BTreeSet};

use berth_backend::TaskState;
use berth_core::{ContainerState, SandboxState, Target};
use berth_service::{ContainerView, SandboxView};
use berth_simbackend::Truth;

/// Every leak. `disk` is the checkpoint store's directory → files view, when it should be
/// exactly berth's containers (after a recovery swept it).
pub fn no_leaks(
    containers: &[ContainerView],
    pods: &[SandboxView],
    truth: &Truth,
    disk: Option<&BTreeMap<String, BTreeMap<String, Vec<u8>>>>,
) -> Vec<String> {
    let mut bad = Vec::new();
    let ctrs: BTreeMap<&str, &ContainerView> =
        containers.iter().map(|v| (v.meta.id.as_str(), v)).collect();
    let sbs: BTreeMap<&str, &SandboxView> = pods.iter().map(|p| (p.meta.id.as_str(), p)).collect();
    for t in truth.orphans() {
        bad.push(format!(
            "task {} ({:?}) orphaned: its record was deleted under it",
            t.target, t.state
        ));
    }
    for (id, rec) in &truth.records {
        let known = match &rec.target {
            Target::Container(_) => ctrs.contains_key(id.as_str()),
            Target::Sandbox(_) => sbs.contains_key(id.as_str()),
        };
        if !known {
            bad.push(format!(
                "containerd record of {} leaked: berth does not know it",
                rec.target
            ));
        }
    }
    for (id, t) in &truth.tasks {
        let live = matches!(
            t.state,
            TaskState::Running { .. } | TaskState::Created { .. }
        );
        let owned = match &t.target {
            Target::Container(_) => ctrs.get(id.as_str()).map(|v| v.state),
            Target::Sandbox(_) => None,
        };
        match &t.target {
            Target::Container(_) => match owned {
                // A stopped task of a RUNNING container is an unrecorded exit (see exits).
                Some(ContainerState::Running | ContainerState::Unknown) => {}
                Some(state) if live => bad.push(format!(
                    "task of {} leaked: {:?} although berth says {state}",
                    t.target, t.state
                )),
                Some(state) => bad.push(format!(
                    "stopped task of {} never deleted (berth says {state})",
                    t.target
                )),
                None => bad.push(format!(
                    "task of {} ({:?}) leaked: berth does not know the container",
                    t.target, t.state
                )),
            },
            Target::Sandbox(_) => match sbs.get(id.as_str()).map(|p| p.state) {
                Some(SandboxState::Ready | SandboxState::Unknown) if live => {}
                Some(state) => bad.push(format!(
                    "pause task of {} ({:?}) leaked: berth says {state:?}",
                    t.target, t.state
                )),
                None => bad.push(format!(
                    "pause task of {} ({:?}) leaked: berth does not know the sandbox",
                    t.target, t.state
                )),
            },
        }
    }
    for (pod, shim) in truth.live_shims() {
        if shim.tasks.is_empty() {
            bad.push(format!("shim {} of pod {pod} runs with no task", shim.shim));
        }
    }
    if let Some(disk) = disk {
        for (dir, files) in disk {
            if !ctrs.contains_key(dir.as_str()) {
                bad.push(format!(
                    "checkpoint directory {dir} leaked ({} files): berth does not know the container",
                    files.len()
                ));
            }
        }
    }
    bad
}

/// After every container and pod was removed: nothing is left anywhere.
pub fn all_gone(
    containers: &[ContainerView],
    pods: &[SandboxView],
    truth: &Truth,
    disk: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
) -> Vec<String> {
    let mut bad = Vec::new();
    if !containers.is_empty() || !pods.is_empty() {
        bad.push(format!(
            "after removing everything berth still lists {} containers and {} sandboxes",
            containers.len(),
            pods.len()
        ));
    }
    let records: BTreeSet<&String> = truth.records.keys().collect();
    if !records.is_empty() {
        bad.push(format!("containerd records left: {records:?}"));
    }
    if !truth.tasks.is_empty() {
        let tasks: Vec<String> = truth
            .tasks
            .values()
            .map(|t| format!("{} {:?}", t.target, t.state))
            .collect();
        bad.push(format!("tasks left: {tasks:?}"));
    }
    let shims: Vec<String> = truth.live_shims().map(|(p, _)| p.to_string()).collect();
    if !shims.is_empty() {
        bad.push(format!("shims left running for pods {shims:?}"));
    }
    if !disk.is_empty() {
        let dirs: Vec<&String> = disk.keys().collect();
        bad.push(format!("checkpoint directories left: {dirs:?}"));
    }
    bad
}
