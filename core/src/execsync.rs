//! ExecSync (containerd's `ExecSync`, docs/containerd-behaviour.md §11): a command runs as
//! an exec process in a RUNNING container's task; its exit code and output are the answer.
//!
//! The core owns the exec's whole lifetime, as it owns every side effect:
//! `StartExec` → `WaitExec` (long-lived) → reply → `DeleteExec`, retried until done. Past its
//! timeout (counted from the process's start) the exec is killed (`KillExec` SIGKILL,
//! retried), and once its wait returns the answer is [`CommandError::ExecTimeout`]
//! (DeadlineExceeded). An exec takes no guard of its container: several may run at once, and
//! a stop or an exit of the container meanwhile is normal (the exec process dies with the
//! task, its wait returns).
//!
//! The promise the simulator checks: **no exec process of berth's is alive once its request
//! has been answered.** So an answer waits until the process is known to be dead: its wait
//! returned, or (a failed start whose reply may have been lost, a broken wait) its
//! `DeleteExec` — which kills a live process first — succeeded or found it gone.
//!
//! A crash of berth during an exec leaves the process in its shim; recovery sweeps the exec
//! processes of berth's out of every container whose task runs (`SweepExecs`, in the
//! background, not on recovery's critical path, retried until done). An ExecSync that
//! arrives for such a container waits for the sweep, which would otherwise kill it.

use std::time::Duration;

use crate::error::{CommandError, Guard, Operation};
use crate::ids::{ContainerId, ExecId, RequestId};
use crate::io::{
    BackendError, BackendErrorKind, Call, CallResult, ExecSpec, PersistError, Response, Target,
};
use crate::machine::{Machine, OperationStep, Timer};
use crate::record::Lane;
use crate::signal::SIGKILL;
use crate::status::ContainerState;

/// The steps of ExecSync and of recovery's exec sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecStep {
    /// `StartExec` of the exec process.
    Start { exec_id: ExecId },
    /// `WaitExec` of the exec process.
    Wait { exec_id: ExecId },
    /// `KillExec` (SIGKILL) of an exec past its timeout.
    Kill { exec_id: ExecId, attempt: u32 },
    /// `DeleteExec` of a finished (or failed) exec.
    Delete { exec_id: ExecId, attempt: u32 },
    /// Recovery's `SweepExecs` of a container whose task runs.
    Sweep { id: ContainerId, attempt: u32 },
}

/// What an exec process of berth's is doing, as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecState {
    /// Waiting for recovery's sweep of its container (which would kill it if it ran).
    Queued,
    /// Its `StartExec` is in flight.
    Starting,
    /// It runs: its `WaitExec` is in flight (past its timeout, its kill too).
    Running,
    /// Its `DeleteExec` is in flight or waiting to be retried.
    Deleting,
}

/// An ExecSync in flight: from the request to the exec process's deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub(crate) id: ExecId,
    pub(crate) container: ContainerId,
    pub(crate) cmd: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) state: ExecState,
    /// The request, until it is answered.
    pub(crate) req: Option<RequestId>,
    /// The kill past the timeout.
    pub(crate) kill: Lane,
    /// The timeout fired.
    pub(crate) timed_out: bool,
    /// An answer held back until the delete has made sure the process is dead.
    pub(crate) held: Option<Result<Response, CommandError>>,
}

impl Exec {
    /// Its id.
    pub fn exec_id(&self) -> &ExecId {
        &self.id
    }

    /// Its container.
    pub fn container(&self) -> &ContainerId {
        &self.container
    }

    /// Its command.
    pub fn cmd(&self) -> &[String] {
        &self.cmd
    }

    /// Its timeout (zero: none).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What it is doing.
    pub fn state(&self) -> ExecState {
        self.state
    }

    /// True once its request has been answered (only its delete is left).
    pub fn is_answered(&self) -> bool {
        self.req.is_none()
    }

    /// True once its timeout fired.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl OperationStep for ExecStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            ExecStep::Start { exec_id } => m.on_exec_started(exec_id, result),
            ExecStep::Wait { exec_id } => m.on_exec_waited(exec_id, result),
            ExecStep::Kill { exec_id, attempt } => m.on_exec_killed(exec_id, attempt, result),
            ExecStep::Delete { exec_id, attempt } => m.on_exec_deleted(exec_id, attempt, result),
            ExecStep::Sweep { id, attempt } => m.on_execs_swept(id, attempt, result),
        }
        None
    }

    fn on_persisted(self, _m: &mut Machine, _result: Result<(), PersistError>) -> Option<Self> {
        // Every step of an exec waits for a call result; an exec persists nothing.
        Some(self)
    }
}

