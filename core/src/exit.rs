//! Exit handling (docs/containerd-behaviour.md §5) with berth's rules:
//!
//! - watch: one `Tasks.Wait` per running task. A failed wait (containerd restarting, the
//!   connection lost, the shim gone) is never an exit: the task is re-observed
//!   (`Tasks.Get`); Running → wait again, Stopped → its real exit, NotFound → exit lost
//!   (255 "Unknown"); an observation error retries with backoff.
//! - record: the exit is **persisted before the task is deleted** (docs/architecture.md §3.2);
//!   first
//!   recorded exit wins; duplicates, late exits and exits of removed containers are
//!   ignored; a failed write is retried with backoff (1 s doubling to 5 min).
//! - cleanup: `Tasks.Delete` with kill after the exit is durable, retried with backoff
//!   until the task is gone.

use crate::error::Guard;
use crate::ids::ContainerId;
use crate::io::Response;
use crate::io::{
    BackendError, Call, CallResult, EventKind, PersistAction, PersistError, Target, TaskState,
};
use crate::machine::{Machine, OperationStep, Timer};
use crate::record::{Container, Lane, PendingExit, Waiter};
use crate::status::{ContainerState, ExitStatus, Status};

/// The steps of exit handling: the watch, the record, the cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExitStep {
    /// `Tasks.Wait`.
    Wait { target: Target },
    /// `Tasks.Get` after a broken wait.
    Resync { target: Target, attempt: u32 },
    /// The write of the exit.
    Persist {
        id: ContainerId,
        attempt: u32,
        status: Status,
    },
    /// `Tasks.Delete` with kill, in the background.
    Cleanup { target: Target, attempt: u32 },
}

impl OperationStep for ExitStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            ExitStep::Wait { target } => m.on_wait(target, result),
            ExitStep::Resync { target, attempt } => m.on_resync(target, attempt, result),
            ExitStep::Cleanup { target, attempt } => m.on_cleanup(target, attempt, result),
            step @ ExitStep::Persist { .. } => return Some(step),
        }
        None
    }

    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self> {
        match self {
            ExitStep::Persist {
                id,
                attempt,
                status,
            } => m.on_exit_persist(id, attempt, status, result),
            step @ (ExitStep::Wait { .. } | ExitStep::Resync { .. } | ExitStep::Cleanup { .. }) => {
                return Some(step);
            }
        }
        None
    }
}

impl Machine {
    fn lane_mut(&mut self, target: &Target, which: LaneKind) -> Option<&mut Lane> {
        match target {
            Target::Container(id) => self.containers.get_mut(id).map(|c| match which {
                LaneKind::Watch => &mut c.watch,
                LaneKind::Cleanup => &mut c.cleanup,
            }),
            Target::Sandbox(id) => self.sandboxes.get_mut(id).map(|s| match which {
                LaneKind::Watch => &mut s.watch,
                LaneKind::Cleanup => &mut s.cleanup,
            }),
        }
    }

    /// Starts a `Tasks.Wait` for the target unless one is in flight or scheduled.
    pub(crate) fn arm_watch(&mut self, target: &Target) {
        if self.is_finished(target) {
            return;
        }
        match self.lane_mut(target, LaneKind::Watch) {
            Some(lane) if lane.is_idle() => {}
            _ => return,
        }
        let op = self.call(
            ExitStep::Wait {
                target: target.clone(),
            },
            Call::WaitTask(target.clone()),
        );
        if let Some(lane) = self.lane_mut(target, LaneKind::Watch) {
            *lane = Lane::InFlight(op);
        }
    }

    /// The planted bug `RecoveryWatchesExitedTask`: a `Tasks.Wait` on the target whatever
    /// its state (bypassing the rule that a finished container is never watched).
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn planted_watch(&mut self, target: &Target) {
        let op = self.call(
            ExitStep::Wait {
                target: target.clone(),
            },
            Call::WaitTask(target.clone()),
        );
        if let Some(lane) = self.lane_mut(target, LaneKind::Watch) {
            *lane = Lane::InFlight(op);
        }
    }

