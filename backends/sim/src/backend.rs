//! [`SimBackend`]: berth's [`Backend`] over the simulated containerd, with per-call faults
//! and the harness's hooks (process plans, containerd restarts, shim deaths, exits, truth).

use std::collections::BTreeMap;
use std::future::pending;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use berth_backend::{
    Backend, BackendError, BackendErrorKind, ContainerId, ContainerMeta, ExecId, ExecOutput,
    ExecSpec, ExitStatus, ImageRecord, ImageRef, Listing, Resources, ResourcesOf, SandboxMeta,
    Target, TaskMetrics, TaskState,
};
use berth_core::SandboxId;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::SimClock;
use crate::config::SimConfig;
use crate::error::HookError;
use crate::faults::{FaultCounts, FaultEvent, FaultKind, FaultPlan};
use crate::model::{ExecPoll, Model, WaitBegin, WaitPoll, connection_refused, transport_error};
use crate::truth::{ExecTruth, ObjectTruth, ProcessPlan, RealExit, Restart, ShimDeath, Truth};

/// Stream constant: the backend's draws are independent of the disk's and the plan's.
const BACKEND_STREAM: u64 = 0xC0DE_0001_5EED_0001;

/// A simulated containerd with its shims, implementing [`Backend`].
///
/// It spawns nothing: a process exits when its deadline has passed and someone looks
/// (every call, every hook, [`SimBackend::truth`]), with the deadline as its exit time; a
/// wait sleeps until that deadline or until a state change wakes it. So it plays containerd
/// across kills of the berth node, under tokio's paused clock as under madsim. Cheap to
/// clone; clones share everything.
///
/// Decisions come from one `SmallRng` seeded with `seed`: the same seed and the same
/// sequence of calls give the same faults.
#[derive(Debug, Clone)]
pub struct SimBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: SimConfig,
    state: Mutex<State>,
    /// Woken by changes that concern every task (containerd restarts, shim deaths, the
    /// harness's hooks); blocked waits re-check.
    notify: Notify,
    /// Woken when a call changes one id; blocked waits of that id re-check (waking every
    /// wait on every call made a wait storm: all waits re-checked after each call).
    waits: Mutex<BTreeMap<String, Arc<Notify>>>,
}

#[derive(Debug)]
struct State {
    model: Model,
    rng: SmallRng,
    faults: FaultPlan,
    counts: FaultCounts,
    log: Vec<FaultEvent>,
}

/// What the fault plan does to one call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decision {
    None,
    Fail(BackendErrorKind),
    Deadline { applied: bool },
    ReplyLost,
    Slow { delay: Duration, before: bool },
    Hang { before: bool },
}

/// Who serves a call: containerd (down while it restarts, its replies lost with the
/// connection), or berth's own process alone (the log copier: a containerd restart does not
/// touch it). Faults and latency hit both alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Containerd,
    Berth,
}

/// A chaos event drawn by [`SimBackend::maybe_chaos`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chaos {
    /// containerd restarted.
    ContainerdRestart(Restart),
    /// A shim died.
    ShimDeath(ShimDeath),
    /// A running process exited.
    Exit(RealExit),
}

impl State {
    fn record(&mut self, kind: FaultKind, what: &'static str, target: &str, now: Instant) {
        self.counts.add(kind);
        let at = self.model.clock.wall_of(now);
        self.log.push(FaultEvent {
            at,
            what,
            target: target.to_owned(),
            kind,
        });
    }

