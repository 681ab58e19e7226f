//! Every CRI reply and observation against a reference model of what the replies promised:
//!
//! - a create that returned OK exists from then on, through any number of crashes, until a
//!   removal of it (or of its pod) was sent;
//! - a start that returned OK really ran (containerd shows a started task or its exit);
//! - a stop that returned OK leaves the container not running, and neither berth nor
//!   containerd shows it running again unless a start was sent after the stop;
//! - a remove that returned OK leaves nothing: no record, no task, and berth never lists
//!   the container again;
//! - observed states never go back: EXITED stays EXITED (it is durable, across restarts);
//!   within one berth incarnation the rank Created < Running < Exited never decreases and
//!   UNKNOWN never turns into CREATED or RUNNING;
//! - an update that returned OK is in containerd (the running task's limits, or the created
//!   container's record) and berth reports those resources from then on, through any number
//!   of crashes, unless a later update was sent;
//! - a log reopen that returned OK was for a RUNNING container: one whose process ran, not
//!   stopped (acknowledged), seen EXITED or removed before the reopen was sent.
//! - a pod stop that returned OK leaves every container of the pod stopped, as a stop of
//!   each would ([`pod_stop`]).
//!
//! Requests, replies and observations are numbered as they happen. A reply is judged against
//! the requests sent before and after it (a stop acknowledged after a later start was sent
//! promises nothing), and an observation only against the replies received before it was
//! sent (berth may have answered it before a reply that arrived earlier): the model stays
//! correct under concurrent clients whose replies arrive in any order. Observations are
//! made one at a time (the harness serializes them).

mod pod_stop;

use std::collections::{BTreeMap, BTreeSet};

use berth_backend::TaskState;
use berth_core::{ContainerId, ContainerState, Resources, SandboxId};
use berth_service::ContainerView;
use berth_simbackend::ObjectTruth;

/// What the replies promised about one container.
#[derive(Debug, Clone, Default)]
struct Promise {
    pod: Option<SandboxId>,
    /// When the create's OK arrived.
    create_acked: Option<u64>,
    /// A removal of the container (or of its pod) was sent.
    remove_sent: bool,
    /// When a removal's OK arrived.
    remove_acked: Option<u64>,
    last_start_sent: u64,
    /// When a stop's OK arrived, that stop having been sent after every start sent so far.
    stopped: Option<u64>,
    /// That stop was a stop of the container's pod ([`pod_stop`]).
    pod_stopped: bool,
    /// When a start's OK arrived.
    start_acked: Option<u64>,
    /// The tasks (serial numbers) whose start was acknowledged.
    acked_tasks: BTreeSet<u64>,
    /// Pids berth listed the container RUNNING with.
    running_pids: BTreeSet<u32>,
    /// Last observed state and the berth incarnation it was observed in.
    last: Option<(u64, ContainerState)>,
    /// When an answer saying EXITED first arrived (EXITED is final: no process of it runs
    /// from then on).
    exited_seen: Option<u64>,
    /// The number of the last update sent.
    last_update_sent: u64,
    /// The latest acknowledged update: its number when sent, when its OK arrived, the
    /// limits.
    update_acked: Option<(u64, u64, Resources)>,
}

impl Promise {
    /// Which stop promised the container stopped, for violation messages.
    fn stop_kind(&self) -> &'static str {
        if self.pod_stopped {
            "the stop of its pod"
        } else {
            "its stop"
        }
    }
}

/// Did the event numbered `at` happen before the observation numbered `obs` was sent?
fn before(at: Option<u64>, obs: u64) -> bool {
    at.is_some_and(|a| a < obs)
}

/// The reference model.
#[derive(Debug, Default)]
pub struct Replies {
    seq: u64,
    promises: BTreeMap<ContainerId, Promise>,
    pods_removed: BTreeSet<SandboxId>,
}

impl Replies {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn promise(&mut self, id: &ContainerId) -> &mut Promise {
        self.promises.entry(id.clone()).or_default()
    }

    /// The container's pod, once known (a create or adoption tells it).
    pub fn set_pod(&mut self, id: &ContainerId, pod: &SandboxId) {
        self.promise(id).pod = Some(pod.clone());
    }

