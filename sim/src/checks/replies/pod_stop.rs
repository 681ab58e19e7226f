//! The reply model's pod stops: a StopPodSandbox that returned OK promises that every
//! container of the pod is stopped, and stays stopped (through any number of crashes, a
//! crash right after the reply included) until a start of it is sent. So at the reply no
//! process of such a container runs, berth never lists one RUNNING again, and containerd
//! never starts a task of one ([`Replies::task_started`]) without a new StartContainer.
//!
//! "The pod's containers" are those the model knows to be in the pod (created in it or
//! adopted), whose last start was sent before the pod stop: a start sent after the stop
//! (berth refuses it for a NotReady pod, but may have let it through first) promises
//! nothing either way.

use berth_backend::TaskState;
use berth_core::{ContainerId, SandboxId};
use berth_simbackend::ObjectTruth;

use super::Replies;

impl Replies {
    /// A StopPodSandbox of `pod` is being sent now; returns its number.
    pub fn sent_stop_pod(&mut self, _pod: &SandboxId) -> u64 {
        self.next()
    }

    /// StopPodSandbox number `seq` of `pod` returned OK; `truth_of` gives containerd's
    /// truth of a container. Returns the containers the reply promised stopped (for the
    /// caller to observe), or the first broken promise.
    pub fn acked_stop_pod(
        &mut self,
        pod: &SandboxId,
        seq: u64,
        truth_of: impl Fn(&ContainerId) -> ObjectTruth,
    ) -> Result<Vec<ContainerId>, String> {
        let at = self.next();
        let members: Vec<ContainerId> = self
            .promises
            .iter()
            .filter(|(_, p)| p.pod.as_ref() == Some(pod) && p.last_start_sent < seq)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &members {
            let p = self.promise(id);
            p.stopped = Some(at);
            p.pod_stopped = true;
            let truth = truth_of(id);
            if let Some(t) = &truth.task
                && matches!(t.state, TaskState::Running { .. })
            {
                return Err(format!(
                    "stop of pod {pod} acknowledged but the process {} of its container {id} still runs",
                    t.pid
                ));
            }
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use berth_core::{ContainerConfig, ContainerMeta, ContainerState, Status};
    use berth_service::ContainerView;
    use berth_simbackend::TaskTruth;

    use super::*;

    fn id(s: &str) -> ContainerId {
        ContainerId::new(s).unwrap()
    }

    fn running_task(pid: u32) -> ObjectTruth {
        ObjectTruth {
            record: true,
            task: Some(TaskTruth {
                target: berth_core::Target::Container(id("c1")),
                task: 1,
                pod: SandboxId::new("pod").unwrap(),
                shim: 1,
                pid,
                state: TaskState::Running { pid },
                started_at: 1,
                exit_due: None,
                orphaned: false,
                plan: berth_simbackend::ProcessPlan::forever(),
                resources: None,
            }),
            ..ObjectTruth::default()
        }
    }

    fn view(c: &str, state: ContainerState) -> ContainerView {
        ContainerView {
            meta: ContainerMeta {
                id: id(c),
                sandbox_id: SandboxId::new("pod").unwrap(),
                name: c.to_owned(),
                config: ContainerConfig::default(),
                log_path: String::new(),
                stop_signal: 15,
                image: Default::default(),
            },
            status: Status {
                pid: 7,
                ..Status::default()
            },
            state,
            removing: false,
        }
    }

    #[test]
    fn a_pod_stop_promises_every_container_stopped_until_a_new_start() {
        let pod = SandboxId::new("pod").unwrap();
        let mut m = Replies::default();
        m.set_pod(&id("c1"), &pod);
        m.set_pod(&id("c2"), &pod);
        m.set_pod(&id("other"), &SandboxId::new("pod2").unwrap());
        m.sent_start(&id("c1"));
        let seq = m.sent_stop_pod(&pod);
        // c2's start is sent after the stop: not promised.
        m.sent_start(&id("c2"));
        // A process of c1 still running at the reply breaks it.
        let err = m
            .acked_stop_pod(&pod, seq, |c| {
                if c.as_str() == "c1" {
                    running_task(9)
                } else {
                    ObjectTruth::default()
                }
            })
            .unwrap_err();
        assert!(
            err.contains("process 9 of its container c1 still runs"),
            "{err}"
        );
        let mut m2 = Replies::default();
        m2.set_pod(&id("c1"), &pod);
        m2.set_pod(&id("c2"), &pod);
        m2.sent_start(&id("c1"));
        let seq = m2.sent_stop_pod(&pod);
        m2.sent_start(&id("c2"));
        let members = m2
            .acked_stop_pod(&pod, seq, |_| ObjectTruth::default())
            .unwrap();
        assert_eq!(members, vec![id("c1")]);
        // Listed RUNNING after the reply (in any incarnation), or started again: broken.
        let obs = m2.begin_observation();
        let err = m2
            .observed(
                obs,
                2,
                &id("c1"),
                Some(&view("c1", ContainerState::Running)),
            )
            .unwrap_err();
        assert!(
            err.contains("RUNNING after the stop of its pod was acknowledged"),
            "{err}"
        );
        assert!(m2.task_started("c1").is_err());
        // c2 (started after the stop was sent) and an EXITED c1 are fine.
        let obs = m2.begin_observation();
        assert!(
            m2.observed(
                obs,
                2,
                &id("c2"),
                Some(&view("c2", ContainerState::Running))
            )
            .is_ok()
        );
        assert!(m2.task_started("c2").is_ok());
        let obs = m2.begin_observation();
        assert!(
            m2.observed(obs, 2, &id("c1"), Some(&view("c1", ContainerState::Exited)))
                .is_ok()
        );
        // A new start lifts the promise.
        m2.sent_start(&id("c1"));
        assert!(m2.task_started("c1").is_ok());
    }
}
