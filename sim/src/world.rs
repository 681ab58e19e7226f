//! The simulator's world: what every task of one run shares (the simulated containerd and
//! disk, the berth incarnation serving now, the trace, the reply model, the ids the clients
//! learned, the violations), and what the tasks do with it: trace an event, record a
//! violation, observe berth through the reply model, run the step checks, crash and restart
//! the berth node. What the run and the clients share is public; the berth node's own
//! state (incarnation slot, readiness, calls in flight, crash trigger, violations) is
//! private, changed only by these methods.
//!
//! The run (`run`: chaos, heal, the final checks) and the clients (`client`) work on a
//! [`SimWorld`] and on nothing of each other's: the run only spawns the clients'
//! scripts, the clients know nothing of the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_core::{CommandError, ContainerId, SandboxId, Target};
use berth_service::{
    ContainerFilter, SandboxFilter, Service, ServiceConfig, ServiceError, ServiceHandle,
};
use berth_simbackend::{DiskConfig, FaultPlan, SimBackend, SimConfig, SimDisk};
use madsim::runtime::{Handle, NodeHandle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::bugs::Bug;
use crate::checks::first_exit::FirstExits;
use crate::checks::{execs, graceful, invariants, replies::Replies, sweep, write_order};
use crate::probe::{InFlight, Probe, ProbedBackend, ProbedStore, Trigger};
use crate::shape::{FaultMask, FaultSwitch, Shape};
use crate::trace::Trace;
use crate::workload::Workload;

/// Locks `m`; a poisoned lock is used as it is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One berth incarnation's handle.
#[derive(Clone)]
pub(crate) struct Incarnation {
    pub number: u64,
    pub svc: ServiceHandle,
}

/// Ids the clients learned, by workload index.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Container index → its id and the pod it was created in.
    pub ctrs: BTreeMap<usize, (ContainerId, SandboxId)>,
    /// Pod index → its current id.
    pub pods: BTreeMap<usize, SandboxId>,
}

/// Everything a run's tasks share: the berth node, the run (chaos, heal) and the clients.
pub(crate) struct SimWorld {
    pub seed: u64,
    pub shape: Shape,
    pub workload: Workload,
    pub sim: SimBackend,
    pub disk: SimDisk,
    pub epoch: Instant,
    pub trace: Arc<Mutex<Trace>>,
    pub model: Mutex<Replies>,
    /// Serializes observations (see [`Replies`]).
    pub observe_lock: tokio::sync::Mutex<()>,
    slot: Mutex<Option<Incarnation>>,
    number: AtomicU64,
    ready_no: AtomicU64,
    inflight: Mutex<InFlight>,
    pub registry: Mutex<Registry>,
    violations: Mutex<Vec<String>>,
    failed: watch::Sender<bool>,
    crash_points: Mutex<Vec<String>>,
    /// What each client is doing (for "stuck" reports).
    pub progress: Mutex<Vec<String>>,
    /// The request each client (by actor name) has in flight: what, its object, when sent
    /// (simulated µs).
    pub last_request: Mutex<BTreeMap<String, (String, String, u64)>>,
    pub requests: AtomicU64,
    /// Trace length at the last invariant check.
    checked_at: AtomicU64,
    /// How many of the disk's orphan-sweep removals the sweep check has judged.
    sweeps_checked: AtomicU64,
    /// The first durable exit of each container, for the first-exit check.
    first_exits: Mutex<FirstExits>,
    /// The supervisor's aimed crash point.
    trigger: Arc<Trigger>,
    /// The requests that may kill a container's process, for the graceful-stop check.
    pub kills: Mutex<graceful::Requests>,
    /// Woken when a client asks for a crash right after a reply
    /// ([`SimWorld::crash_after_reply`]); the chaos loop kills berth then.
    pub crash_asked: tokio::sync::Notify,
    /// Replies after which a crash was considered (numbers the draws).
    reply_crashes: AtomicU64,
    /// Each berth incarnation's start and readiness (unix ns), by number − 1, for the exec
    /// sweep check.
    pub incarnations: Mutex<Vec<execs::Incarnation>>,
    /// The berth node and the client tasks: stopped at the end of the run, because a task
    /// left pending holds the world (through the simulated containerd's wakers) in a cycle
    /// that would leak every seed's memory.
    ends: Mutex<(Option<NodeHandle>, Vec<madsim::task::AbortHandle>)>,
}