    fn on_wait(&mut self, target: Target, result: Result<CallResult, BackendError>) {
        let Some(lane) = self.lane_mut(&target, LaneKind::Watch) else {
            return;
        };
        *lane = Lane::Idle;
        match result {
            Ok(CallResult::Exited(exit)) => self.exit_observed(&target, exit),
            #[cfg(feature = "planted-bugs")]
            Err(_)
                if self
                    .config
                    .has_bug(crate::config::PlantedBug::BrokenWaitIsExit) =>
            {
                let now = self.wall();
                self.exit_observed(&target, ExitStatus::lost(now));
            }
            // Anything else is not an exit: re-observe the task.
            _ => self.resync(target, 0),
        }
    }

    /// Observes the task after a broken wait (`Tasks.Get`).
    pub(crate) fn resync(&mut self, target: Target, attempt: u32) {
        match self.lane_mut(&target, LaneKind::Watch) {
            Some(lane) if lane.is_idle() || matches!(lane, Lane::Backoff { .. }) => {}
            _ => return,
        }
        if self.is_finished(&target) {
            if let Some(lane) = self.lane_mut(&target, LaneKind::Watch) {
                *lane = Lane::Idle;
            }
            return;
        }
        let op = self.call(
            ExitStep::Resync {
                target: target.clone(),
                attempt,
            },
            Call::TaskStatus(target.clone()),
        );
        if let Some(lane) = self.lane_mut(&target, LaneKind::Watch) {
            *lane = Lane::InFlight(op);
        }
    }

    fn on_resync(
        &mut self,
        target: Target,
        attempt: u32,
        result: Result<CallResult, BackendError>,
    ) {
        let Some(lane) = self.lane_mut(&target, LaneKind::Watch) else {
            return;
        };
        *lane = Lane::Idle;
        match result {
            Ok(CallResult::Task(TaskState::Stopped(exit))) => self.exit_observed(&target, exit),
            Ok(CallResult::Task(TaskState::NotFound)) => {
                let now = self.wall();
                self.exit_observed(&target, ExitStatus::lost(now));
            }
            Ok(CallResult::Task(_)) => self.arm_watch(&target),
            Ok(_) | Err(_) => {
                let cap = self.config.resync_backoff_max;
                let delay = self.config.backoff(attempt, cap);
                if let Some(lane) = self.lane_mut(&target, LaneKind::Watch) {
                    *lane = Lane::Backoff {
                        attempt: attempt + 1,
                    };
                }
                self.arm(
                    delay,
                    Timer::RetryResync {
                        target,
                        attempt: attempt + 1,
                    },
                );
            }
        }
    }

    fn is_finished(&self, target: &Target) -> bool {
        match target {
            Target::Container(id) => self.containers.get(id).is_none_or(Container::is_finished),
            Target::Sandbox(id) => self.sandboxes.get(id).is_none_or(|s| s.exit.is_some()),
        }
    }

    fn exit_observed(&mut self, target: &Target, exit: ExitStatus) {
        match target {
            Target::Container(id) => self.record_exit(id, exit),
            Target::Sandbox(id) => self.sandbox_exited(id, exit),
        }
    }

