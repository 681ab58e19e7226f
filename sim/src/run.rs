//! One run: a madsim runtime on a fresh thread (HashMap order and every draw then depend on
//! the seed alone), the berth node, the clients, the chaos and heal phases, the checks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_core::{CommandError, ContainerId, SandboxId};
use berth_service::{
    ContainerFilter, ContainerView, SandboxFilter, SandboxView, Service, ServiceConfig,
    ServiceError, ServiceHandle,
};
use berth_simbackend::{Chaos, DiskConfig, FaultCounts, FaultPlan, SimBackend, SimConfig, SimDisk};
use madsim::runtime::{Handle, NodeHandle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::bugs::Bug;
use crate::checks::{
    exits, graceful, invariants, leaks, replies::Replies, stuck, truth, write_order,
};
use crate::probe::{CRASH_TARGETS, InFlight, Probe, ProbedBackend, ProbedStore, Trigger};
use crate::shape::{Fault, FaultMask, Shape};
use crate::trace::Trace;
use crate::workload::Workload;

/// Stream constant of the supervisor's draws (crash times, power loss or not, outages).
const CHAOS_STREAM: u64 = 0xC4A0_5000_0000_0003;

/// Simulated time after the clients finish, for planned exits (≤ 15 s after a start) and
/// retries (backoffs capped at 10 s) to play out before the final checks.
const QUIESCE: Duration = Duration::from_secs(30);

/// A successful run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// FNV-1a of the trace.
    pub hash: u64,
    /// Trace events.
    pub events: u64,
    /// Faults injected, by kind (backend, disk, crashes).
    pub faults: FaultCounts,
    /// What each berth crash interrupted (calls and disk steps in flight).
    pub crash_points: Vec<String>,
    /// Simulated time the run took.
    pub sim_time: Duration,
    /// CRI requests the clients sent.
    pub requests: u64,
    /// The readable trace (only with `keep_trace`).
    pub trace: Vec<String>,
}

/// A failed run: what broke, and how to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The shape.
    pub shape: Shape,
    /// Every violation found (the first one first), or the panic.
    pub violations: Vec<String>,
    /// FNV-1a of the trace up to the failure.
    pub hash: u64,
    /// Trace events up to the failure.
    pub events: u64,
    /// The readable trace (only with `keep_trace`).
    pub trace: Vec<String>,
}