    /// A StartContainer is being sent now.
    pub fn sent_start(&mut self, id: &ContainerId) -> u64 {
        let seq = self.next();
        let p = self.promise(id);
        p.last_start_sent = seq;
        p.stopped = None;
        p.pod_stopped = false;
        seq
    }

    /// An UpdateContainerResources is being sent now; returns its number.
    pub fn sent_update(&mut self, id: &ContainerId) -> u64 {
        let seq = self.next();
        self.promise(id).last_update_sent = seq;
        seq
    }

    /// A ReopenContainerLog is being sent now; returns its number.
    pub fn sent_reopen(&mut self, _id: &ContainerId) -> u64 {
        self.next()
    }

    /// A StopContainer is being sent now; returns its number.
    pub fn sent_stop(&mut self, _id: &ContainerId) -> u64 {
        self.next()
    }

    /// A RemoveContainer is being sent now.
    pub fn sent_remove(&mut self, id: &ContainerId) {
        self.promise(id).remove_sent = true;
    }

    /// A RemovePodSandbox is being sent now: its containers may vanish.
    pub fn sent_remove_pod(&mut self, pod: &SandboxId) {
        self.pods_removed.insert(pod.clone());
        for p in self.promises.values_mut() {
            if p.pod.as_ref() == Some(pod) {
                p.remove_sent = true;
            }
        }
    }

    /// An observation is being sent now; returns its number.
    pub fn begin_observation(&mut self) -> u64 {
        self.next()
    }

    fn may_vanish(&self, p: &Promise) -> bool {
        p.remove_sent
            || p.pod
                .as_ref()
                .is_some_and(|pod| self.pods_removed.contains(pod))
    }

    /// CreateContainer returned `id`; `truth` is what containerd holds of it now.
    pub fn acked_create(
        &mut self,
        id: &ContainerId,
        pod: &SandboxId,
        truth: &ObjectTruth,
    ) -> Result<(), String> {
        let at = self.next();
        let p = self.promise(id);
        p.create_acked = Some(at);
        p.pod = Some(pod.clone());
        if !truth.record {
            return Err(format!(
                "create of {id} acknowledged but containerd has no record of it"
            ));
        }
        Ok(())
    }

    /// StartContainer of `id` returned OK.
    pub fn acked_start(&mut self, id: &ContainerId, truth: &ObjectTruth) -> Result<(), String> {
        let at = self.next();
        // The task this OK is about: the current one if it started, else (it exited and was
        // deleted before the reply arrived) the last one that ran.
        let task = truth
            .task
            .as_ref()
            .filter(|t| t.started_at > 0)
            .map(|t| t.task)
            .or_else(|| truth.exits.iter().rev().find(|e| e.started).map(|e| e.task));
        let p = self.promise(id);
        p.start_acked = Some(at);
        p.acked_tasks.extend(task);
        let ran = task.is_some();
        if !ran {
            return Err(format!(
                "start of {id} acknowledged but no process of it ever ran (task {:?})",
                truth.task.as_ref().map(|t| t.state)
            ));
        }
        Ok(())
    }

    /// StopContainer number `seq` of `id` returned OK.
    pub fn acked_stop(
        &mut self,
        id: &ContainerId,
        seq: u64,
        truth: &ObjectTruth,
    ) -> Result<(), String> {
        let at = self.next();
        let p = self.promise(id);
        if seq > p.last_start_sent {
            p.stopped = Some(at);
            p.pod_stopped = false;
            if let Some(t) = &truth.task
                && matches!(t.state, TaskState::Running { .. })
            {
                return Err(format!(
                    "stop of {id} acknowledged but its process {} still runs",
                    t.pid
                ));
            }
        }
        Ok(())
    }

