//! A deterministic in-memory node ([`FakeNode`]) for driving the machine in tests, fuzz
//! targets and benchmarks (feature `testing`): a fake containerd (records, tasks, waits), a
//! durable checkpoint map, a virtual clock, fault injection ([`CallFault`]) and a readable
//! transcript.
//!
//! It plays containerd the way it was measured (docs/containerd-behaviour.md §9): waits
//! return a stored exit at once, Kill on a finished task is NotFound, deleting a record
//! whose task lives orphans the task, a containerd restart breaks every wait.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use crate::error::CommandError;
use crate::ids::{ContainerId, ExecId, OpId, RequestId, SandboxId};
use crate::image::{ImageRecord, resolve_image};
use crate::io::{
    BackendError, BackendErrorKind, Call, CallResult, Command, Effect, ExecOutput, Now,
    PersistAction, PersistError, ResourcesOf, Response, Target, TaskState,
};
use crate::machine::{Config, Machine};
use crate::meta::{ContainerConfig, ContainerMeta, SandboxConfig, SandboxMeta};
use crate::recovery::{CheckpointProblem, RecoveredContainer, RecoveredSandbox, RecoveryInput};
use crate::status::{ExitStatus, Resources, Status};

/// Wall clock at mono 0 in every [`FakeNode`] (2026-01-01T00:00:00Z).
pub const WALL_BASE: i64 = 1_767_225_600_000_000_000;

/// A fake task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeTask {
    /// Created, not started.
    Created(u32),
    /// Running.
    Running(u32),
    /// Exited, not yet deleted.
    Stopped(ExitStatus),
}

/// A fake exec process, from `StartExec` to `DeleteExec`. What it does follows its command
/// (`echo ARGS` prints them, `sh -c 'exit N'` exits N, `sleep ...` runs until killed, anything
/// else exits 0 silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeExec {
    /// Its command.
    pub cmd: Vec<String>,
    /// Its output cap.
    pub cap: usize,
    /// Its exit code once it has exited.
    pub exit: Option<i32>,
}

impl FakeExec {
    /// What it prints on stdout and stderr (uncapped).
    pub fn planned_output(cmd: &[String]) -> (Vec<u8>, Vec<u8>) {
        match cmd.first().map(String::as_str) {
            Some("echo") => (format!("{}\n", cmd[1..].join(" ")).into_bytes(), Vec::new()),
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// The code it exits with on its own, or `None` if it runs until killed.
    pub fn planned_exit(cmd: &[String]) -> Option<i32> {
        let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["sleep", ..] => None,
            ["sh", "-c", script] => Some(
                script
                    .strip_prefix("exit ")
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0),
            ),
            ["false"] => Some(1),
            _ => Some(0),
        }
    }

    fn output(&self, code: i32) -> ExecOutput {
        let (mut stdout, mut stderr) = FakeExec::planned_output(&self.cmd);
        stdout.truncate(self.cap);
        stderr.truncate(self.cap);
        ExecOutput {
            exit_code: code,
            stdout,
            stderr,
        }
    }
}

/// How a fault queued with [`FakeNode::fail_next`] hits the next call of its verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFault {
    /// Fail before the call takes effect.
    Before(BackendErrorKind),
    /// The call takes effect, but its reply is lost (reported as Unavailable).
    ReplyLost,
}

