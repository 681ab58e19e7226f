//! The synchronous heart of the simulated containerd: records, per-pod shims, tasks and
//! processes, and the truth log. No clock of its own: every method takes `now`, and
//! process exits are applied lazily by [`Model::settle`] from their deadlines, so the model
//! needs no background task and survives the berth "node" being killed.

use std::collections::BTreeMap;

use berth_backend::{
    BackendError, BackendErrorKind, ContainerId, ContainerMeta, ExecOutput, ExecSpec, ExitStatus,
    ImageRecord, ImageRef, Listed, Listing, Resources, SandboxMeta, TaskMetrics, TaskState,
};
use berth_core::{EXEC_ID_PREFIX, SIGKILL, SandboxId, Target};
use tokio::time::Instant;

use crate::clock::SimClock;
use crate::config::SimConfig;
use crate::error::HookError;
use crate::truth::{
    ExecEnd, ExecPlan, ExecTruth, ExitCause, ObjectTruth, ProcessPlan, RealExit, RecordMeta,
    RecordTruth, Restart, ShimDeath, ShimState, ShimTruth, SignalTruth, TaskTruth, Truth,
};

/// containerd's namespace, as it appears in its error messages.
const NAMESPACE: &str = "berth";

/// The image ID of the busybox image every simulated containerd starts with.
pub const BUSYBOX_ID: &str =
    "sha256:3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741";

/// The image store every simulated containerd starts with: busybox under its tag and its
/// repo digest, as a pull by name leaves it.
pub fn default_images() -> Vec<ImageRecord> {
    vec![
        ImageRecord::new("docker.io/library/busybox:latest", BUSYBOX_ID),
        ImageRecord::new(
            "docker.io/library/busybox@sha256:1487d0af5f52b4ba31c7e465126ee2123fe3f2305d638e7827681e7cf6c83d5e",
            BUSYBOX_ID,
        ),
    ]
}

/// Exit status of a task killed by SIGKILL.
pub(crate) const KILLED: i32 = 128 + SIGKILL;
/// Exit status of a created (never started) task that got a catchable signal (measured:
/// SIGTERM to a CREATED task gave 2).
const CREATED_SIGNALLED: i32 = 2;

/// Signals whose default action is to ignore or stop, never to terminate.
const HARMLESS_SIGNALS: &[i32] = &[17, 18, 19, 20, 21, 22, 23, 28];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proc {
    Created,
    Running { exit_at: Option<Instant> },
    Stopped(ExitStatus),
}

#[derive(Debug, Clone)]
struct Task {
    seq: u64,
    target: Target,
    pod: SandboxId,
    /// The key of the shim running it: its pod, or itself with one shim per container.
    shim_key: SandboxId,
    shim: u64,
    pid: u32,
    proc: Proc,
    plan: ProcessPlan,
    started_at: i64,
    resources: Option<Resources>,
    /// The exit it chose on its stop signal ([`ProcessPlan::handles_term`]): when, the
    /// code, the signal.
    handled: Option<(Instant, i32, i32)>,
}

#[derive(Debug, Clone)]
struct Shim {
    seq: u64,
    started_at: i64,
    state: ShimState,
    /// Until when containerd still tries to reach the dead shim ("ttrpc: closed").
    cleanup_until: Option<Instant>,
}

/// An exec process, from its start on (kept after its deletion, for waits and the truth).
#[derive(Debug, Clone)]
struct ExecRec {
    container: String,
    exec_id: String,
    task: u64,
    pid: u32,
    plan: ExecPlan,
    cap: usize,
    started: Instant,
    exit: Option<(i32, Instant, ExecEnd)>,
    deleted: bool,
}

impl ExecRec {
    fn planned_exit(&self) -> Option<Instant> {
        self.plan.exit_after.map(|d| self.started + d)
    }
}

/// What a blocked exec wait finds when it looks again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecPoll {
    /// The wait ends.
    Done(Result<ExecOutput, BackendError>),
    /// Not yet; something may change at this instant, if ever.
    Until(Option<Instant>),
}

/// What a wait finds when it begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitBegin {
    /// The task has exited already.
    Exited(ExitStatus),
    /// The task lives: block on task number `seq`.
    Blocked { seq: u64 },
}

/// What a blocked wait finds when it looks again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitPoll {
    /// The wait ends.
    Done(Result<ExitStatus, BackendError>),
    /// Still running; it exits on its own at this instant, if ever.
    Until(Option<Instant>),
}

/// Something the chaos draw can pick.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChaosCandidates {
    /// Pods with a live shim.
    pub pods: Vec<SandboxId>,
    /// Running CRI containers (pause processes are left alone).
    pub running: Vec<Target>,
}

/// The simulated containerd.
#[derive(Debug)]
pub(crate) struct Model {
    pub clock: SimClock,
    cfg: SimConfig,
    records: BTreeMap<String, RecordTruth>,
    tasks: BTreeMap<String, Task>,
    shims: BTreeMap<SandboxId, Shim>,
    plans: BTreeMap<String, ProcessPlan>,
    exits: Vec<RealExit>,
    signals: Vec<SignalTruth>,
    exit_of_task: BTreeMap<u64, usize>,
    shim_deaths: Vec<ShimDeath>,
    restarts: Vec<Restart>,
    /// Tasks killed with their shim that containerd has not cleaned up yet.
    dying: BTreeMap<String, Instant>,
    next_pid: u32,
    next_task: u64,
    next_shim: u64,
    /// containerd's incarnation: a restart bumps it and breaks every stream of the old one.
    pub epoch: u64,
    down_until: Option<Instant>,
    /// Every exec process ever started.
    exec_log: Vec<ExecRec>,
    /// Exec processes not deleted, by (container, exec id): their index in `exec_log`.
    execs: BTreeMap<(String, String), usize>,
    /// No planned exit is due before this (a lower bound; `None`: none planned), so that
    /// [`Model::settle`], called on every call, scans the tasks only when one may be due.
    next_exit: Option<Instant>,
    /// The image store: names and the image IDs they point at.
    images: Vec<ImageRecord>,
}