    /// UpdateContainerResources number `seq` of `id` to `resources` returned OK; `truth` is
    /// what containerd holds of it now.
    pub fn acked_update(
        &mut self,
        id: &ContainerId,
        seq: u64,
        resources: &Resources,
        truth: &ObjectTruth,
    ) -> Result<(), String> {
        let at = self.next();
        let p = self.promise(id);
        if p.update_acked
            .as_ref()
            .is_none_or(|(sent, _, _)| *sent < seq)
        {
            p.update_acked = Some((seq, at, resources.clone()));
        }
        if seq != p.last_update_sent {
            // A later update was sent: it may have replaced these limits already.
            return Ok(());
        }
        let in_task = truth
            .task
            .as_ref()
            .is_some_and(|t| t.resources.as_ref() == Some(resources));
        let in_record = truth.record_resources.as_ref() == Some(resources);
        // The task it went to may have exited and been deleted since, or the container
        // removed (both wait for the update only until its reply).
        let gone = !truth.record || (truth.task.is_none() && !truth.exits.is_empty());
        if !(in_task || in_record || gone) {
            return Err(format!(
                "update of {id} to {} bytes acknowledged but containerd has neither its task ({:?}) nor its record ({:?}) with it",
                resources.memory_limit_in_bytes,
                truth.task.as_ref().map(|t| &t.resources),
                truth.record_resources
            ));
        }
        Ok(())
    }

    /// ReopenContainerLog number `seq` of `id` returned OK; `truth` is what containerd
    /// holds of it now.
    pub fn acked_reopen(
        &mut self,
        id: &ContainerId,
        seq: u64,
        truth: &ObjectTruth,
    ) -> Result<(), String> {
        self.next();
        let p = self.promise(id);
        let not_running = if before(p.remove_acked, seq) {
            Some("its removal was acknowledged")
        } else if before(p.stopped, seq) {
            Some("its stop was acknowledged (no start sent since)")
        } else if before(p.exited_seen, seq) {
            Some("berth had reported it EXITED")
        } else {
            None
        };
        if let Some(why) = not_running {
            return Err(format!(
                "reopen of the log of {id} acknowledged but {why} before the reopen was sent"
            ));
        }
        let ran = truth.task.as_ref().is_some_and(|t| t.started_at > 0)
            || truth.exits.iter().any(|e| e.started);
        if !ran {
            return Err(format!(
                "reopen of the log of {id} acknowledged but no process of it ever ran (task {:?})",
                truth.task.as_ref().map(|t| t.state)
            ));
        }
        Ok(())
    }