impl Failure {
    /// The one command line that replays this failure with its trace.
    pub fn replay_line(&self) -> String {
        self.shape.replay_line(self.seed)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "FAIL seed={} {}", self.seed, self.shape.env())?;
        for v in self.violations.iter().take(8) {
            writeln!(f, "  {v}")?;
        }
        if self.violations.len() > 8 {
            writeln!(f, "  … {} more", self.violations.len() - 8)?;
        }
        write!(f, "replay: {}", self.replay_line())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

/// Everything a run's tasks share.
pub(crate) struct World {
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
    /// The supervisor's aimed crash point.
    trigger: Arc<Trigger>,
    /// The requests that may kill a container's process, for the graceful-stop check.
    pub kills: Mutex<graceful::Requests>,
    /// The berth node and the client tasks: stopped at the end of the run, because a task
    /// left pending holds the world (through the simulated containerd's wakers) in a cycle
    /// that would leak every seed's memory.
    ends: Mutex<(Option<NodeHandle>, Vec<madsim::task::AbortHandle>)>,
}

impl World {
    fn new(seed: u64, shape: Shape, keep_trace: bool) -> World {
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
        World {
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
            trigger: Arc::new(Trigger::default()),
            kills: Mutex::new(graceful::Requests::default()),
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
        config.recovery_parallelism = 8;
        config.id_seed = self.seed.rotate_left(17) ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        match self.shape.bug {
            Some(Bug::RecoveryNoDeadline) => {
                config.recovery_timeout = Duration::from_secs(86_400);
            }
            #[cfg(feature = "planted-bugs")]
            Some(Bug::Core(core)) => config.core.planted_bug = Some(core.to_core()),
            #[cfg(feature = "planted-bugs")]
            Some(Bug::UnqueuedPersists) => config.planted_unqueued_persists = true,
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
    /// happened since they were last checked.
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
    }

    fn crash(&self, handle: &Handle, node: &NodeHandle, power_loss: bool) {
        let point = Probe::crash_point(&lock(&self.inflight));
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

    fn restart(&self, handle: &Handle, node: &NodeHandle) {
        self.event("chaos", "restart", "berth", 0, String::new);
        handle.restart(node.id());
    }

    async fn wait_ready(&self, bound: Duration) -> bool {
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

/// Runs whose world is still alive: 0 once every run has returned (a leak check: a task
/// left pending at the end of a run would keep its world, and every seed's memory, alive).
static LIVE_WORLDS: AtomicU64 = AtomicU64::new(0);

/// How many runs' worlds are alive (0 between runs; see the soak report).
pub fn live_worlds() -> u64 {
    LIVE_WORLDS.load(Ordering::SeqCst)
}

impl Drop for World {
    fn drop(&mut self) {
        LIVE_WORLDS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The seed's swarm plan, restricted to the kinds `mask` allows.
pub(crate) fn fault_plan(seed: u64, mask: FaultMask) -> FaultPlan {
    let mut p = FaultPlan::from_seed(seed);
    let off = |f: Fault, rate: &mut f64| {
        if !mask.allows(f) {
            *rate = 0.0;
        }
    };
    off(Fault::Unavailable, &mut p.calls.unavailable);
    off(Fault::DeadlineExceeded, &mut p.calls.deadline_exceeded);
    off(Fault::Other, &mut p.calls.other);
    off(Fault::FailedPrecondition, &mut p.calls.failed_precondition);
    off(Fault::ReplyLost, &mut p.calls.reply_lost);
    off(Fault::Slow, &mut p.calls.slow);
    off(Fault::Hang, &mut p.calls.hang);
    off(Fault::WaitBroken, &mut p.calls.wait_broken);
    off(Fault::SyncFailure, &mut p.disk.sync_failure);
    off(Fault::NoSpace, &mut p.disk.no_space);
    off(Fault::TornWrite, &mut p.disk.torn_write);
    off(Fault::LostWrite, &mut p.disk.lost_write);
    off(Fault::LostRename, &mut p.disk.lost_rename);
    off(Fault::ContainerdRestart, &mut p.chaos.containerd_restart);
    off(Fault::ShimDeath, &mut p.chaos.shim_death);
    off(Fault::ExitNow, &mut p.chaos.exit_now);
    off(Fault::LateExit, &mut p.calls.late_exit);
    p
}

/// The berth node's main task: builds the whole service state (it dies with the node),
/// publishes the handle, reports readiness, then serves until killed.
async fn berth_main(w: Arc<World>) {
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
    };
    lock(&w.kills).berth_started(w.sim.now_wall());
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
        w.event("berth", "ready", "", number as i64, String::new);
    }
    std::future::pending::<()>().await;
}

/// The chaos phase: crashes at their scheduled times (some right into a recovery), and a
/// chaos draw (containerd restart, shim death, exit) between them.
async fn chaos(w: &Arc<World>, handle: &Handle, node: &NodeHandle) {
    let mut rng = SmallRng::seed_from_u64(w.seed ^ CHAOS_STREAM);
    let end = w.epoch + Duration::from_secs(w.shape.chaos_secs);
    let span = w.shape.chaos_secs * 1000;
    // Each crash time from a stream of its own: fewer crashes (shrinking) keep the others.
    let mut crashes: Vec<u64> = (0..w.shape.crashes as u64)
        .map(|i| {
            SmallRng::seed_from_u64(
                w.seed ^ CHAOS_STREAM ^ (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )
            .gen_range(500..span.max(501))
        })
        .collect();
    crashes.sort_unstable();
    let mut crashes: std::collections::VecDeque<Instant> = crashes
        .into_iter()
        .map(|ms| w.epoch + Duration::from_millis(ms))
        .collect();
    let mut observed_no = 0;
    while Instant::now() < end && !w.has_failed() {
        let tick = Instant::now() + Duration::from_millis(rng.gen_range(100..1500));
        let next = crashes.front().map_or(tick, |c| (*c).min(tick)).min(end);
        tokio::time::sleep_until(next).await;
        if crashes.front().is_some_and(|c| *c <= Instant::now()) {
            crashes.pop_front();
            let power = w.shape.faults.allows(Fault::PowerLoss) && rng.gen_bool(0.5);
            // Half the crashes are aimed: just before, or just after the effect of, the next
            // call of a chosen step (at most 5 s later; else wherever berth is then).
            if rng.gen_bool(0.5) {
                let verb = CRASH_TARGETS[rng.gen_range(0..CRASH_TARGETS.len())];
                w.trigger.arm(verb, rng.gen_bool(0.5));
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), w.trigger.notify.notified()).await;
            }
            w.crash(handle, node, power);
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..3000))).await;
            w.restart(handle, node);
            // A quarter of the time, the next crash lands in the recovery just begun.
            if !crashes.is_empty() && rng.gen_bool(0.25) {
                crashes.pop_back();
                let soon = Instant::now() + Duration::from_millis(rng.gen_range(0..400));
                crashes.push_front(soon);
            }
        } else if Instant::now() < end
            && let Some(c) = w.sim.maybe_chaos()
        {
            match c {
                Chaos::ContainerdRestart(r) => {
                    w.event("chaos", "containerd_restart", "", 0, || format!("{r:?}"))
                }
                Chaos::ShimDeath(d) => w.event("chaos", "shim_death", d.pod.as_str(), 0, || {
                    format!("killed {:?} lost {:?}", d.killed, d.lost)
                }),
                Chaos::Exit(e) => {
                    w.event("chaos", "exit", e.target.as_str(), e.code.into(), || {
                        format!("code {} at {}", e.code, e.exited_at)
                    })
                }
            }
        }
        w.step_checks().await;
        if let Some(inc) = w.ready()
            && inc.number != observed_no
        {
            observed_no = inc.number;
            w.observe_all().await;
        }
    }
}

/// ListContainers and ListPodSandbox of a ready berth (errors as a violation text).
async fn lists(inc: &Incarnation) -> Result<(Vec<ContainerView>, Vec<SandboxView>), String> {
    let views = inc
        .svc
        .list_containers(ContainerFilter::default())
        .await
        .map_err(|e| format!("ListContainers failed after the heal: {e}"))?;
    let pods = inc
        .svc
        .list_sandboxes(SandboxFilter::default())
        .await
        .map_err(|e| format!("ListPodSandbox failed after the heal: {e}"))?;
    Ok((views, pods))
}

/// Every check of a settled system; `Err` lists the violations. `sweep`: the disk must hold
/// exactly berth's containers (a recovery swept it since the last removal).
async fn settled_checks(
    w: &World,
    sweep: bool,
) -> Result<(Vec<ContainerView>, Vec<String>), Vec<String>> {
    let Some(inc) = w.ready() else {
        return Err(vec!["berth is not serving after the heal".to_owned()]);
    };
    if let Err(v) = invariants::core(inc.svc.check_invariants().await) {
        return Err(vec![v]);
    }
    let (views, pods) = lists(&inc).await.map_err(|e| vec![e])?;
    let mut bad = Vec::new();
    if let Err(v) = invariants::names_bijective(&views, &pods) {
        bad.push(v);
    }
    let truth = w.sim.truth();
    let disk = sweep.then(|| w.disk.cached());
    bad.extend(truth::cri_matches_truth(&views, &pods, &truth));
    {
        let model = lock(&w.model);
        bad.extend(exits::no_exit_lost(&views, &truth, |id, task, pid| {
            model.process_promised(id, task, pid)
        }));
    }
    bad.extend(leaks::no_leaks(&views, &pods, &truth, disk.as_ref()));
    bad.extend(stuck::nothing_removing(&views));
    bad.extend(graceful::stop_signal_first(&truth.signals, &lock(&w.kills)));
    bad.extend(write_order::one_write_at_a_time(&w.disk.overlaps()).err());
    Ok((views, bad))
}

/// The settled checks, given a few chances to converge (a retry in backoff may still be
/// finishing): the last result counts.
async fn converged(w: &World, sweep: bool) -> Option<Vec<ContainerView>> {
    let mut last = Vec::new();
    for attempt in 0..6 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        w.observe_all().await;
        if w.has_failed() {
            return None;
        }
        match settled_checks(w, sweep).await {
            Ok((views, bad)) if bad.is_empty() => return Some(views),
            Ok((_, bad)) => last = bad,
            Err(bad) => last = bad,
        }
    }
    for v in last {
        w.fail(v);
    }
    None
}

/// Removes every container and pod, retrying, within [`stuck::TEARDOWN_BOUND`].
async fn teardown(w: &World) -> Result<(), String> {
    let deadline = Instant::now() + stuck::TEARDOWN_BOUND;
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "removing everything did not finish within {:?}",
                stuck::TEARDOWN_BOUND
            ));
        }
        let Some(inc) = w.ready() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let (views, pods) = lists(&inc).await?;
        if views.is_empty() && pods.is_empty() {
            return Ok(());
        }
        for v in &views {
            lock(&w.model).sent_remove(&v.meta.id);
            match inc.svc.remove_container(v.meta.id.as_str()).await {
                Ok(()) => {
                    let t = w.sim.truth_of(v.meta.id.as_str());
                    let r = lock(&w.model).acked_remove(&v.meta.id, &t);
                    w.check(r);
                }
                Err(e) => w.event("teardown", "remove", v.meta.id.as_str(), 1, || {
                    e.to_string()
                }),
            }
        }
        for p in &pods {
            lock(&w.model).sent_remove_pod(&p.meta.id);
            if let Err(e) = inc.svc.remove_pod_sandbox(p.meta.id.as_str()).await {
                w.event("teardown", "remove_pod", p.meta.id.as_str(), 1, || {
                    e.to_string()
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The heal phase and the final checks.
async fn heal(
    w: &Arc<World>,
    handle: &Handle,
    node: &NodeHandle,
    clients: Vec<tokio::task::JoinHandle<()>>,
) {
    let mut rng = SmallRng::seed_from_u64(w.seed ^ CHAOS_STREAM ^ 0xEA1);
    w.sim.set_faults(FaultPlan::none());
    w.disk.set_faults(&FaultPlan::none());
    w.event("harness", "heal", "", 0, String::new);
    let began = Instant::now();
    if w.current().is_none() {
        w.restart(handle, node);
    }
    if !w.wait_ready(stuck::READY_BOUND).await {
        let point = Probe::crash_point(&lock(&w.inflight));
        w.fail(format!(
            "berth not serving {:?} after the heal began (still recovering; calls in flight: {point})",
            stuck::READY_BOUND
        ));
        return;
    }
    for (k, client) in clients.into_iter().enumerate() {
        let left = (began + stuck::CLIENTS_BOUND).saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, client).await.is_err() {
            let at = lock(&w.progress)[k].clone();
            let actor = format!("client{k}");
            let pending = lock(&w.last_request)
                .iter()
                .find(|(a, _)| a.starts_with(&actor))
                .map(|(_, r)| r.clone());
            let detail = match pending {
                None => "no request in flight".to_owned(),
                Some((what, object, at)) => {
                    let state = match w.ready() {
                        None => "berth is not serving".to_owned(),
                        Some(inc) => match inc.svc.container_status(&object).await {
                            Ok(v) => format!(
                                "berth says {}{}",
                                crate::checks::describe(v.state, &v.status),
                                if v.removing { " (removing)" } else { "" }
                            ),
                            Err(e) => format!("berth says: {e}"),
                        },
                    };
                    format!(
                        "{what} {object} sent at {:.3}s never answered; {state}",
                        at as f64 / 1e6
                    )
                }
            };
            w.fail(format!(
                "client {k} did not finish within {:?} of the heal: stuck at {at}: {detail}",
                stuck::CLIENTS_BOUND
            ));
            return;
        }
    }
    w.event("harness", "clients_done", "", 0, String::new);
    tokio::time::sleep(QUIESCE).await;
    let Some(before) = converged(w, false).await else {
        return;
    };
    // A settled berth restarted (crash or power loss) reports exactly the same.
    let power = w.shape.faults.allows(Fault::PowerLoss) && rng.gen_bool(0.5);
    w.crash(handle, node, power);
    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..2000))).await;
    w.restart(handle, node);
    if !w.wait_ready(stuck::READY_BOUND).await {
        w.fail(format!(
            "berth not serving {:?} after the final restart",
            stuck::READY_BOUND
        ));
        return;
    }
    let Some(after) = converged(w, true).await else {
        return;
    };
    for v in truth::restart_preserves(&before, &after) {
        w.fail(v);
    }
    if w.has_failed() {
        return;
    }
    if let Err(v) = teardown(w).await {
        w.fail(v);
        return;
    }
    let Some(inc) = w.ready() else {
        w.fail("berth stopped serving during the teardown".to_owned());
        return;
    };
    match lists(&inc).await {
        Ok((views, pods)) => {
            let truth = w.sim.truth();
            for v in leaks::all_gone(&views, &pods, &truth, &w.disk.cached()) {
                w.fail(v);
            }
        }
        Err(e) => w.fail(e),
    }
    w.event("harness", "done", "", 0, String::new);
}

