//! The CRI view against the simulated containerd's truth, once the run has settled: every
//! container berth lists has its containerd record; RUNNING means containerd runs its task
//! with the same pid; CREATED and EXITED mean no live task; an EXITED container's code and
//! time are those of a real exit of its process (or 128 for a failed start, 255 for a lost
//! exit, which [`super::exits`] judges); UNKNOWN means no task or a live one berth watches;
//! a start time is never earlier than containerd's start of that process (berth's wall clock
//! and the simulated containerd's agree, and the time is that task's).
//! Sandboxes likewise. And a restart of a settled berth changes nothing it reports.

use std::collections::BTreeMap;

use berth_backend::TaskState;
use berth_core::{
    ContainerState, OOM_REASON, START_ERROR_EXIT_CODE, START_ERROR_REASON, SandboxState,
    UNKNOWN_EXIT_CODE, UNKNOWN_REASON,
};
use berth_service::{ContainerView, SandboxView};
use berth_simbackend::{ExitCause, RealExit, Truth};

use super::describe;

/// True if berth's recorded finish time is this exit's (the machine clamps a finish time to
/// the start time when recovery saw the task running after it had in fact exited).
pub fn finish_matches(v: &ContainerView, e: &RealExit) -> bool {
    let s = &v.status;
    s.finished_at == e.exited_at || (s.finished_at == s.started_at && e.exited_at <= s.started_at)
}

/// Every mismatch between what berth reports and containerd's truth.
pub fn cri_matches_truth(
    containers: &[ContainerView],
    pods: &[SandboxView],
    truth: &Truth,
) -> Vec<String> {
    let mut bad = Vec::new();
    for v in containers {
        let id = v.meta.id.as_str();
        let what = describe(v.state, &v.status);
        if !truth.records.contains_key(id) {
            bad.push(format!(
                "berth lists container {id} ({what}) but containerd has no record of it"
            ));
        }
        let task = truth.tasks.get(id).map(|t| t.state);
        let live = matches!(
            task,
            Some(TaskState::Running { .. } | TaskState::Created { .. })
        );
        match v.state {
            ContainerState::Running if task != Some(TaskState::Running { pid: v.status.pid }) => {
                bad.push(format!(
                    "container {id} is {what} but containerd has {task:?}"
                ));
            }
            // berth records a start after containerd's (its clock is the simulated one).
            ContainerState::Running
                if truth
                    .tasks
                    .get(id)
                    .is_some_and(|t| v.status.started_at < t.started_at) =>
            {
                bad.push(format!(
                    "container {id} is {what} started at {}, before containerd started that process at {} (a start time of another task, or the clocks disagree)",
                    v.status.started_at,
                    truth.tasks.get(id).map_or(0, |t| t.started_at)
                ));
            }
            ContainerState::Created | ContainerState::Exited if live => {
                bad.push(format!(
                    "container {id} is {what} but its task lives: {task:?}"
                ));
            }
            ContainerState::Unknown => match task {
                None => {}
                Some(TaskState::Running { pid }) if pid == v.status.pid => {}
                other => bad.push(format!(
                    "container {id} is {what} but containerd has {other:?}"
                )),
            },
            _ => {}
        }
        if v.state == ContainerState::Exited {
            let s = &v.status;
            let ok = match s.reason.as_str() {
                "" => truth.exits_of(id).any(|e| {
                    e.code == s.exit_code && finish_matches(v, e) && e.cause != ExitCause::OomKilled
                }),
                r if r == OOM_REASON => truth.exits_of(id).any(|e| {
                    e.code == s.exit_code && finish_matches(v, e) && e.cause == ExitCause::OomKilled
                }),
                r if r == START_ERROR_REASON => s.exit_code == START_ERROR_EXIT_CODE,
                r if r == UNKNOWN_REASON => s.exit_code == UNKNOWN_EXIT_CODE,
                _ => true,
            };
            if !ok {
                let real: Vec<(i32, i64)> =
                    truth.exits_of(id).map(|e| (e.code, e.exited_at)).collect();
                bad.push(format!(
                    "container {id} is {what} but its real exits were {real:?}"
                ));
            }
        }
    }
    for p in pods {
        let id = p.meta.id.as_str();
        if !truth.records.contains_key(id) {
            bad.push(format!(
                "berth lists sandbox {id} ({:?}) but containerd has no record of it",
                p.state
            ));
        }
        let task = truth.tasks.get(id).map(|t| t.state);
        match p.state {
            SandboxState::Ready => {
                if task != Some(TaskState::Running { pid: p.pid }) {
                    bad.push(format!(
                        "sandbox {id} is READY pid {} but containerd has {task:?}",
                        p.pid
                    ));
                }
            }
            SandboxState::NotReady => {
                if matches!(
                    task,
                    Some(TaskState::Running { .. } | TaskState::Created { .. })
                ) {
                    bad.push(format!(
                        "sandbox {id} is NOTREADY but its pause task lives: {task:?}"
                    ));
                }
            }
            SandboxState::Unknown => bad.push(format!(
                "sandbox {id} is still UNKNOWN after the heal (containerd has {task:?})"
            )),
        }
    }
    bad
}

/// What berth reports before and after a restart of a settled system must be the same.
pub fn restart_preserves(before: &[ContainerView], after: &[ContainerView]) -> Vec<String> {
    let a: BTreeMap<&str, &ContainerView> =
        before.iter().map(|v| (v.meta.id.as_str(), v)).collect();
    let b: BTreeMap<&str, &ContainerView> = after.iter().map(|v| (v.meta.id.as_str(), v)).collect();
    let mut bad = Vec::new();
    for (id, v) in &a {
        match b.get(id) {
            None => bad.push(format!(
                "container {id} ({}) vanished across a restart",
                describe(v.state, &v.status)
            )),
            Some(w) if w.status != v.status => bad.push(format!(
                "container {id} changed across a restart: {:?} became {:?}",
                v.status, w.status
            )),
            Some(_) => {}
        }
    }
    for (id, w) in &b {
        if !a.contains_key(id) {
            bad.push(format!(
                "container {id} ({}) appeared across a restart",
                describe(w.state, &w.status)
            ));
        }
    }
    bad
}