    fn draw(&mut self, verb: &'static str, id: &str, now: Instant, wait: bool) -> Decision {
        let c = self.faults.calls.clone();
        if c.is_none() {
            return Decision::None;
        }
        let table = [
            (c.unavailable, FaultKind::Unavailable),
            (c.deadline_exceeded, FaultKind::DeadlineExceeded),
            (c.other, FaultKind::Other),
            (c.failed_precondition, FaultKind::FailedPrecondition),
            (c.reply_lost, FaultKind::ReplyLost),
            (c.slow, FaultKind::Slow),
            (c.hang, FaultKind::Hang),
        ];
        let u: f64 = self.rng.gen_range(0.0..1.0);
        let mut acc = 0.0;
        let Some(kind) = table.iter().find_map(|(rate, kind)| {
            acc += rate.max(0.0);
            (u < acc).then_some(*kind)
        }) else {
            return Decision::None;
        };
        let max_nanos = u64::try_from(c.max_delay.as_nanos()).unwrap_or(u64::MAX);
        let decision = match kind {
            FaultKind::Unavailable => Decision::Fail(BackendErrorKind::Unavailable),
            FaultKind::Other => Decision::Fail(BackendErrorKind::Other),
            FaultKind::FailedPrecondition => Decision::Fail(BackendErrorKind::FailedPrecondition),
            FaultKind::DeadlineExceeded => Decision::Deadline {
                applied: !wait && self.rng.gen_bool(0.5),
            },
            FaultKind::ReplyLost if wait => Decision::Fail(BackendErrorKind::Unavailable),
            FaultKind::ReplyLost => Decision::ReplyLost,
            FaultKind::Slow => Decision::Slow {
                delay: Duration::from_nanos(self.rng.gen_range(0..=max_nanos)),
                before: wait || self.rng.gen_bool(0.5),
            },
            FaultKind::Hang if wait && !c.hang_waits => return Decision::None,
            _ => Decision::Hang {
                before: wait || self.rng.gen_bool(0.5),
            },
        };
        self.record(kind, verb, id, now);
        decision
    }

    /// How late this wait's exit arrives, if the late-exit fault hits it.
    fn draw_late_exit(&mut self) -> Option<Duration> {
        self.draw_delay(self.faults.calls.late_exit, 1)
    }

    /// When a blocked wait begun now breaks on its own, if it does.
    fn draw_wait_break(&mut self, now: Instant) -> Option<Instant> {
        self.draw_delay(self.faults.calls.wait_broken, 0)
            .map(|d| now + d)
    }

    /// With probability `rate`, a delay of `min_nanos` ns up to [`crate::CallFaults::max_delay`]. No
    /// draw at all when the rate is 0, so plans without the fault consume the same randomness
    /// as before it existed.
    fn draw_delay(&mut self, rate: f64, min_nanos: u64) -> Option<Duration> {
        if rate <= 0.0 || !self.rng.gen_bool(rate.min(1.0)) {
            return None;
        }
        let max_nanos = u64::try_from(self.faults.calls.max_delay.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(
            self.rng.gen_range(min_nanos..=max_nanos.max(min_nanos)),
        ))
    }
}

fn injected(kind: BackendErrorKind, verb: &str, id: &str) -> BackendError {
    let message = match kind {
        BackendErrorKind::Unavailable => "injected: connection reset by peer",
        BackendErrorKind::DeadlineExceeded => "injected: context deadline exceeded",
        BackendErrorKind::FailedPrecondition => "injected: failed precondition",
        _ => "injected: runc failed: unexpected error",
    };
    BackendError::new(kind, verb, id, message)
}