    /// RemoveContainer of `id` returned OK.
    pub fn acked_remove(&mut self, id: &ContainerId, truth: &ObjectTruth) -> Result<(), String> {
        let at = self.next();
        let p = self.promise(id);
        p.remove_sent = true;
        p.remove_acked = Some(at);
        if truth.record || truth.task.is_some() {
            return Err(format!(
                "remove of {id} acknowledged but containerd still has {}{}",
                if truth.record { "its record " } else { "" },
                truth
                    .task
                    .as_ref()
                    .map(|t| format!("its task ({:?})", t.state))
                    .unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// RemovePodSandbox of `pod` returned OK; `members` is containerd's truth of every
    /// container created in it, and `pause` of the pod itself.
    pub fn acked_remove_pod(
        &mut self,
        pod: &SandboxId,
        pause: &ObjectTruth,
        members: &[(ContainerId, ObjectTruth)],
    ) -> Result<(), String> {
        if pause.record || pause.task.is_some() {
            return Err(format!(
                "remove of pod {pod} acknowledged but containerd still has its pause container"
            ));
        }
        for (id, truth) in members {
            let at = self.next();
            self.promise(id).remove_acked = Some(at);
            if truth.record || truth.task.is_some() {
                return Err(format!(
                    "remove of pod {pod} acknowledged but containerd still has container {id}"
                ));
            }
        }
        Ok(())
    }

    /// One container observed (ContainerStatus) by observation `obs` in berth incarnation
    /// `incarnation`: `None` if berth said it does not exist.
    pub fn observed(
        &mut self,
        obs: u64,
        incarnation: u64,
        id: &ContainerId,
        view: Option<&ContainerView>,
    ) -> Result<(), String> {
        let vanish_ok = self.promises.get(id).is_some_and(|p| self.may_vanish(p));
        let answered = self.next();
        let p = self.promise(id);
        let Some(view) = view else {
            if before(p.create_acked, obs) && !vanish_ok {
                return Err(format!(
                    "container {id} was created (acknowledged) and never removed, but berth says it does not exist"
                ));
            }
            p.last = None;
            return Ok(());
        };
        if before(p.remove_acked, obs) {
            return Err(format!(
                "container {id} was removed (acknowledged) but berth lists it again ({})",
                view.state
            ));
        }
        let now = view.state;
        if let Some((last_incarnation, prev)) = p.last {
            if prev == ContainerState::Exited && now != ContainerState::Exited {
                return Err(format!("container {id} went from EXITED back to {now}"));
            }
            if last_incarnation == incarnation {
                if let (Some(a), Some(b)) = (prev.lifecycle_rank(), now.lifecycle_rank())
                    && b < a
                {
                    return Err(format!("container {id} went back from {prev} to {now}"));
                }
                if prev == ContainerState::Unknown
                    && matches!(now, ContainerState::Running | ContainerState::Created)
                {
                    return Err(format!("container {id} went from UNKNOWN to {now}"));
                }
            }
        }
        if now == ContainerState::Running && before(p.stopped, obs) {
            return Err(format!(
                "container {id} is RUNNING after {} was acknowledged (no start sent since)",
                p.stop_kind()
            ));
        }
        if now == ContainerState::Created && before(p.start_acked, obs) {
            return Err(format!(
                "container {id} is CREATED although a start of it was acknowledged"
            ));
        }
        if now == ContainerState::Running {
            p.running_pids.insert(view.status.pid);
        }
        if now == ContainerState::Exited && p.exited_seen.is_none() {
            p.exited_seen = Some(answered);
        }
        if let Some((sent, acked, want)) = &p.update_acked
            && before(Some(*acked), obs)
            && p.last_update_sent == *sent
            && view.status.resources.as_ref() != Some(want)
        {
            return Err(format!(
                "container {id}: an update to {} bytes was acknowledged (none sent since) but berth reports {:?}",
                want.memory_limit_in_bytes, view.status.resources
            ));
        }
        p.last = Some((incarnation, now));
        Ok(())
    }

    /// Every container observed at once (ListContainers) by observation `obs` in
    /// incarnation `incarnation`: each is judged as by [`Replies::observed`], and every
    /// acknowledged, unremoved container must be in the list.
    pub fn observed_all(
        &mut self,
        obs: u64,
        incarnation: u64,
        views: &[ContainerView],
    ) -> Result<(), String> {
        let listed: BTreeSet<&ContainerId> = views.iter().map(|v| &v.meta.id).collect();
        let missing: Vec<ContainerId> = self
            .promises
            .iter()
            .filter(|(id, p)| {
                before(p.create_acked, obs) && !listed.contains(id) && !self.may_vanish(p)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if let Some(id) = missing.first() {
            return Err(format!(
                "container {id} was created (acknowledged) and never removed, but berth does not list it ({} such)",
                missing.len()
            ));
        }
        for v in views {
            self.observed(obs, incarnation, &v.meta.id, Some(v))?;
        }
        // Unlisted containers (removed, or never acknowledged) start afresh.
        for (id, p) in self.promises.iter_mut() {
            if !listed.contains(id) {
                p.last = None;
            }
        }
        Ok(())
    }

    /// containerd started a task of `id` (`Tasks.Start` succeeded): not allowed if a stop
    /// of it was acknowledged and no start was sent since.
    pub fn task_started(&self, id: &str) -> Result<(), String> {
        let stopped = ContainerId::new(id)
            .ok()
            .and_then(|cid| self.promises.get(&cid))
            .filter(|p| p.stopped.is_some());
        if let Some(p) = stopped {
            return Err(format!(
                "container {id}: {} was acknowledged (no start sent since) but berth started a task of it again",
                p.stop_kind()
            ));
        }
        Ok(())
    }

    /// Whether berth promised that the process (task serial `task`, pid `pid`) of `id` ran:
    /// a StartContainer of it returned OK, or berth listed the container RUNNING with it.
    pub fn process_promised(&self, id: &ContainerId, task: u64, pid: u32) -> bool {
        self.promises
            .get(id)
            .is_some_and(|p| p.acked_tasks.contains(&task) || p.running_pids.contains(&pid))
    }

    /// Containers whose create was acknowledged and whose removal was not sent.
    pub fn kept(&self) -> Vec<ContainerId> {
        self.promises
            .iter()
            .filter(|(_, p)| p.create_acked.is_some() && !self.may_vanish(p))
            .map(|(id, _)| id.clone())
            .collect()
    }
}