async fn simulate(w: Arc<World>) {
    let handle = Handle::current();
    let node = {
        let w = w.clone();
        handle
            .create_node()
            .name("berthd")
            .init(move || berth_main(w.clone()))
            .build()
    };
    let clients: Vec<_> = (0..w.shape.clients)
        .map(|k| tokio::spawn(crate::client::run(w.clone(), k)))
        .collect();
    *lock(&w.ends) = (
        Some(node.clone()),
        clients.iter().map(|c| c.abort_handle()).collect(),
    );
    chaos(&w, &handle, &node).await;
    if !w.has_failed() {
        heal(&w, &handle, &node, clients).await;
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

/// Runs one seed with one shape in a fresh madsim runtime on a fresh thread (so that
/// nothing carries over between seeds). A panic anywhere (berth, the harness, madsim's
/// deadlock or time-limit detectors) is a failure.
pub fn run_seed(seed: u64, shape: &Shape, keep_trace: bool) -> Result<Outcome, Failure> {
    let shape = shape.normalized();
    let s2 = shape.clone();
    let joined = std::thread::Builder::new()
        .name(format!("sim-{seed}"))
        .spawn(move || {
            let mut rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.set_time_limit(Duration::from_secs(4 * 3600));
            rt.block_on(async move {
                let w = Arc::new(World::new(seed, s2, keep_trace));
                let mut failed = w.failed.subscribe();
                tokio::select! {
                    biased;
                    _ = failed.wait_for(|f| *f) => {}
                    () = simulate(w.clone()) => {}
                }
                // Stop every task (see World::ends) and let the executor drop them.
                let (node, clients) = std::mem::take(&mut *lock(&w.ends));
                if let Some(node) = node {
                    Handle::current().kill(node.id());
                }
                for c in clients {
                    c.abort();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                let sim_time = w.epoch.elapsed();
                let mut faults = w.sim.fault_counts();
                faults.merge(&w.disk.fault_counts());
                let mut trace = lock(&w.trace);
                let (hash, events) = (trace.hash(), trace.len());
                let lines = trace.take_lines();
                let violations = lock(&w.violations).clone();
                (
                    violations,
                    hash,
                    events,
                    lines,
                    faults,
                    sim_time,
                    lock(&w.crash_points).clone(),
                    w.requests.load(Ordering::SeqCst),
                )
            })
        })
        .map_err(|e| e.to_string())
        .and_then(|t| t.join().map_err(|p| panic_text(&*p)));
    match joined {
        Err(panic) => Err(Failure {
            seed,
            shape,
            violations: vec![format!("panic: {panic}")],
            hash: 0,
            events: 0,
            trace: Vec::new(),
        }),
        Ok((violations, hash, events, trace, faults, sim_time, crash_points, requests)) => {
            if violations.is_empty() {
                Ok(Outcome {
                    seed,
                    hash,
                    events,
                    faults,
                    crash_points,
                    sim_time,
                    requests,
                    trace,
                })
            } else {
                Err(Failure {
                    seed,
                    shape,
                    violations,
                    hash,
                    events,
                    trace,
                })
            }
        }
    }
}