fn err(kind: BackendErrorKind, verb: &str, id: &str, message: impl Into<String>) -> BackendError {
    BackendError::new(kind, verb, id, message)
}

/// containerd's answer for a missing record.
fn no_record(verb: &str, id: &str) -> BackendError {
    err(
        BackendErrorKind::NotFound,
        verb,
        id,
        format!("container \"{id}\" in namespace \"{NAMESPACE}\": not found"),
    )
}

fn no_task(verb: &str, id: &str) -> BackendError {
    err(
        BackendErrorKind::NotFound,
        verb,
        id,
        format!("task {id} not found"),
    )
}

/// The error of a call whose shim connection is gone.
pub(crate) fn ttrpc_closed(verb: &str, id: &str) -> BackendError {
    err(BackendErrorKind::Unavailable, verb, id, "ttrpc: closed")
}

/// The error of a call cut by a containerd restart.
pub(crate) fn transport_error(verb: &str, id: &str) -> BackendError {
    err(BackendErrorKind::Unavailable, verb, id, "transport error")
}

/// The error of a call made while containerd is down.
pub(crate) fn connection_refused(verb: &str, id: &str) -> BackendError {
    err(
        BackendErrorKind::Unavailable,
        verb,
        id,
        "error trying to connect: connection refused",
    )
}

impl Model {
    pub fn new(cfg: SimConfig) -> Model {
        Model {
            clock: SimClock::new(cfg.wall_base),
            next_pid: cfg.first_pid,
            cfg,
            records: BTreeMap::new(),
            tasks: BTreeMap::new(),
            shims: BTreeMap::new(),
            plans: BTreeMap::new(),
            exits: Vec::new(),
            signals: Vec::new(),
            exit_of_task: BTreeMap::new(),
            shim_deaths: Vec::new(),
            restarts: Vec::new(),
            dying: BTreeMap::new(),
            next_task: 1,
            next_shim: 1,
            epoch: 0,
            down_until: None,
            exec_log: Vec::new(),
            execs: BTreeMap::new(),
            next_exit: None,
            images: default_images(),
        }
    }

    /// Adds a name to the image store (replacing what that name pointed at).
    pub fn add_image(&mut self, record: ImageRecord) {
        self.images.retain(|r| r.name != record.name);
        self.images.push(record);
    }

    /// Resolves a container's image reference as containerd's CRI does
    /// ([`berth_core::resolve_image`] over the store): nothing changes.
    pub fn resolve_image(&self, id: &str, image: &str) -> Result<ImageRef, BackendError> {
        berth_core::resolve_image(image, &self.images).map_err(|e| {
            let mut e = e.to_backend("Images.List", id);
            e.message
                .push_str(&format!(" (containerd namespace {NAMESPACE:?})"));
            e
        })
    }