impl Machine {
    /// An exec in flight, by id.
    pub fn exec(&self, id: &ExecId) -> Option<&Exec> {
        self.execs.get(id)
    }

    /// Every exec in flight (requested and not yet deleted), in id order: read-only, for
    /// checkers.
    pub fn execs(&self) -> impl Iterator<Item = &Exec> {
        self.execs.values()
    }

    /// Containers whose exec processes recovery still has to sweep.
    pub fn exec_sweeps_pending(&self) -> impl Iterator<Item = &ContainerId> {
        self.exec_sweeps.keys()
    }

    pub(crate) fn exec_sync(
        &mut self,
        req: RequestId,
        id: ContainerId,
        exec_id: ExecId,
        cmd: Vec<String>,
        timeout: Duration,
    ) {
        if cmd.is_empty() {
            self.reply(
                req,
                Err(CommandError::InvalidArgument {
                    field: "cmd",
                    reason: "must not be empty".into(),
                }),
            );
            return;
        }
        let Some(c) = self.containers.get(&id) else {
            self.reply(req, Err(CommandError::ContainerNotFound { id }));
            return;
        };
        let state = c.state();
        if state != ContainerState::Running {
            self.reply(
                req,
                Err(CommandError::InvalidState {
                    id,
                    op: Operation::ExecSync,
                    state,
                }),
            );
            return;
        }
        // Being removed, or its process has ended (the exit is being recorded): an exec
        // would find no live task.
        let guard = (c.guard == Some(Guard::Removing))
            .then_some(Guard::Removing)
            .or(c.exit.map(|_| Guard::Exiting));
        if let Some(guard) = guard {
            self.reply(
                req,
                Err(CommandError::Busy {
                    id,
                    op: Operation::ExecSync,
                    guard,
                }),
            );
            return;
        }
        if self.execs.contains_key(&exec_id) {
            self.reply(
                req,
                Err(CommandError::IdInUse {
                    id: exec_id.to_string(),
                }),
            );
            return;
        }
        let queued = self.exec_sweeps.contains_key(&id);
        self.execs.insert(
            exec_id.clone(),
            Exec {
                id: exec_id.clone(),
                container: id,
                cmd,
                timeout,
                state: ExecState::Queued,
                req: Some(req),
                kill: Lane::Idle,
                timed_out: false,
                held: None,
            },
        );
        if !queued {
            self.start_exec(&exec_id);
        }
    }

    fn start_exec(&mut self, exec_id: &ExecId) {
        let cap = self.config.exec_output_cap;
        let Some(e) = self.execs.get_mut(exec_id) else {
            return;
        };
        e.state = ExecState::Starting;
        let call = Call::StartExec {
            id: e.container.clone(),
            exec: Box::new(ExecSpec {
                exec_id: exec_id.clone(),
                cmd: e.cmd.clone(),
                output_cap: cap,
            }),
        };
        self.call(
            ExecStep::Start {
                exec_id: exec_id.clone(),
            },
            call,
        );
    }

    fn on_exec_started(&mut self, exec_id: ExecId, result: Result<CallResult, BackendError>) {
        let Some(e) = self.execs.get_mut(&exec_id) else {
            return;
        };
        let id = e.container.clone();
        match result {
            Ok(CallResult::Pid(_)) => {
                e.state = ExecState::Running;
                let timeout = e.timeout;
                if !timeout.is_zero() {
                    // containerd counts the timeout from the process's start.
                    self.arm(
                        timeout,
                        Timer::ExecTimeout {
                            exec_id: exec_id.clone(),
                        },
                    );
                }
                self.call(
                    ExecStep::Wait {
                        exec_id: exec_id.clone(),
                    },
                    Call::WaitExec { id, exec_id },
                );
            }
            other => {
                let error = match other {
                    Err(error) => error,
                    Ok(r) => BackendError::new(
                        BackendErrorKind::Other,
                        "Tasks.Exec",
                        id.as_str(),
                        format!("unexpected result {r:?}"),
                    ),
                };
                // Its reply may have been lost with the process started: the answer waits
                // for the delete (which kills a live one).
                e.held = Some(Err(CommandError::Backend {
                    op: Operation::ExecSync,
                    target: Target::Container(id),
                    error,
                }));
                self.delete_exec(exec_id, 0);
            }
        }
    }