impl SimWorld {
    /// The world of one run of `seed` in `shape`: the simulated containerd and disk with
    /// the seed's fault plan (restricted to `shape.faults`), the seed's workload, no berth
    /// yet. `keep_trace` keeps the trace's text (else it is only hashed).
    pub fn new(seed: u64, shape: Shape, keep_trace: bool) -> SimWorld {
        let shape = shape.normalized();
        let wall_base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        // The service's wall clock is SystemTime (simulated by madsim); the backend's
        // exit times come from this clock: both start together and tick together.
        let sim = SimBackend::with_config(
            seed,
            SimConfig {
                wall_base,
                ..SimConfig::default()
            },
        );
        let disk = SimDisk::with_config(
            seed,
            DiskConfig {
                skip_file_fsync: shape.bug == Some(Bug::NoFileFsync),
                skip_dir_fsync: shape.bug == Some(Bug::NoDirFsync),
                ..DiskConfig::default()
            },
        );
        disk.set_clock(sim.clock());
        let plan = fault_plan(seed, shape.faults);
        sim.set_faults(plan.clone());
        disk.set_faults(&plan);
        let workload = Workload::generate(seed, &shape);
        let clients = shape.clients;
        LIVE_WORLDS.fetch_add(1, Ordering::SeqCst);
        SimWorld {
            seed,
            workload,
            sim,
            disk,
            epoch: Instant::now(),
            trace: Arc::new(Mutex::new(Trace::new(keep_trace))),
            model: Mutex::new(Replies::default()),
            observe_lock: tokio::sync::Mutex::new(()),
            slot: Mutex::new(None),
            number: AtomicU64::new(0),
            ready_no: AtomicU64::new(0),
            inflight: Mutex::new(InFlight::default()),
            registry: Mutex::new(Registry::default()),
            violations: Mutex::new(Vec::new()),
            failed: watch::channel(false).0,
            crash_points: Mutex::new(Vec::new()),
            progress: Mutex::new(vec!["not started".to_owned(); clients]),
            last_request: Mutex::new(BTreeMap::new()),
            requests: AtomicU64::new(0),
            checked_at: AtomicU64::new(u64::MAX),
            sweeps_checked: AtomicU64::new(0),
            first_exits: Mutex::new(FirstExits::default()),
            trigger: Arc::new(Trigger::default()),
            kills: Mutex::new(graceful::Requests::default()),
            crash_asked: tokio::sync::Notify::new(),
            reply_crashes: AtomicU64::new(0),
            incarnations: Mutex::new(Vec::new()),
            ends: Mutex::new((None, Vec::new())),
            shape,
        }
    }

    /// Simulated microseconds since the run began.
    pub fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records a trace event.
    pub fn event(
        &self,
        actor: &str,
        what: &str,
        object: &str,
        outcome: i64,
        detail: impl FnOnce() -> String,
    ) {
        let at = self.micros();
        lock(&self.trace).event(at, actor, what, object, outcome, detail);
    }

    /// Records a violation; the run stops at the next scheduling point.
    pub fn fail(&self, violation: String) {
        let at = self.micros();
        lock(&self.trace).event(at, "checker", "violation", "", 1, || violation.clone());
        lock(&self.violations).push(format!("[{:.3}s] {violation}", at as f64 / 1e6));
        self.failed.send_replace(true);
    }

    /// Records `r`'s violation, if any.
    pub fn check(&self, r: Result<(), String>) {
        if let Err(v) = r {
            self.fail(v);
        }
    }

    /// True once a violation was recorded.
    pub fn has_failed(&self) -> bool {
        *self.failed.borrow()
    }

    /// The serving incarnation, if berth runs (it may still be recovering).
    pub fn current(&self) -> Option<Incarnation> {
        lock(&self.slot).clone()
    }

    /// The incarnation, if it has finished recovering.
    pub fn ready(&self) -> Option<Incarnation> {
        let inc = self.current()?;
        (self.ready_no.load(Ordering::SeqCst) == inc.number).then_some(inc)
    }