/// The machine under test and everything it talks to, in memory: the fake containerd, the
/// checkpoint disk, the clock. Effects are carried out on request, one at a time, so a test
/// decides every interleaving.
#[derive(Debug)]
pub struct FakeNode {
    /// The machine under test.
    pub machine: Machine,
    /// The virtual clock.
    pub now: Now,
    /// Durable checkpoints.
    pub disk: BTreeMap<ContainerId, Status>,
    /// What berth made durable or found, in order: a write acknowledged (`Some`), each
    /// record recovery loads (`Some`), a record removed (`None`, by berth or by the orphan
    /// sweep). A failed write that landed anyway counts only once recovery loads it.
    pub disk_log: Vec<(ContainerId, Option<Status>)>,
    /// containerd records and the metadata stored with them.
    pub records: BTreeMap<Target, RecordMeta>,
    /// Tasks by owner.
    pub tasks: BTreeMap<Target, FakeTask>,
    /// Tasks whose record was deleted while they lived (leaks).
    pub orphans: Vec<Target>,
    /// Effects emitted and not yet carried out.
    pub pending: Vec<Effect>,
    waits: Vec<(OpId, Target)>,
    /// Exec processes (live or exited) not yet deleted, by task and exec id.
    pub execs: BTreeMap<(Target, ExecId), FakeExec>,
    exec_waits: Vec<(OpId, Target, ExecId)>,
    /// Replies received.
    pub replies: BTreeMap<RequestId, Result<Response, CommandError>>,
    /// Readable log of everything that happened.
    pub transcript: Vec<String>,
    faults: BTreeMap<&'static str, VecDeque<CallFault>>,
    persist_faults: usize,
    /// Of the failing writes, how many land anyway (a rename before a failed dir fsync).
    persist_faults_applied: usize,
    /// Real exits of started processes, by owner, in order (truth for checks).
    pub exit_history: BTreeMap<Target, Vec<ExitStatus>>,
    /// Exits of created, never started tasks that were killed (`runc init` ended).
    pub init_exits: BTreeMap<Target, Vec<ExitStatus>>,
    /// Processes that ignore SIGTERM (like a shell as PID 1 without a trap).
    pub ignores_term: BTreeSet<Target>,
    /// Owners whose shim was killed (their exit codes are lost for good).
    pub shim_killed: BTreeSet<Target>,
    /// Limits written into records by `Containers.Update` (the record's OCI spec).
    pub record_resources: BTreeMap<Target, Resources>,
    /// Limits of live tasks: their record's at `Tasks.Create`, then every `Tasks.Update`.
    pub task_resources: BTreeMap<Target, Resources>,
    /// Log reopens that succeeded, by owner.
    pub log_reopens: BTreeMap<Target, usize>,
    /// containerd's image store: names and the image IDs they point at
    /// ([`default_images`] to begin with).
    pub images: Vec<ImageRecord>,
    next_pid: u32,
    next_req: u64,
    /// Log every step into `transcript`.
    pub logging: bool,
}

/// What a containerd record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordMeta {
    /// A container's metadata.
    Container(Box<ContainerMeta>),
    /// A sandbox's metadata.
    Sandbox(Box<SandboxMeta>),
}

impl Default for FakeNode {
    fn default() -> Self {
        FakeNode::new()
    }
}

impl FakeNode {
    /// An empty node at mono 0.
    pub fn new() -> Self {
        FakeNode::with_config(Config::default())
    }

    /// An empty node whose machine uses `config`.
    pub fn with_config(config: Config) -> Self {
        let now = Now::at(WALL_BASE, Duration::ZERO);
        FakeNode {
            machine: Machine::new(config, now),
            now,
            disk: BTreeMap::new(),
            disk_log: Vec::new(),
            records: BTreeMap::new(),
            tasks: BTreeMap::new(),
            orphans: Vec::new(),
            pending: Vec::new(),
            waits: Vec::new(),
            execs: BTreeMap::new(),
            exec_waits: Vec::new(),
            replies: BTreeMap::new(),
            transcript: Vec::new(),
            faults: BTreeMap::new(),
            persist_faults: 0,
            persist_faults_applied: 0,
            exit_history: BTreeMap::new(),
            init_exits: BTreeMap::new(),
            ignores_term: BTreeSet::new(),
            shim_killed: BTreeSet::new(),
            record_resources: BTreeMap::new(),
            task_resources: BTreeMap::new(),
            log_reopens: BTreeMap::new(),
            images: default_images(),
            next_pid: 100,
            next_req: 1,
            logging: true,
        }
    }

    fn log(&mut self, line: String) {
        if self.logging {
            self.transcript.push(line);
        }
    }

    /// The transcript as one string.
    pub fn transcript_text(&self) -> String {
        let mut s = String::new();
        for line in &self.transcript {
            let _ = writeln!(s, "{line}");
        }
        s
    }

    /// Milliseconds since the node began, for readable timestamps.
    pub fn rel(&self, wall: i64) -> String {
        if wall == 0 {
            "0".to_owned()
        } else {
            format!("+{}ms", (wall - WALL_BASE) / 1_000_000)
        }
    }

    /// One status as a short line.
    pub fn render_status(&self, s: &Status) -> String {
        let mut out = format!(
            "{} pid={} created={} started={} finished={} exit={} reason={:?}",
            s.state().cri_name().trim_start_matches("CONTAINER_"),
            s.pid,
            self.rel(s.created_at),
            self.rel(s.started_at),
            self.rel(s.finished_at),
            s.exit_code,
            s.reason
        );
        if s.unknown {
            out.push_str(" unknown");
        }
        if let Some(r) = &s.resources {
            let _ = write!(out, " memory={}MiB", r.memory_limit_in_bytes >> 20);
        }
        out
    }

    /// Queues a fault for the next call with this verb (e.g. "Tasks.Start").
    pub fn fail_next(&mut self, verb: &'static str, fault: CallFault) {
        self.faults.entry(verb).or_default().push_back(fault);
    }