async fn sleep_for(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

impl SimBackend {
    /// A backend with the default settings ([`SimConfig::default`]) and no faults. Build it
    /// inside the runtime whose clock it should follow.
    pub fn new(seed: u64) -> SimBackend {
        SimBackend::with_config(seed, SimConfig::default())
    }

    /// A backend with `config` and no faults.
    pub fn with_config(seed: u64, config: SimConfig) -> SimBackend {
        SimBackend {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    model: Model::new(config.clone()),
                    rng: SmallRng::seed_from_u64(seed ^ BACKEND_STREAM),
                    faults: FaultPlan::none(),
                    counts: FaultCounts::default(),
                    log: Vec::new(),
                }),
                cfg: config,
                notify: Notify::new(),
                waits: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Its settings.
    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    /// The clock exit and creation times come from.
    pub fn clock(&self) -> SimClock {
        self.state().model.clock
    }

    /// The wall clock now (unix ns): what berth's `Now::wall` must be for its timestamps to
    /// be comparable with the truth.
    pub fn now_wall(&self) -> i64 {
        self.clock().now_wall()
    }

    /// Replaces the fault plan (e.g. [`FaultPlan::none`] for the heal phase). Only
    /// [`FaultPlan::calls`] and [`FaultPlan::chaos`] matter here.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.state().faults = plan;
    }

    /// The fault plan in force.
    pub fn faults(&self) -> FaultPlan {
        self.state().faults.clone()
    }

    /// Sets what the process of `target` does once started (read at each `Tasks.Start`, so
    /// set it before). Without a plan a process runs until killed.
    pub fn plan(&self, target: &Target, plan: ProcessPlan) {
        self.state().model.set_plan(target.as_str(), plan);
    }

    /// containerd is killed now and serves again after `down_for`: every call in flight or
    /// made meanwhile fails with `Unavailable`, every wait breaks; records, shims and
    /// processes live on.
    pub fn restart_containerd(&self, down_for: Duration) -> Restart {
        let r = {
            let mut s = self.state();
            let now = Instant::now();
            s.record(FaultKind::ContainerdRestart, "chaos", "containerd", now);
            s.model.restart(down_for, now)
        };
        self.inner.notify.notify_waiters();
        r
    }

    /// containerd serves calls now.
    pub fn is_containerd_up(&self) -> bool {
        self.state().model.is_up(Instant::now())
    }

    /// The shim with key `pod` (a pod id; a task id with [`SimConfig::shim_per_container`])
    /// dies now, taking every task it runs: live processes are killed
    /// (137, recorded as [`crate::ExitCause::ShimDied`]), stopped tasks' statuses are lost,
    /// waits break with `Unavailable`, and the tasks become NotFound (after
    /// [`SimConfig::shim_cleanup`] for calls other than `Tasks.Get`). Records remain.
    pub fn kill_shim(&self, pod: &SandboxId) -> Result<ShimDeath, HookError> {
        let death = {
            let mut s = self.state();
            let now = Instant::now();
            let death = s.model.kill_shim(pod, now)?;
            s.record(FaultKind::ShimDeath, "chaos", pod.as_str(), now);
            death
        };
        self.inner.notify.notify_waiters();
        Ok(death)
    }

    /// Berth begins to record an exit of `target` (a checkpoint write carrying one): with
    /// probability [`crate::ChaosRates::exit_race`], the shim that runs its task dies now
    /// ([`SimBackend::kill_shim_of`]), so the next look at the task finds it gone. No draw
    /// when the rate is 0 (plans without the fault consume the same randomness as before).
    pub fn exit_race(&self, target: &Target) -> Option<ShimDeath> {
        let death = {
            let mut s = self.state();
            let rate = s.faults.chaos.exit_race;
            if rate <= 0.0 || !s.rng.gen_bool(rate.min(1.0)) {
                return None;
            }
            let key = s.model.task_shim_key(target.as_str())?;
            let now = Instant::now();
            let death = s.model.kill_shim(&key, now).ok()?;
            s.record(FaultKind::ExitRace, "chaos", target.as_str(), now);
            death
        };
        self.inner.notify.notify_waiters();
        Some(death)
    }

    /// The shim that runs `target`'s task dies now ([`SimBackend::kill_shim`] of its shim
    /// key: the pod, or the task itself with [`SimConfig::shim_per_container`]).
    pub fn kill_shim_of(&self, target: &Target) -> Result<ShimDeath, HookError> {
        let key = self
            .state()
            .model
            .shim_key_of(target.as_str())
            .ok_or_else(|| HookError::NoTask {
                id: target.as_str().to_owned(),
            })?;
        self.kill_shim(&key)
    }

    /// The running process of `target` exits with `code` now.
    pub fn exit_now(&self, target: &Target, code: i32) -> Result<RealExit, HookError> {
        let exit = {
            let mut s = self.state();
            let now = Instant::now();
            let exit = s.model.exit_now(target, code, now)?;
            s.record(FaultKind::ExitNow, "chaos", target.as_str(), now);
            exit
        };
        self.inner.notify.notify_waiters();
        Ok(exit)
    }

    /// Makes `list` report the record's metadata as unreadable (`Some(why)`), or readable
    /// again (`None`).
    pub fn set_record_meta_error(&self, id: &str, error: Option<String>) -> Result<(), HookError> {
        self.state().model.set_meta_error(id, error)
    }

    /// Adds a name to the simulated image store (it starts with
    /// [`crate::default_images`]), replacing what that name pointed at.
    pub fn add_image(&self, record: ImageRecord) {
        self.state().model.add_image(record);
    }

    /// Draws chaos from [`FaultPlan::chaos`]: in turn a containerd restart (if it is up), a
    /// shim death (if a shim lives), an exit of a running CRI container (never a pause
    /// process); the first that fires is
    /// applied and returned.
    pub fn maybe_chaos(&self) -> Option<Chaos> {
        const CODES: &[i32] = &[0, 1, 2, 42, 137, 143];
        let (restart, pod, exit) = {
            let mut s = self.state();
            let now = Instant::now();
            s.model.settle(now);
            let rates = s.faults.chaos.clone();
            let cands = s.model.chaos_candidates();
            if s.model.is_up(now)
                && rates.containerd_restart > 0.0
                && s.rng.gen_bool(rates.containerd_restart.min(1.0))
            {
                let max = u64::try_from(rates.max_down.as_nanos()).unwrap_or(u64::MAX);
                let down = Duration::from_nanos(s.rng.gen_range(0..=max));
                (Some(down), None, None)
            } else if !cands.pods.is_empty()
                && rates.shim_death > 0.0
                && s.rng.gen_bool(rates.shim_death.min(1.0))
            {
                let i = s.rng.gen_range(0..cands.pods.len());
                (None, Some(cands.pods[i].clone()), None)
            } else if !cands.running.is_empty()
                && rates.exit_now > 0.0
                && s.rng.gen_bool(rates.exit_now.min(1.0))
            {
                let i = s.rng.gen_range(0..cands.running.len());
                let code = CODES[s.rng.gen_range(0..CODES.len())];
                (None, None, Some((cands.running[i].clone(), code)))
            } else {
                (None, None, None)
            }
        };
        if let Some(down) = restart {
            return Some(Chaos::ContainerdRestart(self.restart_containerd(down)));
        }
        if let Some(pod) = pod {
            return self.kill_shim(&pod).ok().map(Chaos::ShimDeath);
        }
        if let Some((target, code)) = exit {
            return self.exit_now(&target, code).ok().map(Chaos::Exit);
        }
        None
    }

    /// A snapshot of the truth: records, tasks (orphans included), shims, every real exit,
    /// shim deaths, restarts.
    pub fn truth(&self) -> Truth {
        let mut s = self.state();
        let now = Instant::now();
        s.model.settle(now);
        s.model.truth(now)
    }

    /// What is true of one containerd id now (record, task, real exits): a cheap slice of
    /// [`SimBackend::truth`] for checks after every step.
    pub fn truth_of(&self, id: &str) -> ObjectTruth {
        let mut s = self.state();
        s.model.settle(Instant::now());
        s.model.truth_of(id)
    }

    /// Every exec process ever started, in start order (alive or not, deleted or not).
    pub fn execs(&self) -> Vec<ExecTruth> {
        let mut s = self.state();
        s.model.settle(Instant::now());
        s.model.exec_truth()
    }

    /// Every real exit so far, in time order.
    pub fn exits(&self) -> Vec<RealExit> {
        let mut s = self.state();
        s.model.settle(Instant::now());
        s.model.exits().to_vec()
    }

    /// Faults injected so far, by kind (restarts, shim deaths and exits included).
    pub fn fault_counts(&self) -> FaultCounts {
        self.state().counts.clone()
    }

    /// Every fault injected so far, in order.
    pub fn fault_log(&self) -> Vec<FaultEvent> {
        self.state().log.clone()
    }

    /// Runs one containerd call: the fault decision, the latency (the effect lands inside
    /// it), the effect, the reply (lost if containerd restarted meanwhile).
    async fn call<T, F>(
        &self,
        verb: &'static str,
        id: &str,
        latency: Duration,
        op: F,
    ) -> Result<T, BackendError>
    where
        T: Send,
        F: FnOnce(&mut Model, Instant) -> Result<T, BackendError> + Send,
    {
        self.call_via(Via::Containerd, verb, id, latency, op).await
    }

    /// [`SimBackend::call`] of something served `via` containerd or by berth alone.
    async fn call_via<T, F>(
        &self,
        via: Via,
        verb: &'static str,
        id: &str,
        latency: Duration,
        op: F,
    ) -> Result<T, BackendError>
    where
        T: Send,
        F: FnOnce(&mut Model, Instant) -> Result<T, BackendError> + Send,
    {
        let call = self.call_inner(via, verb, id, latency, op);
        match self.inner.cfg.call_timeout {
            None => call.await,
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                Err(BackendError::new(
                    BackendErrorKind::DeadlineExceeded,
                    verb,
                    id,
                    format!("no answer from containerd within {limit:?}"),
                ))
            }),
        }
    }

    async fn call_inner<T, F>(
        &self,
        via: Via,
        verb: &'static str,
        id: &str,
        latency: Duration,
        op: F,
    ) -> Result<T, BackendError>
    where
        T: Send,
        F: FnOnce(&mut Model, Instant) -> Result<T, BackendError> + Send,
    {
        let (decision, epoch, pre) = {
            let mut s = self.state();
            let now = Instant::now();
            if via == Via::Containerd && !s.model.is_up(now) {
                return Err(connection_refused(verb, id));
            }
            let decision = s.draw(verb, id, now, false);
            let pre = if latency.is_zero() {
                Duration::ZERO
            } else {
                latency.mul_f64(s.rng.gen_range(0.0..1.0))
            };
            (decision, s.model.epoch, pre)
        };
        let post = latency.saturating_sub(pre);
        match decision {
            Decision::Fail(kind) => return Err(injected(kind, verb, id)),
            Decision::Deadline { applied: false } => {
                sleep_for(latency).await;
                return Err(injected(BackendErrorKind::DeadlineExceeded, verb, id));
            }
            Decision::Hang { before: true } => return pending().await,
            Decision::Slow {
                delay,
                before: true,
            } => sleep_for(delay).await,
            _ => {}
        }
        sleep_for(pre).await;
        let result = self.apply(via, verb, id, epoch, op);
        sleep_for(post).await;
        match decision {
            Decision::Hang { before: false } => return pending().await,
            Decision::Slow {
                delay,
                before: false,
            } => sleep_for(delay).await,
            _ => {}
        }
        if via == Via::Containerd && self.state().model.epoch != epoch {
            // containerd restarted before the reply left: the caller sees a broken connection.
            return Err(transport_error(verb, id));
        }
        match decision {
            Decision::ReplyLost => Err(BackendError::new(
                BackendErrorKind::Unavailable,
                verb,
                id,
                "injected: reply lost (connection reset by peer)",
            )),
            Decision::Deadline { applied: true } => {
                Err(injected(BackendErrorKind::DeadlineExceeded, verb, id))
            }
            _ => result,
        }
    }

    /// Applies a call's effect, unless it goes through containerd and containerd went down
    /// since the call began.
    fn apply<T, F>(
        &self,
        via: Via,
        verb: &str,
        id: &str,
        epoch: u64,
        op: F,
    ) -> Result<T, BackendError>
    where
        F: FnOnce(&mut Model, Instant) -> Result<T, BackendError>,
    {
        let result = {
            let mut s = self.state();
            let now = Instant::now();
            if via == Via::Containerd && (!s.model.is_up(now) || s.model.epoch != epoch) {
                return Err(transport_error(verb, id));
            }
            s.model.settle(now);
            op(&mut s.model, now)
        };
        self.wake(id);
        result
    }

    /// The notifier of `id`'s blocked waits.
    fn waiters_of(&self, id: &str) -> Arc<Notify> {
        let mut w = self.inner.waits.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(id.to_owned()).or_default().clone()
    }

    /// Wakes the blocked waits of `id`.
    fn wake(&self, id: &str) {
        let w = self.inner.waits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = w.get(id) {
            n.notify_waiters();
        }
    }

    /// A wait stalled by a hang fault: it ends only when containerd restarts.
    async fn stall_until_restart(&self, id: &str, epoch: u64) -> Result<ExitStatus, BackendError> {
        loop {
            let mut notified = pin!(self.inner.notify.notified());
            notified.as_mut().enable();
            if self.state().model.epoch != epoch {
                return Err(transport_error("Tasks.Wait", id));
            }
            notified.await;
        }
    }

    /// `Tasks.Wait`, with the late-exit fault on top of [`SimBackend::wait_exit`]: the exit is
    /// held back for a while, and lost with the connection if containerd restarts meanwhile.
    async fn wait(&self, target: &Target) -> Result<ExitStatus, BackendError> {
        const VERB: &str = "Tasks.Wait";
        let exit = self.wait_exit(target).await?;
        let late = {
            let mut s = self.state();
            let now = Instant::now();
            s.draw_late_exit().map(|delay| {
                s.record(FaultKind::LateExit, VERB, target.as_str(), now);
                (delay, s.model.epoch)
            })
        };
        if let Some((delay, epoch)) = late {
            sleep_for(delay).await;
            let s = self.state();
            if !s.model.is_up(Instant::now()) || s.model.epoch != epoch {
                return Err(transport_error(VERB, target.as_str()));
            }
        }
        Ok(exit)
    }

    /// `Tasks.Wait` of an exec process, then its output drained (bounded by
    /// [`SimConfig::exec_drain_bound`]); the faults of a wait (errors, hangs until a
    /// containerd restart, broken streams).
    async fn wait_exec_output(
        &self,
        target: &Target,
        exec_id: &ExecId,
    ) -> Result<ExecOutput, BackendError> {
        const VERB: &str = "Tasks.Wait";
        let id = target.as_str();
        let (decision, epoch, break_at) = {
            let mut s = self.state();
            let now = Instant::now();
            if !s.model.is_up(now) {
                return Err(connection_refused(VERB, id));
            }
            let decision = s.draw(VERB, id, now, true);
            let break_at = s.draw_wait_break(now);
            (decision, s.model.epoch, break_at)
        };
        match decision {
            Decision::Fail(kind) => return Err(injected(kind, VERB, id)),
            Decision::Deadline { .. } => {
                return Err(injected(BackendErrorKind::DeadlineExceeded, VERB, id));
            }
            Decision::Hang { .. } => {
                self.stall_until_restart(id, epoch).await?;
                return Err(transport_error(VERB, id));
            }
            Decision::Slow { delay, .. } => sleep_for(delay).await,
            Decision::ReplyLost | Decision::None => {}
        }
        sleep_for(self.inner.cfg.latency.wait_task).await;
        let index = {
            let mut s = self.state();
            let now = Instant::now();
            if !s.model.is_up(now) || s.model.epoch != epoch {
                return Err(transport_error(VERB, id));
            }
            s.model.settle(now);
            s.model.exec_wait_begin(target, exec_id.as_str(), now)?
        };
        let mine = self.waiters_of(id);
        loop {
            let mut notified = pin!(self.inner.notify.notified());
            notified.as_mut().enable();
            let mut changed = pin!(mine.notified());
            changed.as_mut().enable();
            let wake_at = {
                let mut s = self.state();
                let now = Instant::now();
                s.model.settle(now);
                match s.model.exec_wait_poll(index, epoch, now) {
                    ExecPoll::Done(result) => return result,
                    ExecPoll::Until(at) => {
                        if break_at.is_some_and(|b| now >= b) {
                            s.record(FaultKind::WaitBroken, VERB, id, now);
                            return Err(BackendError::new(
                                BackendErrorKind::Unavailable,
                                VERB,
                                id,
                                "injected: h2 protocol error: connection reset",
                            ));
                        }
                        match (at, break_at) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        }
                    }
                }
            };
            let woken = async {
                tokio::select! {
                    biased;
                    () = &mut notified => {}
                    () = &mut changed => {}
                }
            };
            match wake_at {
                Some(at) => {
                    let _ =
                        tokio::time::timeout(at.saturating_duration_since(Instant::now()), woken)
                            .await;
                }
                None => woken.await,
            }
        }
    }

    async fn wait_exit(&self, target: &Target) -> Result<ExitStatus, BackendError> {
        const VERB: &str = "Tasks.Wait";
        let id = target.as_str();
        let (decision, epoch, break_at) = {
            let mut s = self.state();
            let now = Instant::now();
            if !s.model.is_up(now) {
                return Err(connection_refused(VERB, id));
            }
            let decision = s.draw(VERB, id, now, true);
            let break_at = s.draw_wait_break(now);
            (decision, s.model.epoch, break_at)
        };
        match decision {
            Decision::Fail(kind) => return Err(injected(kind, VERB, id)),
            Decision::Deadline { .. } => {
                return Err(injected(BackendErrorKind::DeadlineExceeded, VERB, id));
            }
            Decision::Hang { .. } => return self.stall_until_restart(id, epoch).await,
            Decision::Slow { delay, .. } => sleep_for(delay).await,
            Decision::ReplyLost | Decision::None => {}
        }
        sleep_for(self.inner.cfg.latency.wait_task).await;
        let begin = {
            let mut s = self.state();
            let now = Instant::now();
            if !s.model.is_up(now) || s.model.epoch != epoch {
                return Err(transport_error(VERB, id));
            }
            s.model.settle(now);
            s.model.wait_begin(target, now)?
        };
        let seq = match begin {
            WaitBegin::Exited(exit) => return Ok(exit),
            WaitBegin::Blocked { seq } => seq,
        };
        let mine = self.waiters_of(id);
        loop {
            let mut notified = pin!(self.inner.notify.notified());
            notified.as_mut().enable();
            let mut changed = pin!(mine.notified());
            changed.as_mut().enable();
            let wake_at = {
                let mut s = self.state();
                let now = Instant::now();
                s.model.settle(now);
                match s.model.wait_poll(target, seq, epoch) {
                    WaitPoll::Done(result) => return result,
                    WaitPoll::Until(exit_at) => {
                        if break_at.is_some_and(|b| now >= b) {
                            s.record(FaultKind::WaitBroken, VERB, id, now);
                            return Err(BackendError::new(
                                BackendErrorKind::Unavailable,
                                VERB,
                                id,
                                "injected: h2 protocol error: connection reset",
                            ));
                        }
                        match (exit_at, break_at) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        }
                    }
                }
            };
            let woken = async {
                tokio::select! {
                    biased;
                    () = &mut notified => {}
                    () = &mut changed => {}
                }
            };
            match wake_at {
                Some(at) => {
                    let _ =
                        tokio::time::timeout(at.saturating_duration_since(Instant::now()), woken)
                            .await;
                }
                None => woken.await,
            }
        }
    }
}

