//! StopContainer (docs/containerd-behaviour.md §4.3), with berth's rule for a stop that races a
//! start: the stop
//! waits for the start to settle and then stops the container (containerd makes it a
//! no-op and leaves the container running).
//!
//! The stop signal is sent at most once per container lifetime; SIGKILL follows after the
//! timeout (a timer). The reply comes once the exit is durable. An UNKNOWN container is
//! killed; if it has no task, berth records the lost exit (255 "Unknown").

use std::time::Duration;

use crate::error::{CommandError, Guard, Operation};
use crate::ids::{ContainerId, RequestId};
use crate::io::{BackendError, Call, CallResult, PersistError, Response, Target};
use crate::machine::{Machine, OperationStep, Timer};
use crate::record::{Container, Waiter};
use crate::signal::SIGKILL;
use crate::status::ContainerState;

/// The steps of StopContainer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopStep {
    /// `Tasks.Kill` with the stop signal or SIGKILL.
    Kill { id: ContainerId, signal: i32 },
}

impl OperationStep for StopStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            StopStep::Kill { id, signal } => m.on_kill(id, signal, result),
        }
        None
    }

    fn on_persisted(self, _m: &mut Machine, _result: Result<(), PersistError>) -> Option<Self> {
        // Every step of it waits for a call result.
        Some(self)
    }
}

impl Machine {
    pub(crate) fn stop_container(&mut self, req: RequestId, id: ContainerId, timeout: Duration) {
        let Some(c) = self.containers.get_mut(&id) else {
            // Unknown ids succeed (containerd ≥ 1.6.35, 1.7.21, 2.0).
            self.reply(req, Ok(Response::Done));
            return;
        };
        if c.exit.is_some() {
            c.waiters.push(Waiter::Stop(req));
            return;
        }
        #[cfg(feature = "planted-bugs")]
        if c.guard == Some(Guard::Starting)
            && self
                .config
                .has_bug(crate::config::PlantedBug::StopDuringStartIgnored)
        {
            self.reply(req, Ok(Response::Done));
            return;
        }
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        if c.guard == Some(Guard::Starting) {
            c.waiters.push(Waiter::Stop(req));
            c.stop_after_start = Some(c.stop_after_start.map_or(timeout, |t| t.min(timeout)));
            return;
        }
        match c.state() {
            ContainerState::Created | ContainerState::Exited if c.nothing_to_stop() => {
                self.answer_idle_stop(&id, req)
            }
            // A task the failed start could not delete still runs: answer once it is gone.
            ContainerState::Exited | ContainerState::Created => {
                c.waiters.push(Waiter::Stop(req));
            }
            ContainerState::Running | ContainerState::Unknown => {
                c.waiters.push(Waiter::Stop(req));
                self.begin_stop(&id, timeout);
            }
        }
    }

    /// Answers a stop of a container that runs nothing: done, unless its record is being
    /// rewritten after a failed write or recovery still holds it. The failed write may
    /// have landed (a failed start's RUNNING record), so a crash could bring the container
    /// back RUNNING after an acknowledged stop (sim seed 1366646); recovery may be deleting
    /// the task of a start it rolled back, whose process still runs (sim seed 2073281).
    /// Busy then, like start and remove, until the record is durable.
    pub(crate) fn answer_idle_stop(&mut self, id: &ContainerId, req: RequestId) {
        let settled = self.containers.get(id).is_none_or(Container::is_settled);
        if settled {
            self.reply(req, Ok(Response::Done));
        } else {
            self.reply_stop_busy(id, req);
        }
    }

    /// A stop answered busy: the container's record is not durable yet (recovering).
    pub(crate) fn reply_stop_busy(&mut self, id: &ContainerId, req: RequestId) {
        self.reply(
            req,
            Err(CommandError::Busy {
                id: id.clone(),
                op: Operation::StopContainer,
                guard: Guard::Recovering,
            }),
        );
    }

    /// Sends the stop signal (once per lifetime) and arms SIGKILL after `timeout`; with a
    /// zero timeout, or for an UNKNOWN container, sends SIGKILL at once.
    pub(crate) fn begin_stop(&mut self, id: &ContainerId, timeout: Duration) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        if c.is_finished() {
            return;
        }
        let target = c.target();
        #[cfg(feature = "planted-bugs")]
        let timeout = if self
            .config
            .has_bug(crate::config::PlantedBug::StopKillsAtOnce)
        {
            Duration::ZERO
        } else {
            timeout
        };
        if timeout.is_zero() || c.state() == ContainerState::Unknown {
            if !c.killing {
                c.killing = true;
                self.call(
                    StopStep::Kill {
                        id: id.clone(),
                        signal: SIGKILL,
                    },
                    Call::KillTask {
                        target,
                        signal: SIGKILL,
                    },
                );
            }
            return;
        }
        // The grace period runs from the moment the stop signal was delivered (containerd
        // waits after its Kill returns): a Kill held up on the way must not eat into it.
        if !c.stop_signaled {
            c.stop_signaled = true;
            c.escalate_after = Some(timeout);
            let signal = c.meta.stop_signal;
            self.call(
                StopStep::Kill {
                    id: id.clone(),
                    signal,
                },
                Call::KillTask { target, signal },
            );
            return;
        }
        if let Some(after) = c.escalate_after.as_mut() {
            *after = (*after).min(timeout);
            return;
        }
        self.arm(timeout, Timer::Escalate { id: id.clone() });
    }

    pub(crate) fn on_escalate(&mut self, id: ContainerId) {
        self.begin_stop(&id, Duration::ZERO);
    }

    fn on_kill(&mut self, id: ContainerId, signal: i32, result: Result<CallResult, BackendError>) {
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        let escalate_after = if signal == SIGKILL {
            c.killing = false;
            None
        } else {
            c.escalate_after.take()
        };
        let target = Target::Container(id.clone());
        match result {
            // The exit arrives through the watch; make sure there is one (an UNKNOWN
            // container recovered through an error path may have none).
            Ok(_) => {
                self.arm_watch(&target);
                if let Some(after) = escalate_after {
                    self.arm(after, Timer::Escalate { id });
                }
            }
            // containerd says NotFound both for "no task" and for "process already
            // finished": only an observation tells which, and keeps a real exit code.
            Err(e) if e.is_not_found() => {
                if c.watch.is_idle() {
                    self.resync(target, 0);
                }
                if let Some(after) = escalate_after {
                    self.arm(after, Timer::Escalate { id });
                }
            }
            Err(error) => {
                // The stop signal may not have been delivered: a retried stop sends it again
                // rather than SIGKILL after the grace period the process never had.
                if signal != SIGKILL {
                    c.stop_signaled = false;
                }
                let error = CommandError::Backend {
                    op: Operation::StopContainer,
                    target: Target::Container(id.clone()),
                    error,
                };
                self.fail_stop(&id, error);
            }
        }
    }

    /// A stop failed: every request waiting for this container's exit gets the error.
    fn fail_stop(&mut self, id: &ContainerId, error: CommandError) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let waiters = std::mem::take(&mut c.waiters);
        let sandbox = c.meta.sandbox_id.clone();
        self.disarm(|t| matches!(t, Timer::Escalate { id: e } if e == id));
        for w in waiters {
            match w {
                Waiter::Stop(req) | Waiter::Remove(Some(req)) => {
                    self.reply(req, Err(error.clone()))
                }
                Waiter::Remove(None) => {}
            }
        }
        self.fail_sandbox_ops(&sandbox, &error);
    }
}