    /// Makes the next `n` checkpoint writes or deletes fail.
    pub fn fail_persists(&mut self, n: usize) {
        self.persist_faults = n;
        self.persist_faults_applied = 0;
    }

    /// Makes the next `n` checkpoint writes or deletes fail after taking effect (the rename
    /// landed, the directory fsync failed): the disk holds the new record, the machine hears
    /// of a failure.
    pub fn fail_persists_applied(&mut self, n: usize) {
        self.persist_faults = n;
        self.persist_faults_applied = n;
    }

    /// Sends a command; returns its request id.
    pub fn command(&mut self, command: Command) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        let line = format!("{} {req} {}", self.clock(), describe_command(&command));
        self.log(line);
        self.machine.handle_command(req, command, self.now);
        self.collect();
        req
    }

    fn clock(&self) -> String {
        let ms = self.now.mono.as_millis();
        format!("[{}.{:03}s]", ms / 1000, ms % 1000)
    }

    /// Moves emitted effects into `pending`, logging and answering replies.
    pub fn collect(&mut self) {
        while let Some(effect) = self.machine.poll_effect() {
            match effect {
                Effect::Reply { req, result } => {
                    let line = match &result {
                        Ok(r) => format!("  reply {req}: ok {r:?}"),
                        Err(e) => format!("  reply {req}: error ({:?}) {e}", e.code()),
                    };
                    self.log(line);
                    self.replies.insert(req, result);
                }
                other => self.pending.push(other),
            }
        }
    }

    /// Carries out pending effect number `i`.
    pub fn execute(&mut self, i: usize) {
        let effect = self.pending.remove(i);
        match effect {
            Effect::Call { op, call } => self.run_call(op, call),
            Effect::Persist { op, id, action } => self.run_persist(op, id, action),
            Effect::Reply { .. } => {}
        }
        self.collect();
    }

    /// Carries out every pending effect, first come first served, until none is left
    /// (long-lived waits stay parked until their task exits).
    pub fn settle(&mut self) {
        let mut guard = 0;
        while !self.pending.is_empty() {
            self.execute(0);
            guard += 1;
            assert!(guard < 100_000, "the machine does not settle");
        }
    }

    /// Advances the clock and fires due timers.
    pub fn advance(&mut self, by: Duration) {
        self.now = Now::at(WALL_BASE, self.now.mono + by);
        self.machine.handle_timeout(self.now);
        self.collect();
    }

    /// Advances to the machine's next timer, if any; returns false if none is armed.
    pub fn advance_to_next_timer(&mut self) -> bool {
        match self.machine.poll_timeout() {
            Some(at) => {
                let by = at.saturating_sub(self.now.mono);
                self.advance(by);
                true
            }
            None => false,
        }
    }

    fn take_fault(&mut self, verb: &'static str) -> Option<CallFault> {
        self.faults.get_mut(verb).and_then(VecDeque::pop_front)
    }

    fn run_call(&mut self, op: OpId, call: Call) {
        let verb = call.verb();
        let target = call.target();
        if let Call::WaitTask(_) = &call
            && self.faults.get(verb).is_none_or(VecDeque::is_empty)
        {
            match self.tasks.get(&target) {
                Some(FakeTask::Stopped(exit)) => {
                    let exit = *exit;
                    self.feed_call(op, verb, &target, Ok(CallResult::Exited(exit)));
                }
                Some(_) => {
                    self.log(format!("  call {op} {verb} {target} -> (waiting)"));
                    self.waits.push((op, target));
                }
                None => {
                    let e = self.err(BackendErrorKind::NotFound, verb, &target, "task not found");
                    self.feed_call(op, verb, &target, Err(e));
                }
            }
            return;
        }
        if let Call::WaitExec { exec_id, .. } = &call
            && self.faults.get(verb).is_none_or(VecDeque::is_empty)
        {
            let key = (target.clone(), exec_id.clone());
            match self.execs.get(&key) {
                Some(FakeExec {
                    exit: Some(code), ..
                }) => {
                    let out = self.execs[&key].output(*code);
                    self.feed_call(op, verb, &target, Ok(CallResult::ExecExited(Box::new(out))));
                }
                Some(_) => {
                    self.log(format!(
                        "  call {op} {verb} {target} exec {exec_id} -> (waiting)"
                    ));
                    self.exec_waits.push((op, target, exec_id.clone()));
                }
                None => {
                    let e = self.err(
                        BackendErrorKind::NotFound,
                        verb,
                        &target,
                        "process not found",
                    );
                    self.feed_call(op, verb, &target, Err(e));
                }
            }
            return;
        }
        let result = match self.take_fault(verb) {
            Some(CallFault::Before(kind)) => Err(self.err(kind, verb, &target, "injected fault")),
            Some(CallFault::ReplyLost) => {
                let _ = self.apply(&call);
                Err(self.err(BackendErrorKind::Unavailable, verb, &target, "reply lost"))
            }
            None => self.apply(&call),
        };
        self.feed_call(op, verb, &target, result);
    }

    fn feed_call(
        &mut self,
        op: OpId,
        verb: &str,
        target: &Target,
        result: Result<CallResult, BackendError>,
    ) {
        let shown = match &result {
            Ok(CallResult::Done) => "ok".to_owned(),
            Ok(CallResult::Pid(p)) => format!("ok pid {p}"),
            Ok(CallResult::Exited(e)) => format!("exited {} at {}", e.code, self.rel(e.exited_at)),
            Ok(CallResult::Task(t)) => format!("{t:?}"),
            Ok(CallResult::Image(i)) => format!("ok {} ({})", i.id, i.name),
            Ok(CallResult::ExecExited(o)) => format!(
                "exec exited {} stdout={:?} stderr={:?}",
                o.exit_code,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Ok(CallResult::Swept(n)) => format!("swept {n}"),
            Err(e) => format!("error {}: {}", e.kind, e.message),
        };
        self.log(format!("  call {op} {verb} {target} -> {shown}"));
        self.machine.handle_call(op, result, self.now);
    }

    fn err(&self, kind: BackendErrorKind, verb: &str, target: &Target, msg: &str) -> BackendError {
        BackendError::new(kind, verb, target.as_str(), msg)
    }

    fn pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid
    }

    /// Applies a call to the fake containerd.
    fn apply(&mut self, call: &Call) -> Result<CallResult, BackendError> {
        let verb = call.verb();
        let target = call.target();
        let not_found =
            |w: &FakeNode, what: &str| Err(w.err(BackendErrorKind::NotFound, verb, &target, what));
        match call {
            Call::ResolveImage { image, .. } => resolve_image(image, &self.images)
                .map(|r| CallResult::Image(Box::new(r)))
                .map_err(|e| e.to_backend(verb, target.as_str())),
            Call::CreateContainer(meta) => {
                if self.records.contains_key(&target) {
                    return Err(self.err(
                        BackendErrorKind::AlreadyExists,
                        verb,
                        &target,
                        "already exists",
                    ));
                }
                // A new incarnation of the id: its history starts afresh.
                self.exit_history.remove(&target);
                self.init_exits.remove(&target);
                self.shim_killed.remove(&target);
                match &meta.config.resources {
                    Some(r) => self.record_resources.insert(target.clone(), r.clone()),
                    None => self.record_resources.remove(&target),
                };
                self.records
                    .insert(target, RecordMeta::Container(meta.clone()));
                Ok(CallResult::Done)
            }
            Call::CreateSandbox(meta) => {
                if self.records.contains_key(&target) {
                    return Err(self.err(
                        BackendErrorKind::AlreadyExists,
                        verb,
                        &target,
                        "already exists",
                    ));
                }
                self.records
                    .insert(target, RecordMeta::Sandbox(meta.clone()));
                Ok(CallResult::Done)
            }
            Call::DeleteContainer(_) => {
                if self.records.remove(&target).is_none() {
                    return not_found(self, "container not found");
                }
                if let Some(task) = self.tasks.remove(&target)
                    && !matches!(task, FakeTask::Stopped(_))
                {
                    self.orphans.push(target);
                }
                Ok(CallResult::Done)
            }
            Call::CreateTask(_) => {
                if !self.records.contains_key(&target) {
                    return not_found(self, "container not found");
                }
                if self.tasks.contains_key(&target) {
                    return Err(self.err(
                        BackendErrorKind::AlreadyExists,
                        verb,
                        &target,
                        "task already exists",
                    ));
                }
                let pid = self.pid();
                match self.record_resources.get(&target).cloned() {
                    Some(r) => self.task_resources.insert(target.clone(), r),
                    None => self.task_resources.remove(&target),
                };
                self.tasks.insert(target, FakeTask::Created(pid));
                Ok(CallResult::Pid(pid))
            }
            Call::StartTask(_) => match self.tasks.get(&target).copied() {
                None => not_found(self, "task not found"),
                Some(FakeTask::Created(pid)) => {
                    self.tasks.insert(target, FakeTask::Running(pid));
                    Ok(CallResult::Pid(pid))
                }
                Some(_) => Err(self.err(
                    BackendErrorKind::Other,
                    verb,
                    &target,
                    "cannot start a running or stopped process",
                )),
            },
            // A wait with a fault queued: the stream breaks.
            Call::WaitTask(_) => Err(self.err(
                BackendErrorKind::Unavailable,
                verb,
                &target,
                "stream broken",
            )),
            Call::KillTask { signal, .. } => match self.tasks.get(&target).copied() {
                None => not_found(self, "task not found"),
                Some(FakeTask::Stopped(_)) => not_found(self, "process already finished"),
                Some(_) => {
                    if *signal == crate::signal::SIGKILL {
                        self.end_task(&target, 137);
                    } else if !self.ignores_term.contains(&target) {
                        self.end_task(&target, 128 + signal);
                    }
                    Ok(CallResult::Done)
                }
            },
            Call::DeleteTask { kill, .. } => match self.tasks.get(&target).copied() {
                None => not_found(self, "task not found"),
                Some(FakeTask::Stopped(_)) => {
                    self.tasks.remove(&target);
                    self.drop_execs(&target, "process deleted with its task");
                    Ok(CallResult::Done)
                }
                Some(_) if *kill => {
                    self.end_task(&target, 137);
                    self.tasks.remove(&target);
                    self.drop_execs(&target, "process deleted with its task");
                    Ok(CallResult::Done)
                }
                Some(_) => Err(self.err(
                    BackendErrorKind::FailedPrecondition,
                    verb,
                    &target,
                    "task must be stopped before deletion",
                )),
            },
            Call::TaskStatus(_) => Ok(CallResult::Task(match self.tasks.get(&target) {
                None => TaskState::NotFound,
                Some(FakeTask::Created(pid)) => TaskState::Created { pid: *pid },
                Some(FakeTask::Running(pid)) => TaskState::Running { pid: *pid },
                Some(FakeTask::Stopped(e)) => TaskState::Stopped(*e),
            })),
            Call::UpdateResources {
                of: ResourcesOf::Record,
                resources,
                ..
            } => {
                if !self.records.contains_key(&target) {
                    return not_found(self, "container not found");
                }
                self.record_resources.insert(target, (**resources).clone());
                Ok(CallResult::Done)
            }
            Call::UpdateResources {
                of: ResourcesOf::Task,
                resources,
                ..
            } => match self.tasks.get(&target) {
                None => not_found(self, "task not found"),
                Some(FakeTask::Stopped(_)) => not_found(self, "process already finished"),
                Some(_) => {
                    self.task_resources.insert(target, (**resources).clone());
                    Ok(CallResult::Done)
                }
            },
            Call::StartExec { exec, .. } => {
                match self.tasks.get(&target) {
                    None => return not_found(self, "task not found"),
                    Some(FakeTask::Running(_)) => {}
                    Some(_) => {
                        return Err(self.err(
                            BackendErrorKind::FailedPrecondition,
                            verb,
                            &target,
                            "cannot exec in a stopped state",
                        ));
                    }
                }
                let key = (target.clone(), exec.exec_id.clone());
                if self.execs.contains_key(&key) {
                    return Err(self.err(
                        BackendErrorKind::AlreadyExists,
                        verb,
                        &target,
                        "id already in use",
                    ));
                }
                self.execs.insert(
                    key,
                    FakeExec {
                        cmd: exec.cmd.clone(),
                        cap: exec.output_cap,
                        exit: FakeExec::planned_exit(&exec.cmd),
                    },
                );
                let pid = self.pid();
                Ok(CallResult::Pid(pid))
            }
            // A wait with a fault queued: the stream breaks.
            Call::WaitExec { .. } => Err(self.err(
                BackendErrorKind::Unavailable,
                verb,
                &target,
                "stream broken",
            )),
            Call::KillExec {
                exec_id, signal, ..
            } => {
                let key = (target.clone(), exec_id.clone());
                match self.execs.get(&key).map(|e| e.exit) {
                    None => not_found(self, "process not found"),
                    Some(Some(_)) => not_found(self, "process already finished"),
                    Some(None) => {
                        self.end_exec(&key, 128 + signal);
                        Ok(CallResult::Done)
                    }
                }
            }
            Call::DeleteExec { exec_id, .. } => {
                let key = (target.clone(), exec_id.clone());
                match self.execs.get(&key).map(|e| e.exit) {
                    None => not_found(self, "process not found"),
                    Some(exit) => {
                        if exit.is_none() {
                            self.end_exec(&key, 137);
                        }
                        self.execs.remove(&key);
                        Ok(CallResult::Done)
                    }
                }
            }
            Call::SweepExecs(_) => {
                let keys: Vec<_> = self
                    .execs
                    .keys()
                    .filter(|(t, e)| *t == target && e.is_berths())
                    .cloned()
                    .collect();
                for key in &keys {
                    if self.execs.get(key).is_some_and(|e| e.exit.is_none()) {
                        self.end_exec(key, 137);
                    }
                    self.execs.remove(key);
                }
                Ok(CallResult::Swept(
                    u32::try_from(keys.len()).unwrap_or(u32::MAX),
                ))
            }
            Call::ReopenLog(_) => match self.tasks.get(&target) {
                Some(FakeTask::Running(_)) => {
                    *self.log_reopens.entry(target).or_default() += 1;
                    Ok(CallResult::Done)
                }
                _ => Err(self.err(
                    BackendErrorKind::FailedPrecondition,
                    verb,
                    &target,
                    "no log is being written (no log path, or no task)",
                )),
            },
        }
    }

    fn run_persist(&mut self, op: OpId, id: ContainerId, action: PersistAction) {
        let shown = match &action {
            PersistAction::Write(s) => format!("write {{{}}}", self.render_status(s)),
            PersistAction::Delete => "delete".to_owned(),
        };
        let fail = self.persist_faults > 0;
        let apply = !fail || self.persist_faults_applied > 0;
        if fail {
            self.persist_faults -= 1;
            self.persist_faults_applied = self.persist_faults_applied.saturating_sub(1);
        }
        if apply {
            match action {
                PersistAction::Write(s) => {
                    if !fail {
                        self.disk_log.push((id.clone(), Some(s.clone())));
                    }
                    self.disk.insert(id.clone(), s);
                }
                PersistAction::Delete => {
                    self.disk_log.push((id.clone(), None));
                    self.disk.remove(&id);
                }
            }
        }
        let result = match (fail, apply) {
            (false, _) => Ok(()),
            (true, false) => Err(PersistError {
                id: id.clone(),
                message: "no space left on device (injected)".into(),
            }),
            (true, true) => Err(PersistError {
                id: id.clone(),
                message: "fsync directory: input/output error (injected; the rename landed)".into(),
            }),
        };
        let outcome = match &result {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error: {}", e.message),
        };
        self.log(format!(
            "  persist {op} container {id} {shown} -> {outcome}"
        ));
        self.machine.handle_persisted(op, result, self.now);
    }

    /// Exec process `exec_id` of `target` ends with `code` now (a `sleep` finishing); its
    /// wait returns.
    pub fn exit_exec(&mut self, target: &Target, exec_id: &ExecId, code: i32) {
        let key = (target.clone(), exec_id.clone());
        if self.execs.get(&key).is_some_and(|e| e.exit.is_none()) {
            self.end_exec(&key, code);
        }
    }

    /// Exec processes alive now (started, not exited).
    pub fn live_execs(&self) -> Vec<(Target, ExecId)> {
        self.execs
            .iter()
            .filter(|(_, e)| e.exit.is_none())
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn end_exec(&mut self, key: &(Target, ExecId), code: i32) {
        let Some(e) = self.execs.get_mut(key) else {
            return;
        };
        if e.exit.is_some() {
            return;
        }
        e.exit = Some(code);
        let out = e.output(code);
        self.log(format!(
            "{} exec {} of {} exits {code}",
            self.clock(),
            key.1,
            key.0
        ));
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.exec_waits)
            .into_iter()
            .partition(|(_, t, x)| *t == key.0 && *x == key.1);
        self.exec_waits = rest;
        for (op, t, _) in done {
            self.feed_call(
                op,
                "Tasks.Wait",
                &t,
                Ok(CallResult::ExecExited(Box::new(out.clone()))),
            );
        }
        self.collect();
    }

    /// The exec processes of `target` are gone (their task was deleted, their shim died):
    /// waits on them break.
    fn drop_execs(&mut self, target: &Target, why: &str) {
        self.execs.retain(|(t, _), _| t != target);
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.exec_waits)
            .into_iter()
            .partition(|(_, t, _)| t == target);
        self.exec_waits = rest;
        for (op, t, _) in done {
            let e = self.err(BackendErrorKind::Unavailable, "Tasks.Wait", &t, why);
            self.feed_call(op, "Tasks.Wait", &t, Err(e));
        }
    }

    /// The task's process exits on its own with `code` now (only a running process can);
    /// waits return.
    pub fn exit_task(&mut self, target: &Target, code: i32) {
        if matches!(self.tasks.get(target), Some(FakeTask::Running(_))) {
            self.end_task(target, code);
        }
    }

    /// Ends a created or running task with `code` (a signal, or the process exiting).
    fn end_task(&mut self, target: &Target, code: i32) {
        let Some(task) = self.tasks.get(target).copied() else {
            return;
        };
        let exit = ExitStatus::real(code, self.now.wall);
        let history = match task {
            FakeTask::Stopped(_) => return,
            FakeTask::Running(_) => &mut self.exit_history,
            // Killing a created task ends `runc init`: containerd reports an exit, but no
            // process of the container ever ran.
            FakeTask::Created(_) => &mut self.init_exits,
        };
        history.entry(target.clone()).or_default().push(exit);
        self.tasks.insert(target.clone(), FakeTask::Stopped(exit));
        self.log(format!("{} process of {target} exits {code}", self.clock()));
        // Its exec processes share its pid namespace: they die with it.
        let live: Vec<_> = self
            .execs
            .iter()
            .filter(|((t, _), e)| t == target && e.exit.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for key in live {
            self.end_exec(&key, 137);
        }
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waits)
            .into_iter()
            .partition(|(_, t)| t == target);
        self.waits = rest;
        for (op, t) in done {
            self.feed_call(op, "Tasks.Wait", &t, Ok(CallResult::Exited(exit)));
        }
        self.collect();
    }

    /// containerd restarts: every in-flight wait breaks with Unavailable. Tasks live on.
    pub fn restart_containerd(&mut self) {
        self.log(format!("{} containerd restarts", self.clock()));
        for (op, t) in std::mem::take(&mut self.waits) {
            let e = self.err(
                BackendErrorKind::Unavailable,
                "Tasks.Wait",
                &t,
                "transport error",
            );
            self.feed_call(op, "Tasks.Wait", &t, Err(e));
        }
        for (op, t, _) in std::mem::take(&mut self.exec_waits) {
            let e = self.err(
                BackendErrorKind::Unavailable,
                "Tasks.Wait",
                &t,
                "transport error",
            );
            self.feed_call(op, "Tasks.Wait", &t, Err(e));
        }
        self.collect();
    }

    /// The shim of a target dies: its task is gone (NotFound), waits break.
    pub fn kill_shim(&mut self, target: &Target) {
        self.log(format!("{} shim of {target} killed", self.clock()));
        if self.tasks.remove(target).is_some() {
            self.shim_killed.insert(target.clone());
        }
        self.drop_execs(target, "ttrpc: closed");
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waits)
            .into_iter()
            .partition(|(_, t)| t == target);
        self.waits = rest;
        for (op, t) in done {
            let e = self.err(
                BackendErrorKind::Unavailable,
                "Tasks.Wait",
                &t,
                "ttrpc: closed",
            );
            self.feed_call(op, "Tasks.Wait", &t, Err(e));
        }
        self.collect();
    }

    /// berth crashes (everything in memory and every effect not carried out is lost) and
    /// recovers from the durable checkpoints and containerd's truth. `observe` can replace
    /// an observation (to inject errors).
    pub fn crash_and_recover(
        &mut self,
        observe: impl Fn(&Target) -> Option<Result<TaskState, BackendError>>,
    ) {
        self.log(format!("{} berth crashes and recovers", self.clock()));
        self.pending.clear();
        self.waits.clear();
        self.exec_waits.clear();
        let input = self.recovery_input(observe);
        // The driver's orphan sweep: checkpoints without a containerd record go.
        let records = &self.records;
        let log = &mut self.disk_log;
        self.disk.retain(|id, _| {
            let known = records.contains_key(&Target::Container(id.clone()));
            if !known {
                log.push((id.clone(), None));
            }
            known
        });
        for (id, s) in &self.disk {
            self.disk_log.push((id.clone(), Some(s.clone())));
        }
        self.machine = Machine::recover(self.machine.config().clone(), input, self.now);
        self.collect();
    }

    /// The recovery input a driver would build now.
    pub fn recovery_input(
        &self,
        observe: impl Fn(&Target) -> Option<Result<TaskState, BackendError>>,
    ) -> RecoveryInput {
        let mut input = RecoveryInput::default();
        for (target, meta) in &self.records {
            let task = observe(target).unwrap_or_else(|| {
                Ok(match self.tasks.get(target) {
                    None => TaskState::NotFound,
                    Some(FakeTask::Created(pid)) => TaskState::Created { pid: *pid },
                    Some(FakeTask::Running(pid)) => TaskState::Running { pid: *pid },
                    Some(FakeTask::Stopped(e)) => TaskState::Stopped(*e),
                })
            });
            match meta {
                RecordMeta::Sandbox(m) => input.sandboxes.push(RecoveredSandbox {
                    meta: (**m).clone(),
                    task,
                }),
                RecordMeta::Container(m) => input.containers.push(RecoveredContainer {
                    meta: (**m).clone(),
                    record_created_at: WALL_BASE,
                    checkpoint: self
                        .disk
                        .get(&m.id)
                        .cloned()
                        .ok_or(CheckpointProblem::Missing),
                    task,
                }),
            }
        }
        input
    }

    /// Runs a command to completion (settling every effect) and returns its reply.
    pub fn run(&mut self, command: Command) -> Result<Response, CommandError> {
        let req = self.command(command);
        self.settle();
        self.replies
            .get(&req)
            .cloned()
            .unwrap_or_else(|| panic!("{req} got no reply:\n{}", self.transcript_text()))
    }

    /// Runs RunPodSandbox for a pod named `name`.
    pub fn run_pod(&mut self, id: &str, name: &str) -> Result<Response, CommandError> {
        self.run(Command::RunPodSandbox {
            id: SandboxId::new(id).expect("valid id"),
            config: Box::new(sandbox_config(name)),
        })
    }

    /// Runs CreateContainer of a busybox container named `name`.
    pub fn create(&mut self, id: &str, pod: &str, name: &str) -> Result<Response, CommandError> {
        self.run(Command::CreateContainer {
            id: ContainerId::new(id).expect("valid id"),
            sandbox: SandboxId::new(pod).expect("valid id"),
            config: Box::new(container_config(name)),
        })
    }

    /// Runs StartContainer.
    pub fn start(&mut self, id: &str) -> Result<Response, CommandError> {
        self.run(Command::StartContainer(
            ContainerId::new(id).expect("valid id"),
        ))
    }

    /// The machine's status of a container.
    pub fn status(&self, id: &str) -> Option<Status> {
        self.machine
            .container(&ContainerId::new(id).ok()?)
            .map(|c| c.status().clone())
    }

    /// A container target.
    pub fn ct(id: &str) -> Target {
        Target::Container(ContainerId::new(id).expect("valid id"))
    }

    /// A sandbox target.
    pub fn sb(id: &str) -> Target {
        Target::Sandbox(SandboxId::new(id).expect("valid id"))
    }
}

