//! An EXITED container is settled: its exit is recorded, so once the run has settled
//! containerd holds no task of it (recovery deletes the stray task a crash left between
//! the exit's write and `Tasks.Delete`) and berth waits on nothing of it. Likewise nothing
//! waits on a NotReady sandbox (its pause task's exit is recorded) or on an object berth
//! does not hold. The waits are the core's own ([`berth_core::Machine::armed_waits`]: a
//! `Tasks.Wait` outstanding, or a re-sync of a broken one).
//!
//! That the container stays EXITED with its recorded code through a restart is held by
//! [`super::replies`] (EXITED is final) and [`super::truth::restart_preserves`].

use std::collections::BTreeMap;

use berth_core::{ContainerState, SandboxState, Target};
use berth_service::{ContainerView, SandboxView};
use berth_simbackend::Truth;

use super::describe;

/// Every stray task of an EXITED container and every wait armed on a finished or unknown
/// object, as violations. `armed` is what the core waits on now.
pub fn exited_is_settled(
    containers: &[ContainerView],
    pods: &[SandboxView],
    truth: &Truth,
    armed: &[Target],
) -> Vec<String> {
    let mut bad = Vec::new();
    let ctrs: BTreeMap<&str, &ContainerView> =
        containers.iter().map(|v| (v.meta.id.as_str(), v)).collect();
    let sbs: BTreeMap<&str, &SandboxView> = pods.iter().map(|p| (p.meta.id.as_str(), p)).collect();
    for v in containers {
        if v.state != ContainerState::Exited {
            continue;
        }
        if let Some(t) = truth.tasks.get(v.meta.id.as_str()) {
            bad.push(format!(
                "container {} is {} but containerd still holds its task {} ({:?}, pid {}): \
                 a stray task survived the heal",
                v.meta.id,
                describe(v.state, &v.status),
                t.task,
                t.state,
                t.pid
            ));
        }
    }
    for target in armed {
        let why = match target {
            Target::Container(id) => match ctrs.get(id.as_str()) {
                None => Some("berth does not hold the container".to_owned()),
                Some(v) if v.state == ContainerState::Exited => {
                    Some(format!("it is {}", describe(v.state, &v.status)))
                }
                Some(_) => None,
            },
            Target::Sandbox(id) => match sbs.get(id.as_str()).map(|p| p.state) {
                None => Some("berth does not hold the sandbox".to_owned()),
                Some(SandboxState::NotReady) => Some("it is NotReady".to_owned()),
                Some(_) => None,
            },
        };
        if let Some(why) = why {
            bad.push(format!(
                "a wait is armed on {target} after the heal, but {why} (its exit is recorded)"
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_backend::TaskState;
    use berth_core::{ContainerConfig, ContainerId, ContainerMeta, SandboxId, Status};
    use berth_simbackend::{ProcessPlan, TaskTruth};

    fn view(id: &str, state: ContainerState) -> ContainerView {
        ContainerView {
            meta: ContainerMeta {
                id: ContainerId::new(id).unwrap(),
                sandbox_id: SandboxId::new("pod").unwrap(),
                name: id.to_owned(),
                config: ContainerConfig::default(),
                log_path: String::new(),
                stop_signal: 15,
                image: Default::default(),
            },
            status: Status::default(),
            state,
            removing: false,
        }
    }

    fn truth(tasks: &[&str]) -> Truth {
        Truth {
            now: 0,
            containerd_up: true,
            restarts: Vec::new(),
            records: BTreeMap::new(),
            tasks: tasks
                .iter()
                .map(|id| {
                    let t = TaskTruth {
                        target: Target::Container(ContainerId::new(*id).unwrap()),
                        task: 3,
                        pod: SandboxId::new("pod").unwrap(),
                        shim: 1,
                        pid: 1001,
                        state: TaskState::Stopped(berth_core::ExitStatus::real(0, 5)),
                        started_at: 1,
                        exit_due: None,
                        orphaned: false,
                        plan: ProcessPlan::forever(),
                        resources: None,
                    };
                    ((*id).to_owned(), t)
                })
                .collect(),
            shims: BTreeMap::new(),
            exits: Vec::new(),
            shim_deaths: Vec::new(),
            signals: Vec::new(),
            execs: Vec::new(),
        }
    }

    fn ct(id: &str) -> Target {
        Target::Container(ContainerId::new(id).unwrap())
    }

    #[test]
    fn a_stray_task_or_a_wait_on_an_exited_container_is_a_violation() {
        let views = [
            view("done", ContainerState::Exited),
            view("runs", ContainerState::Running),
        ];
        // A running container's task and wait are as they should be.
        assert!(exited_is_settled(&views, &[], &truth(&["runs"]), &[ct("runs")]).is_empty());
        let bad = exited_is_settled(&views, &[], &truth(&["done"]), &[]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("still holds its task 3"), "{bad:?}");
        let bad = exited_is_settled(&views, &[], &truth(&[]), &[ct("done"), ct("gone")]);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].contains("it is EXITED"), "{bad:?}");
        assert!(bad[1].contains("does not hold the container"), "{bad:?}");
        let pod = Target::Sandbox(SandboxId::new("pod").unwrap());
        let bad = exited_is_settled(&views, &[], &truth(&[]), &[pod]);
        assert!(bad[0].contains("does not hold the sandbox"), "{bad:?}");
    }
}