#[async_trait]
impl Backend for SimBackend {
    async fn resolve_image(&self, id: &ContainerId, image: &str) -> Result<ImageRef, BackendError> {
        // An `Images.List` costs about what a `Containers.List` does.
        let lat = self.inner.cfg.latency.list;
        self.call("Images.List", id.as_str(), lat, |m, _| {
            m.resolve_image(id.as_str(), image)
        })
        .await
    }

    async fn create_container(&self, meta: &ContainerMeta) -> Result<(), BackendError> {
        let lat = self.inner.cfg.latency.create_container;
        self.call("Containers.Create", meta.id.as_str(), lat, |m, now| {
            m.create_container(meta, now)
        })
        .await
    }

    async fn create_sandbox(&self, meta: &SandboxMeta) -> Result<(), BackendError> {
        let lat = self.inner.cfg.latency.create_container;
        self.call("Containers.Create", meta.id.as_str(), lat, |m, now| {
            m.create_sandbox(meta, now)
        })
        .await
    }

    async fn delete_container(&self, target: &Target) -> Result<(), BackendError> {
        let lat = self.inner.cfg.latency.delete_container;
        self.call("Containers.Delete", target.as_str(), lat, |m, _| {
            m.delete_container(target)
        })
        .await
    }

    async fn create_task(&self, target: &Target) -> Result<u32, BackendError> {
        let lat = self.inner.cfg.latency.create_task;
        self.call("Tasks.Create", target.as_str(), lat, |m, now| {
            m.create_task(target, now)
        })
        .await
    }