    /// An exit reported for a container. Ignored while a start or recovery holds the
    /// container (the watch armed afterwards sees the exit: the shim keeps it), for a
    /// CREATED container (no process of it can run), once an exit is recorded or being
    /// recorded (first exit wins), and for unknown ids (removed).
    pub(crate) fn record_exit(&mut self, id: &ContainerId, exit: ExitStatus) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if c.guard == Some(Guard::Starting) || c.exit.is_some() {
            return;
        }
        if c.guard == Some(Guard::Recovering) {
            #[cfg(feature = "planted-bugs")]
            if self
                .config
                .has_bug(crate::config::PlantedBug::WatchArmedBeforeRecorded)
            {
                return;
            }
            if matches!(c.state(), ContainerState::Exited) {
                return;
            }
            self.exit_during_recovery(id, exit);
            return;
        }
        match c.state() {
            ContainerState::Running | ContainerState::Unknown => self.begin_exit(id, exit),
            ContainerState::Created | ContainerState::Exited => {}
        }
    }

    /// An exit of a container whose recovery is still writing its record: kept, and
    /// recorded (its write carries the whole record, superseding recovery's) as soon as no
    /// other write of that record is in flight.
    fn exit_during_recovery(&mut self, id: &ContainerId, exit: ExitStatus) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.exit = Some(PendingExit {
            exit,
            lane: Lane::Idle,
        });
        // Recovery's rewrite waits for a retry: the exit's write replaces it. (A write or a
        // task delete of recovery in flight hands over when done.)
        if let Lane::Backoff { .. } = c.dirty {
            c.dirty = Lane::Idle;
            c.guard = None;
            self.disarm(|t| matches!(t, Timer::RetryPersist { id: e, .. } if e == id));
            self.persist_exit(id.clone(), 0);
        }
    }

    /// Records `exit` for the container: persist first, then delete the task.
    pub(crate) fn begin_exit(&mut self, id: &ContainerId, exit: ExitStatus) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        if c.exit.is_some() {
            return;
        }
        c.exit = Some(PendingExit {
            exit,
            lane: Lane::Idle,
        });
        #[cfg(feature = "planted-bugs")]
        let held = !self
            .config
            .has_bug(crate::config::PlantedBug::ExitNotHeldBehindUpdate);
        #[cfg(not(feature = "planted-bugs"))]
        let held = true;
        if held && c.guard == Some(Guard::Updating) {
            // Recorded once the update's write is done (one write of a record at a time).
            return;
        }
        #[cfg(feature = "planted-bugs")]
        if self
            .config
            .has_bug(crate::config::PlantedBug::DeleteTaskBeforeExitPersisted)
        {
            let target = Target::Container(id.clone());
            self.schedule_cleanup(&target);
        }
        self.persist_exit(id.clone(), 0);
    }

    pub(crate) fn persist_exit(&mut self, id: ContainerId, attempt: u32) {
        let Some(c) = self.containers.get(&id) else {
            return;
        };
        let Some(pending) = c.exit else {
            return;
        };
        if matches!(pending.lane, Lane::InFlight(_)) {
            return;
        }
        let status = c.status.with_exit(pending.exit);
        let op = self.persist(
            ExitStep::Persist {
                id: id.clone(),
                attempt,
                status: status.clone(),
            },
            &id,
            PersistAction::Write(status),
        );
        if let Some(p) = self.containers.get_mut(&id).and_then(|c| c.exit.as_mut()) {
            p.lane = Lane::InFlight(op);
        }
    }

    fn on_exit_persist(
        &mut self,
        id: ContainerId,
        attempt: u32,
        status: Status,
        result: Result<(), PersistError>,
    ) {
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        if let Err(_error) = result {
            let delay = self.config.backoff(attempt, self.config.backoff_max);
            if let Some(p) = c.exit.as_mut() {
                p.lane = Lane::Backoff {
                    attempt: attempt + 1,
                };
            }
            self.arm(
                delay,
                Timer::RetryExit {
                    id,
                    attempt: attempt + 1,
                },
            );
            return;
        }
        c.status = status;
        c.exit = None;
        c.killing = false;
        let waiters = std::mem::take(&mut c.waiters);
        let target = c.target();
        self.disarm(|t| matches!(t, Timer::Escalate { id: e } if *e == id));
        self.event(target.clone(), EventKind::Stopped);
        self.schedule_cleanup(&target);
        let mut remove_started = false;
        for w in waiters {
            match w {
                Waiter::Stop(req) => self.reply(req, Ok(Response::Done)),
                Waiter::Remove(req) if !remove_started => {
                    remove_started = true;
                    self.begin_remove(&id, req);
                }
                Waiter::Remove(Some(req)) => self.reply(
                    req,
                    Err(crate::error::CommandError::Busy {
                        id: id.clone(),
                        op: crate::error::Operation::RemoveContainer,
                        guard: Guard::Removing,
                    }),
                ),
                Waiter::Remove(None) => {}
            }
        }
        self.progress_sandbox_of(&id);
    }

    /// Deletes the target's task (with kill) in the background until it is gone.
    pub(crate) fn schedule_cleanup(&mut self, target: &Target) {
        match self.lane_mut(target, LaneKind::Cleanup) {
            Some(lane) if lane.is_idle() => self.cleanup_task(target.clone(), 0),
            _ => {}
        }
    }

    pub(crate) fn cleanup_task(&mut self, target: Target, attempt: u32) {
        match self.lane_mut(&target, LaneKind::Cleanup) {
            Some(lane) if !matches!(lane, Lane::InFlight(_)) => {}
            _ => return,
        }
        let op = self.call(
            ExitStep::Cleanup {
                target: target.clone(),
                attempt,
            },
            Call::DeleteTask {
                target: target.clone(),
                kill: true,
            },
        );
        if let Some(lane) = self.lane_mut(&target, LaneKind::Cleanup) {
            *lane = Lane::InFlight(op);
        }
    }

    fn on_cleanup(
        &mut self,
        target: Target,
        attempt: u32,
        result: Result<CallResult, BackendError>,
    ) {
        #[cfg(feature = "planted-bugs")]
        let gone_overwrites = self
            .config
            .has_bug(crate::config::PlantedBug::GoneTaskOverwritesExit);
        let Some(lane) = self.lane_mut(&target, LaneKind::Cleanup) else {
            return;
        };
        match result {
            Ok(_) => *lane = Lane::Idle,
            #[cfg(feature = "planted-bugs")]
            Err(e) if e.is_not_found() && gone_overwrites => {
                *lane = Lane::Idle;
                if let Target::Container(id) = &target {
                    self.overwrite_with_lost_exit(id.clone());
                }
            }
            Err(e) if e.is_not_found() => *lane = Lane::Idle,
            Err(_) => {
                *lane = Lane::Backoff {
                    attempt: attempt + 1,
                };
                let delay = self.config.backoff(attempt, self.config.backoff_max);
                self.arm(
                    delay,
                    Timer::RetryCleanup {
                        target: target.clone(),
                        attempt: attempt + 1,
                    },
                );
                if let Target::Container(id) = &target {
                    let id = id.clone();
                    self.resume_remove_after_cleanup(&id);
                }
                return;
            }
        }
        match &target {
            Target::Sandbox(id) => {
                let id = id.clone();
                self.progress_sandbox(&id);
            }
            Target::Container(id) => {
                let id = id.clone();
                self.resume_remove_after_cleanup(&id);
                self.answer_stops_after_cleanup(&id);
                // A pod stop waits for a lingering task of its containers too.
                self.progress_sandbox_of(&id);
            }
        }
    }

    /// Planted bug `GoneTaskOverwritesExit`: the recorded exit is replaced by a lost one
    /// (255 "Unknown") and written.
    #[cfg(feature = "planted-bugs")]
    fn overwrite_with_lost_exit(&mut self, id: ContainerId) {
        let now = self.wall();
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        if c.exit.is_some()
            || c.state() != ContainerState::Exited
            || c.status.reason == crate::status::UNKNOWN_REASON
        {
            return;
        }
        let lost = ExitStatus::lost(now);
        let mut forgotten = c.status.clone();
        forgotten.finished_at = 0;
        let status = forgotten.with_exit(lost);
        c.exit = Some(PendingExit {
            exit: lost,
            lane: Lane::Idle,
        });
        let op = self.persist(
            ExitStep::Persist {
                id: id.clone(),
                attempt: 0,
                status: status.clone(),
            },
            &id,
            PersistAction::Write(status),
        );
        if let Some(p) = self.containers.get_mut(&id).and_then(|c| c.exit.as_mut()) {
            p.lane = Lane::InFlight(op);
        }
    }

    /// Stops that waited for a lingering task of a stopped container are answered once the
    /// task is gone.
    fn answer_stops_after_cleanup(&mut self, id: &ContainerId) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        if !c.nothing_to_stop() {
            return;
        }
        let (stops, rest): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut c.waiters)
            .into_iter()
            .partition(|w| matches!(w, Waiter::Stop(_)));
        c.waiters = rest;
        for w in stops {
            if let Waiter::Stop(req) = w {
                self.answer_idle_stop(id, req);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum LaneKind {
    Watch,
    Cleanup,
}