    pub(crate) fn on_exec_timeout(&mut self, exec_id: ExecId) {
        let Some(e) = self.execs.get_mut(&exec_id) else {
            return;
        };
        if e.state != ExecState::Running || e.timed_out {
            return;
        }
        e.timed_out = true;
        #[cfg(feature = "planted-bugs")]
        if self
            .config
            .has_bug(crate::config::PlantedBug::ExecTimeoutNotKilled)
        {
            // Answered at once, the process left running.
            let answer = Err(exec_timeout(e));
            if let Some(req) = e.req.take() {
                self.reply(req, answer);
            }
            return;
        }
        self.kill_exec(exec_id, 0);
    }

    pub(crate) fn kill_exec(&mut self, exec_id: ExecId, attempt: u32) {
        let Some(e) = self.execs.get_mut(&exec_id) else {
            return;
        };
        if e.state != ExecState::Running || matches!(e.kill, Lane::InFlight(_)) {
            return;
        }
        let id = e.container.clone();
        let op = self.call(
            ExecStep::Kill {
                exec_id: exec_id.clone(),
                attempt,
            },
            Call::KillExec {
                id,
                exec_id: exec_id.clone(),
                signal: SIGKILL,
            },
        );
        if let Some(e) = self.execs.get_mut(&exec_id) {
            e.kill = Lane::InFlight(op);
        }
    }

    fn on_exec_killed(
        &mut self,
        exec_id: ExecId,
        attempt: u32,
        result: Result<CallResult, BackendError>,
    ) {
        let Some(e) = self.execs.get_mut(&exec_id) else {
            return;
        };
        match result {
            Err(error) if !error.is_not_found() && e.state == ExecState::Running => {
                // The wait returns only once the process is dead: the kill must land.
                e.kill = Lane::Backoff {
                    attempt: attempt + 1,
                };
                let delay = self.config.backoff(attempt, self.config.resync_backoff_max);
                self.arm(
                    delay,
                    Timer::RetryExecKill {
                        exec_id,
                        attempt: attempt + 1,
                    },
                );
            }
            // Killed, or already gone (its wait returns with its exit).
            _ => e.kill = Lane::Idle,
        }
    }

    pub(crate) fn retry_exec_kill(&mut self, exec_id: ExecId, attempt: u32) {
        if let Some(e) = self.execs.get_mut(&exec_id)
            && matches!(e.kill, Lane::Backoff { .. })
        {
            e.kill = Lane::Idle;
            self.kill_exec(exec_id, attempt);
        }
    }

    fn on_exec_waited(&mut self, exec_id: ExecId, result: Result<CallResult, BackendError>) {
        self.disarm(|t| match t {
            Timer::ExecTimeout { exec_id: x } | Timer::RetryExecKill { exec_id: x, .. } => {
                *x == exec_id
            }
            _ => false,
        });
        let Some(e) = self.execs.get_mut(&exec_id) else {
            return;
        };
        e.kill = Lane::Idle;
        let id = e.container.clone();
        match result {
            Ok(CallResult::ExecExited(output)) => {
                // The process has exited and its output is drained: it can be answered now.
                let answer = if e.timed_out {
                    Err(exec_timeout(e))
                } else {
                    Ok(Response::ExecSync(*output))
                };
                if let Some(req) = e.req.take() {
                    self.reply(req, answer);
                }
            }
            other => {
                let error = match other {
                    Err(error) => error,
                    Ok(r) => BackendError::new(
                        BackendErrorKind::Other,
                        "Tasks.Wait",
                        id.as_str(),
                        format!("unexpected result {r:?}"),
                    ),
                };
                // A broken stream (containerd restarting): the process may live on. The
                // delete kills it; the answer waits for it.
                e.held = Some(Err(if e.timed_out {
                    exec_timeout(e)
                } else {
                    CommandError::Backend {
                        op: Operation::ExecSync,
                        target: Target::Container(id),
                        error,
                    }
                }));
            }
        }
        self.delete_exec(exec_id, 0);
    }

    pub(crate) fn delete_exec(&mut self, exec_id: ExecId, attempt: u32) {
        let Some(e) = self.execs.get_mut(&exec_id) else {
            return;
        };
        e.state = ExecState::Deleting;
        let id = e.container.clone();
        self.call(
            ExecStep::Delete {
                exec_id: exec_id.clone(),
                attempt,
            },
            Call::DeleteExec { id, exec_id },
        );
    }