    async fn start_task(&self, target: &Target) -> Result<u32, BackendError> {
        let lat = self.inner.cfg.latency.start_task;
        self.call("Tasks.Start", target.as_str(), lat, |m, now| {
            m.start_task(target, now)
        })
        .await
    }

    async fn wait_task(&self, target: &Target) -> Result<ExitStatus, BackendError> {
        self.wait(target).await
    }

    async fn kill_task(&self, target: &Target, signal: i32) -> Result<(), BackendError> {
        let lat = self.inner.cfg.latency.kill_task;
        self.call("Tasks.Kill", target.as_str(), lat, |m, now| {
            m.kill_task(target, signal, now)
        })
        .await
    }

    async fn delete_task(&self, target: &Target, kill: bool) -> Result<(), BackendError> {
        let lat = self.inner.cfg.latency.delete_task;
        self.call("Tasks.Delete", target.as_str(), lat, |m, now| {
            m.delete_task(target, kill, now)
        })
        .await
    }

    async fn task_status(&self, target: &Target) -> Result<TaskState, BackendError> {
        let lat = self.inner.cfg.latency.task_status;
        self.call("Tasks.Get", target.as_str(), lat, |m, _| {
            Ok(m.task_status(target))
        })
        .await
    }

    async fn update_resources(
        &self,
        id: &ContainerId,
        of: ResourcesOf,
        resources: &Resources,
    ) -> Result<(), BackendError> {
        let target = Target::Container(id.clone());
        match of {
            ResourcesOf::Task => {
                let lat = self.inner.cfg.latency.update_task;
                self.call("Tasks.Update", id.as_str(), lat, |m, now| {
                    m.update_task_resources(&target, resources, now)
                })
                .await
            }
            ResourcesOf::Record => {
                let lat = self.inner.cfg.latency.update_record;
                self.call("Containers.Update", id.as_str(), lat, |m, _| {
                    m.update_record_resources(&target, resources)
                })
                .await
            }
        }
    }