    /// containerd serves calls at `now`.
    pub fn is_up(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|d| now >= d)
    }

    /// Applies every planned exit due by `now`, in time order, with its real time.
    pub fn settle(&mut self, now: Instant) {
        if self.next_exit.is_none_or(|t| t > now) {
            return;
        }
        self.settle_execs(now);
        let mut due: Vec<(Instant, String)> = self
            .tasks
            .iter()
            .filter_map(|(id, t)| match t.proc {
                Proc::Running { exit_at: Some(at) } if at <= now => Some((at, id.clone())),
                _ => None,
            })
            .collect();
        due.sort();
        for (at, id) in due {
            let (code, cause) = match self.tasks.get(&id) {
                Some(Task {
                    handled: Some((when, code, signal)),
                    ..
                }) if *when == at => (*code, ExitCause::Handled(*signal)),
                Some(t) => (t.plan.code, ExitCause::Planned),
                None => (0, ExitCause::Planned),
            };
            self.finish(&id, code, at, cause, false);
        }
        self.next_exit = self
            .tasks
            .values()
            .filter_map(|t| match t.proc {
                Proc::Running { exit_at } => exit_at,
                _ => None,
            })
            .chain(
                self.exec_log
                    .iter()
                    .filter(|e| e.exit.is_none())
                    .filter_map(ExecRec::planned_exit),
            )
            .min();
    }

    /// Applies every planned exec exit due by `now`.
    fn settle_execs(&mut self, now: Instant) {
        for e in &mut self.exec_log {
            if e.exit.is_none()
                && let Some(at) = e.planned_exit()
                && at <= now
            {
                e.exit = Some((e.plan.code, at, ExecEnd::Planned));
            }
        }
    }

    fn note_exit_due(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.next_exit = Some(self.next_exit.map_or(at, |n| n.min(at)));
        }
    }

    /// The exec processes of task `seq` still alive at `at` die with its init (one pid
    /// namespace); those whose plan ended first exited on their own.
    fn kill_execs_of_task(&mut self, seq: u64, at: Instant, end: ExecEnd) {
        for e in &mut self.exec_log {
            if e.task != seq || e.exit.is_some() {
                continue;
            }
            e.exit = Some(match e.planned_exit() {
                Some(p) if p <= at => (e.plan.code, p, ExecEnd::Planned),
                _ => (KILLED, at, end),
            });
        }
    }

    /// The exec processes of task `seq` are gone from containerd with it.
    fn drop_execs_of_task(&mut self, seq: u64) {
        let log = &mut self.exec_log;
        self.execs.retain(|_, i| {
            let gone = log[*i].task == seq;
            if gone {
                log[*i].deleted = true;
            }
            !gone
        });
    }

    /// `Tasks.Exec` + `Tasks.Start` of an exec process in `target`'s running task.
    pub fn start_exec(
        &mut self,
        target: &Target,
        spec: &ExecSpec,
        now: Instant,
    ) -> Result<u32, BackendError> {
        const VERB: &str = "Tasks.Exec";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        let task = self.tasks.get(id).ok_or_else(|| no_task(VERB, id))?;
        if !matches!(task.proc, Proc::Running { .. }) {
            return Err(err(
                BackendErrorKind::FailedPrecondition,
                VERB,
                id,
                format!("cannot exec in a {} state", state_name(task.proc)),
            ));
        }
        let key = (id.to_owned(), spec.exec_id.as_str().to_owned());
        if self.execs.contains_key(&key) {
            return Err(err(
                BackendErrorKind::AlreadyExists,
                VERB,
                id,
                format!("id {}: already exists", spec.exec_id),
            ));
        }
        let seq = task.seq;
        let pid = self.next_pid;
        self.next_pid = self.next_pid.wrapping_add(1).max(2);
        let rec = ExecRec {
            container: id.to_owned(),
            exec_id: spec.exec_id.as_str().to_owned(),
            task: seq,
            pid,
            plan: ExecPlan::from_cmd(&spec.cmd),
            cap: spec.output_cap,
            started: now,
            exit: None,
            deleted: false,
        };
        let due = rec.planned_exit();
        self.execs.insert(key, self.exec_log.len());
        self.exec_log.push(rec);
        self.note_exit_due(due);
        self.settle(now);
        Ok(pid)
    }

    fn exec_index(&self, verb: &str, id: &str, exec_id: &str) -> Result<usize, BackendError> {
        self.execs
            .get(&(id.to_owned(), exec_id.to_owned()))
            .copied()
            .ok_or_else(|| {
                err(
                    BackendErrorKind::NotFound,
                    verb,
                    id,
                    format!("process {exec_id}: not found"),
                )
            })
    }

    /// `Tasks.Kill` of an exec process.
    pub fn kill_exec(
        &mut self,
        target: &Target,
        exec_id: &str,
        signal: i32,
        now: Instant,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Tasks.Kill";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        let i = self.exec_index(VERB, id, exec_id)?;
        let e = &mut self.exec_log[i];
        if e.exit.is_some() {
            return Err(err(
                BackendErrorKind::NotFound,
                VERB,
                id,
                "process already finished: not found",
            ));
        }
        if signal != 0 && !HARMLESS_SIGNALS.contains(&signal) {
            e.exit = Some((128 + signal, now, ExecEnd::Signal(signal)));
        }
        Ok(())
    }

    /// Deleting an exec process (berth's backend: SIGKILL a live one, wait, then
    /// `Tasks.DeleteProcess`).
    pub fn delete_exec(
        &mut self,
        target: &Target,
        exec_id: &str,
        now: Instant,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Tasks.DeleteProcess";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        let i = self.exec_index(VERB, id, exec_id)?;
        let e = &mut self.exec_log[i];
        if e.exit.is_none() {
            e.exit = Some((KILLED, now, ExecEnd::Signal(SIGKILL)));
        }
        e.deleted = true;
        self.execs.remove(&(id.to_owned(), exec_id.to_owned()));
        Ok(())
    }

    /// Kills and deletes every exec process of berth's in `target`'s task. NotFound
    /// without a record; `Ok(0)` without a task.
    pub fn sweep_execs(&mut self, target: &Target, now: Instant) -> Result<u32, BackendError> {
        const VERB: &str = "Tasks.ListPids";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        if !self.tasks.contains_key(id) {
            return Ok(0);
        }
        let mine: Vec<(String, String)> = self
            .execs
            .keys()
            .filter(|(c, x)| c == id && x.starts_with(EXEC_ID_PREFIX))
            .cloned()
            .collect();
        for (_, exec_id) in &mine {
            self.delete_exec(target, exec_id, now)?;
        }
        Ok(u32::try_from(mine.len()).unwrap_or(u32::MAX))
    }

    /// A wait of an exec process as it begins: its index.
    pub fn exec_wait_begin(
        &self,
        target: &Target,
        exec_id: &str,
        now: Instant,
    ) -> Result<usize, BackendError> {
        const VERB: &str = "Tasks.Wait";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        self.exec_index(VERB, id, exec_id)
    }

    /// A blocked wait of exec number `i`, begun in containerd incarnation `epoch`, looks
    /// again: it ends once the process has exited and its output is drained (the pipe
    /// closed, or the drain bound passed).
    pub fn exec_wait_poll(&self, i: usize, epoch: u64, now: Instant) -> ExecPoll {
        const VERB: &str = "Tasks.Wait";
        let e = &self.exec_log[i];
        if self.epoch != epoch {
            return ExecPoll::Done(Err(transport_error(VERB, &e.container)));
        }
        match e.exit {
            None => ExecPoll::Until(e.planned_exit()),
            Some((_, _, ExecEnd::ShimDied)) => {
                ExecPoll::Done(Err(ttrpc_closed(VERB, &e.container)))
            }
            Some((code, at, _)) => {
                let drained = at + e.plan.linger.min(self.cfg.exec_drain_bound);
                if now < drained {
                    return ExecPoll::Until(Some(drained));
                }
                let mut stdout = e.plan.stdout();
                let mut stderr = e.plan.stderr();
                stdout.truncate(e.cap);
                stderr.truncate(e.cap);
                ExecPoll::Done(Ok(ExecOutput {
                    exit_code: code,
                    stdout,
                    stderr,
                }))
            }
        }
    }

    /// Every exec process ever started, as truth.
    pub fn exec_truth(&self) -> Vec<ExecTruth> {
        self.exec_log
            .iter()
            .map(|e| ExecTruth {
                container: e.container.clone(),
                exec_id: e.exec_id.clone(),
                task: e.task,
                pid: e.pid,
                plan: e.plan,
                started_at: self.clock.wall_of(e.started),
                exited_at: e.exit.map(|(_, at, _)| self.clock.wall_of(at)),
                code: e.exit.map(|(c, _, _)| c),
                end: e.exit.map(|(_, _, end)| end),
                deleted: e.deleted,
            })
            .collect()
    }

    /// The process of task `id` ends with `code` at `at`.
    fn finish(
        &mut self,
        id: &str,
        code: i32,
        at: Instant,
        cause: ExitCause,
        shim_died: bool,
    ) -> Option<RealExit> {
        let wall = self.clock.wall_of(at);
        let task = self.tasks.get_mut(id)?;
        let started = match task.proc {
            Proc::Stopped(_) => return None,
            Proc::Created => false,
            Proc::Running { .. } => true,
        };
        let status = ExitStatus::real(code, wall);
        // containerd's CRI learns an OOM kill from the task's cgroup (TaskOOM).
        let status = if cause == ExitCause::OomKilled {
            status.oom_killed()
        } else {
            status
        };
        task.proc = Proc::Stopped(status);
        let seq = task.seq;
        let exit = RealExit {
            target: task.target.clone(),
            task: task.seq,
            pid: task.pid,
            code,
            exited_at: wall,
            cause,
            started,
            shim_died,
        };
        self.exit_of_task.insert(exit.task, self.exits.len());
        self.exits.push(exit.clone());
        let end = if shim_died {
            ExecEnd::ShimDied
        } else {
            ExecEnd::TaskDied
        };
        self.kill_execs_of_task(seq, at, end);
        Some(exit)
    }

    /// Sets the process plan of an id (read at `Tasks.Start`).
    pub fn set_plan(&mut self, id: &str, plan: ProcessPlan) {
        self.plans.insert(id.to_owned(), plan);
    }

    /// Sets or clears the metadata error of a record.
    pub fn set_meta_error(&mut self, id: &str, error: Option<String>) -> Result<(), HookError> {
        let rec = self
            .records
            .get_mut(id)
            .ok_or_else(|| HookError::NoRecord { id: id.to_owned() })?;
        rec.meta_error = error;
        Ok(())
    }

    fn dying(&self, id: &str, now: Instant) -> bool {
        self.dying.get(id).is_some_and(|until| now < *until)
    }

    /// The record of `id`, for a task call.
    fn task_call_record(&self, verb: &str, id: &str, now: Instant) -> Result<(), BackendError> {
        if !self.records.contains_key(id) {
            return Err(no_record(verb, id));
        }
        if self.dying(id, now) {
            return Err(ttrpc_closed(verb, id));
        }
        Ok(())
    }

    fn labels(kind: &str, pod: &SandboxId) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("io.berth.managed".to_owned(), "true".to_owned()),
            ("io.berth.kind".to_owned(), kind.to_owned()),
            ("io.berth.sandbox".to_owned(), pod.as_str().to_owned()),
        ])
    }

    /// `Containers.Create` of a CRI container: its pod's record and live pause task must
    /// exist (berth's real backend reads the sandbox's config and joins the pause
    /// process's namespaces).
    pub fn create_container(
        &mut self,
        meta: &ContainerMeta,
        now: Instant,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Containers.Create";
        let id = meta.id.as_str();
        if self.records.contains_key(id) {
            return Err(err(
                BackendErrorKind::AlreadyExists,
                VERB,
                id,
                format!("container \"{id}\": already exists"),
            ));
        }
        let pod = meta.sandbox_id.as_str();
        if !self.records.contains_key(pod) {
            return Err(err(
                BackendErrorKind::FailedPrecondition,
                VERB,
                id,
                format!("sandbox {pod} does not exist in containerd"),
            ));
        }
        // The image the core resolved must still be there (metadata without one: not
        // checked, as the real backend resolves its config's image then).
        if !meta.image.id.is_empty() && !self.images.iter().any(|r| r.id == meta.image.id) {
            return Err(err(
                BackendErrorKind::NotFound,
                "Images.List",
                id,
                format!(
                    "image {:?} ({}) not found",
                    meta.config.image, meta.image.id
                ),
            ));
        }
        match self.tasks.get(pod).map(|t| t.proc) {
            Some(Proc::Created | Proc::Running { .. }) => {}
            other => {
                let state = match other {
                    Some(Proc::Stopped(_)) => "Stopped",
                    _ => "NotFound",
                };
                return Err(err(
                    BackendErrorKind::FailedPrecondition,
                    VERB,
                    id,
                    format!(
                        "sandbox {pod} has no live pause task ({state}): cannot join its namespaces"
                    ),
                ));
            }
        }
        self.records.insert(
            id.to_owned(),
            RecordTruth {
                target: Target::Container(meta.id.clone()),
                pod: meta.sandbox_id.clone(),
                labels: Self::labels("container", &meta.sandbox_id),
                created_at: self.clock.wall_of(now),
                meta: RecordMeta::Container(Box::new(meta.clone())),
                meta_error: None,
                resources: meta.config.resources.clone(),
            },
        );
        Ok(())
    }

    /// `Containers.Create` of a sandbox's pause container.
    pub fn create_sandbox(&mut self, meta: &SandboxMeta, now: Instant) -> Result<(), BackendError> {
        let id = meta.id.as_str();
        if self.records.contains_key(id) {
            return Err(err(
                BackendErrorKind::AlreadyExists,
                "Containers.Create",
                id,
                format!("container \"{id}\": already exists"),
            ));
        }
        self.records.insert(
            id.to_owned(),
            RecordTruth {
                target: Target::Sandbox(meta.id.clone()),
                pod: meta.id.clone(),
                labels: Self::labels("sandbox", &meta.id),
                created_at: self.clock.wall_of(now),
                meta: RecordMeta::Sandbox(Box::new(meta.clone())),
                meta_error: None,
                resources: None,
            },
        );
        Ok(())
    }

    /// `Containers.Delete`: removes the record whatever its task does (a live task is
    /// orphaned: nothing can reach it until a record with the same id exists again).
    pub fn delete_container(&mut self, target: &Target) -> Result<(), BackendError> {
        let id = target.as_str();
        if self.records.remove(id).is_none() {
            return Err(no_record("Containers.Delete", id));
        }
        Ok(())
    }

    /// `Tasks.Create`: starts the pod's shim if it has none, then `runc create`.
    pub fn create_task(&mut self, target: &Target, now: Instant) -> Result<u32, BackendError> {
        const VERB: &str = "Tasks.Create";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        if self.tasks.contains_key(id) {
            return Err(err(
                BackendErrorKind::AlreadyExists,
                VERB,
                id,
                format!("task {id}: already exists"),
            ));
        }
        let (pod, resources) = match self.records.get(id) {
            Some(rec) => (rec.pod.clone(), rec.resources.clone()),
            None => return Err(no_record(VERB, id)),
        };
        if pod.as_str() != id {
            let pause_live = matches!(
                self.tasks.get(pod.as_str()).map(|t| t.proc),
                Some(Proc::Created | Proc::Running { .. })
            );
            if !pause_live {
                return Err(err(
                    BackendErrorKind::Other,
                    VERB,
                    id,
                    format!(
                        "failed to create shim task: OCI runtime create failed: cannot join the namespaces of pod {pod}: no such process"
                    ),
                ));
            }
        }
        let shim_key = self.shim_key(id, &pod);
        let shim = match self.shims.get(&shim_key) {
            Some(s) if s.state == ShimState::Alive => s.seq,
            Some(s) if s.cleanup_until.is_some_and(|u| now < u) => {
                return Err(ttrpc_closed(VERB, id));
            }
            _ => {
                let seq = self.next_shim;
                self.next_shim += 1;
                self.shims.insert(
                    shim_key.clone(),
                    Shim {
                        seq,
                        started_at: self.clock.wall_of(now),
                        state: ShimState::Alive,
                        cleanup_until: None,
                    },
                );
                seq
            }
        };
        let pid = self.next_pid;
        self.next_pid = self.next_pid.wrapping_add(1).max(2);
        let seq = self.next_task;
        self.next_task += 1;
        self.dying.remove(id);
        self.tasks.insert(
            id.to_owned(),
            Task {
                seq,
                target: target.clone(),
                pod,
                shim_key,
                shim,
                pid,
                proc: Proc::Created,
                plan: ProcessPlan::forever(),
                started_at: 0,
                resources,
                handled: None,
            },
        );
        Ok(pid)
    }

    /// The key of the shim that runs task `id` of `pod`: the pod (containerd's CRI groups a
    /// pod's tasks in one shim), or the task itself with [`SimConfig::shim_per_container`]
    /// (berth's real backend sets no grouping annotation).
    pub fn shim_key(&self, id: &str, pod: &SandboxId) -> SandboxId {
        if self.cfg.shim_per_container {
            SandboxId::new(id).unwrap_or_else(|_| pod.clone())
        } else {
            pod.clone()
        }
    }

    /// The shim key of `id`'s task, if it has one now.
    pub fn task_shim_key(&self, id: &str) -> Option<SandboxId> {
        self.tasks.get(id).map(|t| t.shim_key.clone())
    }

    /// The shim key of the task (or record) `id`, if it has one.
    pub fn shim_key_of(&self, id: &str) -> Option<SandboxId> {
        if let Some(t) = self.tasks.get(id) {
            return Some(t.shim_key.clone());
        }
        let pod = self.records.get(id)?.pod.clone();
        Some(self.shim_key(id, &pod))
    }

    /// `Tasks.Start`: the process starts and follows its plan.
    pub fn start_task(&mut self, target: &Target, now: Instant) -> Result<u32, BackendError> {
        const VERB: &str = "Tasks.Start";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        let plan = self.plans.get(id).copied().unwrap_or_default();
        let wall = self.clock.wall_of(now);
        let task = self.tasks.get_mut(id).ok_or_else(|| no_task(VERB, id))?;
        match task.proc {
            Proc::Created => {
                task.plan = plan;
                task.started_at = wall;
                let exit_at = plan.exit_after.map(|d| now + d);
                task.proc = Proc::Running { exit_at };
                if let Some(at) = exit_at {
                    self.next_exit = Some(self.next_exit.map_or(at, |n| n.min(at)));
                }
                let pid = task.pid;
                self.settle(now);
                Ok(pid)
            }
            Proc::Running { .. } => Err(err(
                BackendErrorKind::FailedPrecondition,
                VERB,
                id,
                "cannot start a running process",
            )),
            Proc::Stopped(_) => Err(err(
                BackendErrorKind::FailedPrecondition,
                VERB,
                id,
                "cannot start a stopped process",
            )),
        }
    }

    /// `Tasks.Kill` of the init process.
    pub fn kill_task(
        &mut self,
        target: &Target,
        signal: i32,
        now: Instant,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Tasks.Kill";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        if !(0..=64).contains(&signal) {
            return Err(err(
                BackendErrorKind::Other,
                VERB,
                id,
                format!("invalid signal {signal}"),
            ));
        }
        let task = self.tasks.get(id).ok_or_else(|| no_task(VERB, id))?;
        if !matches!(task.proc, Proc::Stopped(_)) && signal != 0 {
            self.signals.push(SignalTruth {
                target: task.target.clone(),
                pod: task.pod.clone(),
                task: task.seq,
                pid: task.pid,
                started_at: task.started_at,
                signal,
                at: self.clock.wall_of(now),
                by_delete: false,
            });
        }
        let code = match task.proc {
            Proc::Stopped(_) => {
                return Err(err(
                    BackendErrorKind::NotFound,
                    VERB,
                    id,
                    "process already finished: not found",
                ));
            }
            _ if signal == 0 => None,
            _ if signal == SIGKILL => Some(KILLED),
            Proc::Created => Some(CREATED_SIGNALLED),
            Proc::Running { exit_at } => {
                if HARMLESS_SIGNALS.contains(&signal) || task.plan.ignores_term {
                    None
                } else if let Some((after, code)) = task.plan.handles_term {
                    // It shuts down on its own, once, unless it was to exit earlier anyway.
                    let at = now + after;
                    if task.handled.is_none() && exit_at.is_none_or(|e| at < e) {
                        if let Some(t) = self.tasks.get_mut(id) {
                            t.handled = Some((at, code, signal));
                            t.proc = Proc::Running { exit_at: Some(at) };
                        }
                        self.next_exit = Some(self.next_exit.map_or(at, |n| n.min(at)));
                    }
                    None
                } else {
                    Some(128 + signal)
                }
            }
        };
        if let Some(code) = code {
            self.finish(id, code, now, ExitCause::Signal(signal), false);
        }
        Ok(())
    }

    /// `Tasks.Delete`; with `kill`, SIGKILL a live task first (berth's backend: Kill(all),
    /// Wait, Delete).
    pub fn delete_task(
        &mut self,
        target: &Target,
        kill: bool,
        now: Instant,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Tasks.Delete";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        let task = self.tasks.get(id).ok_or_else(|| no_task(VERB, id))?;
        match task.proc {
            Proc::Running { .. } if !kill => {
                return Err(err(
                    BackendErrorKind::FailedPrecondition,
                    VERB,
                    id,
                    "task must be stopped before deletion: running",
                ));
            }
            Proc::Running { .. } | Proc::Created if kill => {
                self.signals.push(SignalTruth {
                    target: task.target.clone(),
                    pod: task.pod.clone(),
                    task: task.seq,
                    pid: task.pid,
                    started_at: task.started_at,
                    signal: SIGKILL,
                    at: self.clock.wall_of(now),
                    by_delete: true,
                });
                self.finish(id, KILLED, now, ExitCause::DeleteKill, false);
            }
            _ => {}
        }
        self.remove_task(id, now);
        Ok(())
    }

    /// Forgets a task; its shim exits with its last task.
    fn remove_task(&mut self, id: &str, now: Instant) {
        let Some(task) = self.tasks.remove(id) else {
            return;
        };
        self.drop_execs_of_task(task.seq);
        let pod_has_tasks = self.tasks.values().any(|t| t.shim_key == task.shim_key);
        if !pod_has_tasks
            && let Some(shim) = self.shims.get_mut(&task.shim_key)
            && shim.state == ShimState::Alive
            && shim.seq == task.shim
        {
            shim.state = ShimState::Exited {
                at: self.clock.wall_of(now),
            };
        }
    }

    /// `Tasks.Update` of a task's limits: its cgroup has them from now on (a created task
    /// too: its cgroup exists). NotFound without a task or once its process has finished.
    pub fn update_task_resources(
        &mut self,
        target: &Target,
        resources: &Resources,
        now: Instant,
    ) -> Result<(), BackendError> {
        const VERB: &str = "Tasks.Update";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        let task = self.tasks.get_mut(id).ok_or_else(|| no_task(VERB, id))?;
        if let Proc::Stopped(_) = task.proc {
            return Err(err(
                BackendErrorKind::NotFound,
                VERB,
                id,
                "process already finished: not found",
            ));
        }
        task.resources = Some(resources.clone());
        let used = i64::from(task.plan.memory_mib) << 20;
        let limit = resources.memory_limit_in_bytes;
        if matches!(task.proc, Proc::Running { .. }) && limit > 0 && used > limit {
            // The kernel enforces the new limit at once: the process is OOM-killed while
            // the update's reply is still on its way.
            self.finish(id, 137, now, ExitCause::OomKilled, false);
        }
        Ok(())
    }

    /// `Containers.Update` of a record's OCI spec with new limits: a task created later
    /// starts with them; a live task keeps its own.
    pub fn update_record_resources(
        &mut self,
        target: &Target,
        resources: &Resources,
    ) -> Result<(), BackendError> {
        let id = target.as_str();
        let rec = self
            .records
            .get_mut(id)
            .ok_or_else(|| no_record("Containers.Update", id))?;
        rec.resources = Some(resources.clone());
        Ok(())
    }

    /// Reopening a container's log file: berth's copier serves a container whose record
    /// has a log path while its task runs; otherwise no log is being written
    /// (FailedPrecondition, as berth's real backend answers).
    pub fn reopen_log(&self, target: &Target) -> Result<(), BackendError> {
        let id = target.as_str();
        let has_log = self.records.get(id).is_some_and(|rec| match &rec.meta {
            RecordMeta::Container(m) => !m.log_path.is_empty(),
            RecordMeta::Sandbox(_) => false,
        });
        let running = self
            .tasks
            .get(id)
            .is_some_and(|t| matches!(t.proc, Proc::Running { .. }));
        if !(has_log && running) {
            return Err(err(
                BackendErrorKind::FailedPrecondition,
                "Logs.Reopen",
                id,
                format!("container {id}: no log is being written (no log path, or no task)"),
            ));
        }
        Ok(())
    }

    /// `Tasks.Metrics` of the tasks of `ids` (every task when empty): a running process uses
    /// 1 % of a CPU from its start and the memory of its plan (4 MiB when the plan names
    /// none), limited by its task's limit; a task whose process the kernel OOM-killed counts
    /// that kill. Containers without a task are left out.
    pub fn task_metrics(&self, ids: &[ContainerId], now: Instant) -> Vec<TaskMetrics> {
        const MIB: u64 = 1 << 20;
        let wall = self.clock.wall_of(now);
        self.tasks
            .values()
            .filter(|t| ids.is_empty() || ids.iter().any(|id| id.as_str() == t.target.as_str()))
            .map(|t| {
                let ran_until = match t.proc {
                    Proc::Stopped(exit) => exit.exited_at,
                    _ => wall,
                };
                let ran = if t.started_at > 0 {
                    u64::try_from(ran_until - t.started_at).unwrap_or(0)
                } else {
                    0
                };
                let used = match t.proc {
                    Proc::Running { .. } => u64::from(t.plan.memory_mib.max(4)) * MIB,
                    _ => 0,
                };
                let limit = t
                    .resources
                    .as_ref()
                    .map_or(0, |r| u64::try_from(r.memory_limit_in_bytes).unwrap_or(0));
                let usage = if limit > 0 { used.min(limit) } else { used };
                let oom_kills = self
                    .exits
                    .iter()
                    .filter(|e| e.task == t.seq && e.cause == ExitCause::OomKilled)
                    .count() as u64;
                TaskMetrics {
                    id: t.target.as_str().to_owned(),
                    timestamp: wall,
                    cpu_usage_ns: ran / 100,
                    memory_usage_bytes: usage,
                    memory_working_set_bytes: usage,
                    memory_available_bytes: (limit > 0).then(|| limit - usage),
                    memory_rss_bytes: usage,
                    page_faults: 0,
                    major_page_faults: 0,
                    oom_kills,
                }
            })
            .collect()
    }

    /// `Tasks.Get`: a missing record or task is a state, not an error.
    pub fn task_status(&self, target: &Target) -> TaskState {
        let id = target.as_str();
        if !self.records.contains_key(id) {
            return TaskState::NotFound;
        }
        match self.tasks.get(id) {
            None => TaskState::NotFound,
            Some(t) => state_of(t),
        }
    }

    /// `Containers.List` of berth's records, sorted by id.
    pub fn list(&self) -> Listing {
        let mut listing = Listing::default();
        for (id, rec) in &self.records {
            match &rec.meta {
                RecordMeta::Container(m) => listing.containers.push(Listed {
                    id: id.clone(),
                    created_at: rec.created_at,
                    meta: rec
                        .meta_error
                        .clone()
                        .map_or_else(|| Ok((**m).clone()), Err),
                }),
                RecordMeta::Sandbox(m) => listing.sandboxes.push(Listed {
                    id: id.clone(),
                    created_at: rec.created_at,
                    meta: rec
                        .meta_error
                        .clone()
                        .map_or_else(|| Ok((**m).clone()), Err),
                }),
            }
        }
        listing
    }

    /// `Tasks.Wait` as it begins.
    pub fn wait_begin(&self, target: &Target, now: Instant) -> Result<WaitBegin, BackendError> {
        const VERB: &str = "Tasks.Wait";
        let id = target.as_str();
        self.task_call_record(VERB, id, now)?;
        let task = self.tasks.get(id).ok_or_else(|| no_task(VERB, id))?;
        Ok(match task.proc {
            Proc::Stopped(exit) => WaitBegin::Exited(exit),
            _ => WaitBegin::Blocked { seq: task.seq },
        })
    }

    /// A blocked wait on task `seq` of `target`, begun in containerd incarnation `epoch`,
    /// looks again.
    pub fn wait_poll(&self, target: &Target, seq: u64, epoch: u64) -> WaitPoll {
        const VERB: &str = "Tasks.Wait";
        let id = target.as_str();
        if self.epoch != epoch {
            return WaitPoll::Done(Err(transport_error(VERB, id)));
        }
        match self.tasks.get(id) {
            Some(t) if t.seq == seq => match t.proc {
                Proc::Stopped(exit) => WaitPoll::Done(Ok(exit)),
                Proc::Running { exit_at } => WaitPoll::Until(exit_at),
                Proc::Created => WaitPoll::Until(None),
            },
            // The task is gone: deleted after its exit (the exit is the answer), or taken
            // by its shim (the stream breaks, no exit).
            _ => match self.exit_of_task.get(&seq).map(|i| &self.exits[*i]) {
                Some(e) if !e.shim_died => {
                    WaitPoll::Done(Ok(ExitStatus::real(e.code, e.exited_at)))
                }
                _ => WaitPoll::Done(Err(ttrpc_closed(VERB, id))),
            },
        }
    }

    /// containerd goes down now for `down_for` (its shims and processes live on); every
    /// stream of the old incarnation breaks.
    pub fn restart(&mut self, down_for: std::time::Duration, now: Instant) -> Restart {
        self.settle(now);
        self.epoch += 1;
        let up = now + down_for;
        let up = self.down_until.map_or(up, |d| d.max(up));
        self.down_until = Some(up);
        // containerd cleans up after dead shims while loading its plugins.
        for until in self.dying.values_mut() {
            *until = (*until).min(up);
        }
        for shim in self.shims.values_mut() {
            if let Some(until) = shim.cleanup_until.as_mut() {
                *until = (*until).min(up);
            }
        }
        let r = Restart {
            at: self.clock.wall_of(now),
            up_at: self.clock.wall_of(up),
        };
        self.restarts.push(r);
        r
    }

    /// The pod's shim dies now: every task of the pod is gone (live ones killed, stopped
    /// ones' statuses lost).
    pub fn kill_shim(&mut self, pod: &SandboxId, now: Instant) -> Result<ShimDeath, HookError> {
        self.settle(now);
        let seq = match self.shims.get(pod) {
            Some(s) if s.state == ShimState::Alive => s.seq,
            _ => return Err(HookError::NoLiveShim { pod: pod.clone() }),
        };
        let until = if self.is_up(now) {
            now + self.cfg.shim_cleanup
        } else {
            self.down_until.unwrap_or(now)
        };
        let ids: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.shim_key == *pod)
            .map(|(id, _)| id.clone())
            .collect();
        let mut death = ShimDeath {
            pod: pod.clone(),
            shim: seq,
            at: self.clock.wall_of(now),
            killed: Vec::new(),
            lost: Vec::new(),
        };
        for id in ids {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            let target = task.target.clone();
            match task.proc {
                Proc::Stopped(_) => {
                    if let Some(i) = self.exit_of_task.get(&task.seq) {
                        self.exits[*i].shim_died = true;
                    }
                    death.lost.push(target);
                }
                _ => {
                    self.finish(&id, KILLED, now, ExitCause::ShimDied, true);
                    death.killed.push(target);
                }
            }
            if let Some(task) = self.tasks.remove(&id) {
                self.drop_execs_of_task(task.seq);
            }
            self.dying.insert(id, until);
        }
        if let Some(shim) = self.shims.get_mut(pod) {
            shim.state = ShimState::Died { at: death.at };
            shim.cleanup_until = Some(until);
        }
        self.shim_deaths.push(death.clone());
        Ok(death)
    }

    /// The running process of `target` exits with `code` now.
    pub fn exit_now(
        &mut self,
        target: &Target,
        code: i32,
        now: Instant,
    ) -> Result<RealExit, HookError> {
        self.settle(now);
        let id = target.as_str();
        match self.tasks.get(id).map(|t| t.proc) {
            Some(Proc::Running { .. }) => {}
            Some(other) => {
                return Err(HookError::NotRunning {
                    id: id.to_owned(),
                    state: format!("{other:?}"),
                });
            }
            None => return Err(HookError::NoTask { id: id.to_owned() }),
        }
        self.finish(id, code, now, ExitCause::ExitNow, false)
            .ok_or_else(|| HookError::NoTask { id: id.to_owned() })
    }

    /// What chaos can hit now: pods with a live shim, running CRI containers.
    pub fn chaos_candidates(&self) -> ChaosCandidates {
        ChaosCandidates {
            pods: self
                .shims
                .iter()
                .filter(|(_, s)| s.state == ShimState::Alive)
                .map(|(p, _)| p.clone())
                .collect(),
            running: self
                .tasks
                .values()
                .filter(|t| {
                    matches!(t.target, Target::Container(_))
                        && matches!(t.proc, Proc::Running { .. })
                })
                .map(|t| t.target.clone())
                .collect(),
        }
    }

    /// What is true of one containerd id now (call [`Model::settle`] first): cheaper than a
    /// whole [`Truth`] snapshot.
    pub fn truth_of(&self, id: &str) -> ObjectTruth {
        let record = self.records.get(id);
        ObjectTruth {
            record: record.is_some(),
            record_resources: record.and_then(|r| r.resources.clone()),
            task: self.tasks.get(id).map(|t| self.task_truth(id, t)),
            exits: self
                .exits
                .iter()
                .filter(|e| e.target.as_str() == id)
                .cloned()
                .collect(),
            signals: self
                .signals
                .iter()
                .filter(|s| s.target.as_str() == id)
                .cloned()
                .collect(),
        }
    }

    fn task_truth(&self, id: &str, t: &Task) -> TaskTruth {
        let exit_due = match t.proc {
            Proc::Running { exit_at } => exit_at.map(|at| self.clock.wall_of(at)),
            _ => None,
        };
        TaskTruth {
            target: t.target.clone(),
            task: t.seq,
            pod: t.pod.clone(),
            shim: t.shim,
            pid: t.pid,
            state: state_of(t),
            started_at: t.started_at,
            exit_due,
            orphaned: !self.records.contains_key(id),
            plan: t.plan,
            resources: t.resources.clone(),
        }
    }

    /// Every real exit so far.
    pub fn exits(&self) -> &[RealExit] {
        &self.exits
    }

    /// A snapshot of the truth at `now` (call [`Model::settle`] first).
    pub fn truth(&self, now: Instant) -> Truth {
        let tasks = self
            .tasks
            .iter()
            .map(|(id, t)| (id.clone(), self.task_truth(id, t)))
            .collect();
        let shims = self
            .shims
            .iter()
            .map(|(pod, s)| {
                let held = self
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.shim_key == *pod && t.shim == s.seq)
                    .map(|(id, _)| id.clone())
                    .collect();
                (
                    pod.clone(),
                    ShimTruth {
                        shim: s.seq,
                        started_at: s.started_at,
                        state: s.state,
                        tasks: held,
                    },
                )
            })
            .collect();
        Truth {
            now: self.clock.wall_of(now),
            containerd_up: self.is_up(now),
            restarts: self.restarts.clone(),
            records: self.records.clone(),
            tasks,
            shims,
            exits: self.exits.clone(),
            shim_deaths: self.shim_deaths.clone(),
            signals: self.signals.clone(),
            execs: self.exec_truth(),
        }
    }
}

fn state_name(p: Proc) -> &'static str {
    match p {
        Proc::Created => "created",
        Proc::Running { .. } => "running",
        Proc::Stopped(_) => "stopped",
    }
}

fn state_of(t: &Task) -> TaskState {
    match t.proc {
        Proc::Created => TaskState::Created { pid: t.pid },
        Proc::Running { .. } => TaskState::Running { pid: t.pid },
        Proc::Stopped(exit) => TaskState::Stopped(exit),
    }
}