    fn on_exec_deleted(
        &mut self,
        exec_id: ExecId,
        attempt: u32,
        result: Result<CallResult, BackendError>,
    ) {
        if let Err(error) = &result
            && !error.is_not_found()
        {
            // It must not be lost: retried until done or gone (a crash meanwhile is covered
            // by recovery's sweep).
            let delay = self.config.backoff(attempt, self.config.resync_backoff_max);
            self.arm(
                delay,
                Timer::RetryExecDelete {
                    exec_id,
                    attempt: attempt + 1,
                },
            );
            return;
        }
        let Some(e) = self.execs.remove(&exec_id) else {
            return;
        };
        if let (Some(req), Some(answer)) = (e.req, e.held) {
            self.reply(req, answer);
        }
    }

    pub(crate) fn retry_exec_delete(&mut self, exec_id: ExecId, attempt: u32) {
        if self
            .execs
            .get(&exec_id)
            .is_some_and(|e| e.state == ExecState::Deleting)
        {
            self.delete_exec(exec_id, attempt);
        }
    }

    /// Recovery: kill and delete every exec process of berth's in `id`'s task, in the
    /// background (an exec of the crashed berth must not live on; its request died with it).
    pub(crate) fn sweep_execs(&mut self, id: &ContainerId, attempt: u32) {
        #[cfg(feature = "planted-bugs")]
        if self
            .config
            .has_bug(crate::config::PlantedBug::RecoveryKeepsExecs)
        {
            return;
        }
        if matches!(self.exec_sweeps.get(id), Some(Lane::InFlight(_))) {
            return;
        }
        let op = self.call(
            ExecStep::Sweep {
                id: id.clone(),
                attempt,
            },
            Call::SweepExecs(id.clone()),
        );
        self.exec_sweeps.insert(id.clone(), Lane::InFlight(op));
    }

    fn on_execs_swept(
        &mut self,
        id: ContainerId,
        attempt: u32,
        result: Result<CallResult, BackendError>,
    ) {
        if let Err(error) = &result
            && !error.is_not_found()
        {
            self.exec_sweeps.insert(
                id.clone(),
                Lane::Backoff {
                    attempt: attempt + 1,
                },
            );
            let delay = self.config.backoff(attempt, self.config.resync_backoff_max);
            self.arm(
                delay,
                Timer::RetryExecSweep {
                    id,
                    attempt: attempt + 1,
                },
            );
            return;
        }
        self.exec_sweeps.remove(&id);
        // The execs that waited for the sweep start now, if their container still runs.
        let queued: Vec<ExecId> = self
            .execs
            .values()
            .filter(|e| e.container == id && e.state == ExecState::Queued)
            .map(|e| e.id.clone())
            .collect();
        for exec_id in queued {
            let refusal = match self.containers.get(&id) {
                None => Some(CommandError::ContainerNotFound { id: id.clone() }),
                Some(c) if c.state() != ContainerState::Running => {
                    Some(CommandError::InvalidState {
                        id: id.clone(),
                        op: Operation::ExecSync,
                        state: c.state(),
                    })
                }
                Some(c) if c.is_removing() || c.exit.is_some() => Some(CommandError::Busy {
                    id: id.clone(),
                    op: Operation::ExecSync,
                    guard: if c.is_removing() {
                        Guard::Removing
                    } else {
                        Guard::Exiting
                    },
                }),
                Some(_) => None,
            };
            match refusal {
                None => self.start_exec(&exec_id),
                Some(error) => {
                    // Never started: nothing to delete.
                    if let Some(e) = self.execs.remove(&exec_id)
                        && let Some(req) = e.req
                    {
                        self.reply(req, Err(error));
                    }
                }
            }
        }
    }

    pub(crate) fn retry_exec_sweep(&mut self, id: ContainerId, attempt: u32) {
        if matches!(self.exec_sweeps.get(&id), Some(Lane::Backoff { .. })) {
            self.sweep_execs(&id, attempt);
        }
    }
}

/// The answer of an exec past its timeout.
fn exec_timeout(e: &Exec) -> CommandError {
    CommandError::ExecTimeout {
        id: e.container.clone(),
        exec_id: e.id.clone(),
        timeout: e.timeout,
    }
}