    async fn reopen_log(&self, id: &ContainerId) -> Result<(), BackendError> {
        let target = Target::Container(id.clone());
        let lat = self.inner.cfg.latency.reopen_log;
        self.call_via(Via::Berth, "Logs.Reopen", id.as_str(), lat, |m, _| {
            m.reopen_log(&target)
        })
        .await
    }

    async fn start_exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<u32, BackendError> {
        let target = Target::Container(id.clone());
        let lat = self.inner.cfg.latency.exec;
        self.call("Tasks.Exec", id.as_str(), lat, |m, now| {
            m.start_exec(&target, exec, now)
        })
        .await
    }

    async fn wait_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
    ) -> Result<ExecOutput, BackendError> {
        self.wait_exec_output(&Target::Container(id.clone()), exec_id)
            .await
    }

    async fn kill_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
        signal: i32,
    ) -> Result<(), BackendError> {
        let target = Target::Container(id.clone());
        let lat = self.inner.cfg.latency.exec;
        self.call("Tasks.Kill", id.as_str(), lat, |m, now| {
            m.kill_exec(&target, exec_id.as_str(), signal, now)
        })
        .await
    }

    async fn delete_exec(&self, id: &ContainerId, exec_id: &ExecId) -> Result<(), BackendError> {
        let target = Target::Container(id.clone());
        let lat = self.inner.cfg.latency.exec;
        self.call("Tasks.DeleteProcess", id.as_str(), lat, |m, now| {
            m.delete_exec(&target, exec_id.as_str(), now)
        })
        .await
    }

    async fn sweep_execs(&self, id: &ContainerId) -> Result<u32, BackendError> {
        let target = Target::Container(id.clone());
        let lat = self.inner.cfg.latency.exec;
        self.call("Tasks.ListPids", id.as_str(), lat, |m, now| {
            m.sweep_execs(&target, now)
        })
        .await
    }

    async fn list(&self) -> Result<Listing, BackendError> {
        let lat = self.inner.cfg.latency.list;
        let mut listing = self
            .call("Containers.List", "", lat, |m, _| Ok(m.list()))
            .await?;
        let mut s = self.state();
        let rate = s.faults.calls.meta_read;
        if rate > 0.0 {
            let now = Instant::now();
            for l in &mut listing.containers {
                if l.meta.is_ok() && s.rng.gen_bool(rate.min(1.0)) {
                    s.record(FaultKind::MetaRead, "Containers.List", &l.id, now);
                    l.meta = Err("injected: reading the metadata extension failed (EIO)".into());
                }
            }
        }
        Ok(listing)
    }

    async fn task_metrics(&self, ids: &[ContainerId]) -> Result<Vec<TaskMetrics>, BackendError> {
        let lat = self.inner.cfg.latency.task_status;
        let target = match ids {
            [one] => one.as_str().to_owned(),
            _ => String::new(),
        };
        self.call("Tasks.Metrics", &target, lat, |m, now| {
            Ok(m.task_metrics(ids, now))
        })
        .await
    }
}