    /// Waits until a berth incarnation exists (clients retry meanwhile, like kubelet
    /// against a socket that is not there).
    pub async fn incarnation(&self) -> Incarnation {
        loop {
            if let Some(inc) = self.current() {
                return inc;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn service_config(&self, number: u64) -> ServiceConfig {
        let mut config = ServiceConfig::default();
        config.core.backoff_initial = Duration::from_millis(500);
        config.core.backoff_max = Duration::from_secs(10);
        config.core.resync_backoff_max = Duration::from_secs(5);
        config.core.exec_output_cap = crate::workload::SIM_EXEC_OUTPUT_CAP;
        config.recovery_parallelism = 8;
        config.id_seed = self.seed.rotate_left(17) ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        match self.shape.bug {
            Some(Bug::RecoveryNoDeadline) => {
                config.recovery_timeout = Duration::from_secs(86_400);
            }
            #[cfg(feature = "planted-bugs")]
            Some(Bug::Core(core)) => config.core.planted_bug = Some(core.to_core()),
            _ => {}
        }
        config
    }

    /// One ContainerStatus, judged by the reply model.
    pub async fn observe(&self, id: &ContainerId) {
        let _serial = self.observe_lock.lock().await;
        let Some(inc) = self.ready() else {
            return;
        };
        let obs = lock(&self.model).begin_observation();
        let view = match inc.svc.container_status(id.as_str()).await {
            Ok(v) => Some(v),
            Err(ServiceError::Command(CommandError::ContainerNotFound { .. })) => None,
            Err(_) => return,
        };
        let r = lock(&self.model).observed(obs, inc.number, id, view.as_ref());
        self.check(r);
    }

    /// One ListContainers + ListPodSandbox, judged by the reply model and the name checks.
    pub async fn observe_all(&self) {
        let _serial = self.observe_lock.lock().await;
        let Some(inc) = self.ready() else {
            return;
        };
        let obs = lock(&self.model).begin_observation();
        let Ok(views) = inc.svc.list_containers(ContainerFilter::default()).await else {
            return;
        };
        let Ok(pods) = inc.svc.list_sandboxes(SandboxFilter::default()).await else {
            return;
        };
        let r = lock(&self.model).observed_all(obs, inc.number, &views);
        self.check(r);
        self.check(invariants::names_bijective(&views, &pods));
    }

    /// The checks after every step: the core's invariants, if berth serves and anything
    /// happened since they were last checked, and one checkpoint write of a record at a
    /// time.
    pub async fn step_checks(&self) {
        let events = lock(&self.trace).len();
        if self.checked_at.swap(events, Ordering::SeqCst) == events {
            return;
        }
        if let Some(inc) = self.ready() {
            self.check(invariants::core(inc.svc.check_invariants().await));
        }
        if !self.has_failed() {
            self.check(write_order::one_write_at_a_time(&self.disk.overlaps()));
        }
        if !self.has_failed()
            && let Some(v) = self.judge_first_exits().into_iter().next()
        {
            self.fail(v);
        }
        let swept = self.disk.swept_count() as u64;
        if !self.has_failed() && self.sweeps_checked.swap(swept, Ordering::SeqCst) != swept {
            let truth = self.sim.truth();
            let bad = sweep::known_checkpoints_kept(&self.disk.swept(), |id| {
                truth.records.get(id).map(|r| r.created_at)
            });
            if let Some(v) = bad.into_iter().next() {
                self.fail(v);
            }
        }
        if !self.has_failed() {
            let now = self.sim.now_wall();
            let incs = lock(&self.incarnations).clone();
            self.check(execs::swept_in_time(
                &self.sim.execs(),
                &incs,
                now,
                execs::SWEEP_BOUND,
            ));
        }
    }

    /// The first-exit check of the records the disk made durable or found since it last
    /// ran ([`crate::checks::first_exit`]).
    pub fn judge_first_exits(&self) -> Vec<String> {
        let mut first = lock(&self.first_exits);
        let records = self.disk.records_from(first.seen());
        if records.is_empty() {
            return Vec::new();
        }
        first.judge(&records, |id| self.sim.truth_of(id).exits)
    }

    /// A receiver that turns true at the first violation (the run stops there).
    pub fn failure_signal(&self) -> watch::Receiver<bool> {
        self.failed.subscribe()
    }

    /// Every violation recorded, in order, stamped with its simulated time.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    /// What each berth crash interrupted, in order.
    pub fn crash_points(&self) -> Vec<String> {
        lock(&self.crash_points).clone()
    }

    /// The calls the current berth incarnation has in flight, as a crash-point label.
    pub fn calls_in_flight(&self) -> String {
        Probe::crash_point(&lock(&self.inflight))
    }

    /// Aims the next crash just before (`after == false`) or just after the effect of the
    /// next `verb` call, and waits, at most `within`, for berth to get there (the task that
    /// gets there stops: berth is about to be killed, see [`SimWorld::crash`]).
    pub async fn aim_crash(&self, verb: &'static str, after: bool, within: Duration) {
        self.trigger.arm(verb, after);
        let _ = tokio::time::timeout(within, self.trigger.notify.notified()).await;
    }

    /// A client got an OK for a request whose promise must hold through a crash right
    /// after its reply (`what`, e.g. a pod stop): during the chaos phase of a shape with
    /// crashes, half the time (draws of a stream of their own, so that the rest of the run's
    /// draws stay as they were) berth is killed right there, before it does anything else
    /// of note (an extra crash, on top of the shape's).
    pub fn crash_after_reply(&self, what: &str, object: &str) {
        if self.shape.crashes == 0
            || self.epoch.elapsed() >= Duration::from_secs(self.shape.chaos_secs)
            || self.has_failed()
        {
            return;
        }
        let n = self.reply_crashes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rng = SmallRng::seed_from_u64(
            self.seed ^ REPLY_CRASH_STREAM ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        if rng.gen_bool(0.5) {
            self.event("harness", "crash_after_reply", object, 0, || {
                what.to_owned()
            });
            self.crash_asked.notify_one();
        }
    }

    /// Keeps the berth node and the client tasks for [`SimWorld::stop_tasks`].
    pub fn hold_tasks(&self, node: NodeHandle, clients: Vec<madsim::task::AbortHandle>) {
        *lock(&self.ends) = (Some(node), clients);
    }

    /// Kills the berth node and aborts the client tasks kept by [`SimWorld::hold_tasks`]
    /// (see `ends`); the executor drops them at its next turn.
    pub fn stop_tasks(&self) {
        let (node, clients) = std::mem::take(&mut *lock(&self.ends));
        if let Some(node) = node {
            Handle::current().kill(node.id());
        }
        for c in clients {
            c.abort();
        }
    }

    /// Kills the berth node (`power_loss`: the disk loses its page cache too) and traces
    /// what the crash interrupted.
    pub fn crash(&self, handle: &Handle, node: &NodeHandle, power_loss: bool) {
        let point = self.calls_in_flight();
        let aimed = self.trigger.disarm();
        let recovering = self.ready_no.load(Ordering::SeqCst) != self.number.load(Ordering::SeqCst);
        let label = format!(
            "{}{}{point}",
            if recovering { "recovering " } else { "" },
            aimed.map(|a| format!("{a} | ")).unwrap_or_default()
        );
        *lock(&self.slot) = None;
        handle.kill(node.id());
        let report = self.disk.crash(power_loss);
        let what = if power_loss {
            "power_loss"
        } else {
            "process_crash"
        };
        self.event("chaos", what, "berth", 0, || {
            format!(
                "berth killed during {label}; lost {} dir changes, {} writes, torn {:?}",
                report.lost_dir_changes, report.lost_writes, report.torn
            )
        });
        lock(&self.crash_points).push(label);
    }

    /// Restarts the berth node (a new incarnation begins recovering).
    pub fn restart(&self, handle: &Handle, node: &NodeHandle) {
        self.event("chaos", "restart", "berth", 0, String::new);
        handle.restart(node.id());
    }

    /// Waits, at most `bound`, for an incarnation that has finished recovering.
    pub async fn wait_ready(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if self.ready().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// Stream constant of the crash-after-reply draws ([`SimWorld::crash_after_reply`]).
const REPLY_CRASH_STREAM: u64 = 0x2E71_0C2A_5000_0007;

/// Runs whose world is still alive: 0 once every run has returned (a leak check: a task
/// left pending at the end of a run would keep its world, and every seed's memory, alive).
static LIVE_WORLDS: AtomicU64 = AtomicU64::new(0);

/// How many runs' worlds are alive (0 between runs; see the soak report).
pub fn live_worlds() -> u64 {
    LIVE_WORLDS.load(Ordering::SeqCst)
}

impl Drop for SimWorld {
    fn drop(&mut self) {
        LIVE_WORLDS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The seed's swarm plan, restricted to the kinds `mask` allows.
fn fault_plan(seed: u64, mask: FaultMask) -> FaultPlan {
    let mut p = FaultPlan::from_seed(seed);
    let off = |f: FaultSwitch, rate: &mut f64| {
        if !mask.allows(f) {
            *rate = 0.0;
        }
    };
    off(FaultSwitch::Unavailable, &mut p.calls.unavailable);
    off(
        FaultSwitch::DeadlineExceeded,
        &mut p.calls.deadline_exceeded,
    );
    off(FaultSwitch::Other, &mut p.calls.other);
    off(
        FaultSwitch::FailedPrecondition,
        &mut p.calls.failed_precondition,
    );
    off(FaultSwitch::ReplyLost, &mut p.calls.reply_lost);
    off(FaultSwitch::Slow, &mut p.calls.slow);
    off(FaultSwitch::Hang, &mut p.calls.hang);
    off(FaultSwitch::WaitBroken, &mut p.calls.wait_broken);
    off(FaultSwitch::SyncFailure, &mut p.disk.sync_failure);
    off(FaultSwitch::NoSpace, &mut p.disk.no_space);
    off(FaultSwitch::TornWrite, &mut p.disk.torn_write);
    off(FaultSwitch::LostWrite, &mut p.disk.lost_write);
    off(FaultSwitch::LostRename, &mut p.disk.lost_rename);
    off(
        FaultSwitch::ContainerdRestart,
        &mut p.chaos.containerd_restart,
    );
    off(FaultSwitch::ShimDeath, &mut p.chaos.shim_death);
    off(FaultSwitch::ExitNow, &mut p.chaos.exit_now);
    off(FaultSwitch::LateExit, &mut p.calls.late_exit);
    off(FaultSwitch::MetaRead, &mut p.calls.meta_read);
    off(FaultSwitch::ExitRace, &mut p.chaos.exit_race);
    p
}

/// The berth node's main task: builds the whole service state (it dies with the node),
/// publishes the handle, reports readiness, then serves until killed.
pub(crate) async fn berth_main(w: Arc<SimWorld>) {
    let number = w.number.fetch_add(1, Ordering::SeqCst) + 1;
    let inflight = InFlight::default();
    *lock(&w.inflight) = inflight.clone();
    let probe = Probe {
        trace: w.trace.clone(),
        epoch: w.epoch,
        inflight,
        actor: format!("berth#{number}"),
        task_status_deadline: w.shape.bug != Some(Bug::RecoveryNoDeadline),
        trigger: Some(w.trigger.clone()),
        on_started: Some({
            let w = w.clone();
            Arc::new(move |id: &str| {
                let r = lock(&w.model).task_started(id);
                w.check(r);
            })
        }),
        on_exit_write: Some({
            let w = w.clone();
            Arc::new(move |id: &str| {
                let Ok(cid) = ContainerId::new(id) else {
                    return;
                };
                if let Some(death) = w.sim.exit_race(&Target::Container(cid)) {
                    w.event("chaos", "exit_race", id, 1, || {
                        format!(
                            "the shim of pod {} died as berth began recording an exit",
                            death.pod
                        )
                    });
                }
            })
        }),
    };
    lock(&w.kills).berth_started(w.sim.now_wall());
    lock(&w.incarnations).push(execs::Incarnation {
        started: w.sim.now_wall(),
        ready: None,
    });
    let backend = Arc::new(ProbedBackend::new(w.sim.clone(), probe.clone()));
    let store = Arc::new(ProbedStore::new(w.disk.clone(), probe));
    let svc = Service::start(backend, store, w.service_config(number));
    w.event("berth", "start", "", number as i64, || {
        format!("incarnation {number}")
    });
    *lock(&w.slot) = Some(Incarnation {
        number,
        svc: svc.clone(),
    });
    if svc.wait_ready().await.is_ok() {
        w.ready_no.store(number, Ordering::SeqCst);
        if let Some(inc) = lock(&w.incarnations).get_mut(number as usize - 1) {
            inc.ready = Some(w.sim.now_wall());
        }
        w.event("berth", "ready", "", number as i64, String::new);
    }
    std::future::pending::<()>().await;
}