/// The ID of the busybox image of [`default_images`].
pub const BUSYBOX_ID: &str =
    "sha256:0b2d6e4c8f1a3b5d7e9f0a1c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";

/// The image store every [`FakeNode`] starts with: busybox under its tag and its repo digest.
pub fn default_images() -> Vec<ImageRecord> {
    vec![
        ImageRecord::new("docker.io/library/busybox:latest", BUSYBOX_ID),
        ImageRecord::new(
            "docker.io/library/busybox@sha256:5acba83a746c7608ed544dc1533b87c737a0b0fb730301639a0179f9344b1678",
            BUSYBOX_ID,
        ),
    ]
}

/// A valid sandbox config for a pod `name`.
pub fn sandbox_config(name: &str) -> SandboxConfig {
    SandboxConfig {
        name: name.into(),
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        log_directory: format!("/var/log/pods/{name}"),
        ..SandboxConfig::default()
    }
}

/// A valid container config for a container `name`.
pub fn container_config(name: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: "busybox".into(),
        log_path: format!("{name}.log"),
        ..ContainerConfig::default()
    }
}

fn describe_command(c: &Command) -> String {
    match c {
        Command::RunPodSandbox { id, config } => format!("RunPodSandbox {id} ({})", config.name),
        Command::StopPodSandbox(id) => format!("StopPodSandbox {id}"),
        Command::RemovePodSandbox(id) => format!("RemovePodSandbox {id}"),
        Command::CreateContainer {
            id,
            sandbox,
            config,
        } => {
            format!("CreateContainer {id} in {sandbox} ({})", config.name)
        }
        Command::StartContainer(id) => format!("StartContainer {id}"),
        Command::StopContainer { id, timeout } => {
            format!("StopContainer {id} timeout={}s", timeout.as_secs())
        }
        Command::RemoveContainer(id) => format!("RemoveContainer {id}"),
        Command::UpdateContainerResources { id, resources } => {
            format!(
                "UpdateContainerResources {id} memory={}MiB",
                resources.memory_limit_in_bytes >> 20
            )
        }
        Command::ReopenContainerLog(id) => format!("ReopenContainerLog {id}"),
        Command::ExecSync {
            id,
            exec_id,
            cmd,
            timeout,
        } => format!(
            "ExecSync {id} exec {exec_id} {cmd:?} timeout={}s",
            timeout.as_secs()
        ),
    }
}
