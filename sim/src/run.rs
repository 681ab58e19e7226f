//! One run: a madsim runtime on a fresh thread (HashMap order and every draw then depend on
//! the seed alone), the berth node and the clients started on a [`SimWorld`], the chaos and
//! heal phases, the final checks, the outcome.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_service::{ContainerFilter, ContainerView, SandboxFilter, SandboxView};
use berth_simbackend::{Chaos, FaultCounts, FaultPlan};
use madsim::runtime::{Handle, NodeHandle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::checks::{
    execs, exited, exits, graceful, invariants, leaks, stuck, sweep, truth, write_order,
};
use crate::probe::CRASH_TARGETS;
use crate::shape::{FaultSwitch, Shape};
use crate::world::{Incarnation, SimWorld, berth_main, lock};

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

/// The chaos phase: crashes at their scheduled times (some right into a recovery), and a
/// chaos draw (containerd restart, shim death, exit) between them.
async fn chaos(w: &Arc<SimWorld>, handle: &Handle, node: &NodeHandle) {
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
    // Crashes a client asked for right after a reply draw from a stream of their own.
    let mut asked_rng = SmallRng::seed_from_u64(w.seed ^ CHAOS_STREAM ^ 0xA5CE);
    while Instant::now() < end && !w.has_failed() {
        let tick = Instant::now() + Duration::from_millis(rng.gen_range(100..1500));
        let next = crashes.front().map_or(tick, |c| (*c).min(tick)).min(end);
        let asked = tokio::select! {
            biased;
            () = w.crash_asked.notified() => true,
            () = tokio::time::sleep_until(next) => false,
        };
        if asked {
            let power = w.shape.faults.allows(FaultSwitch::PowerLoss) && asked_rng.gen_bool(0.5);
            w.crash(handle, node, power);
            tokio::time::sleep(Duration::from_millis(asked_rng.gen_range(0..3000))).await;
            w.restart(handle, node);
        } else if crashes.front().is_some_and(|c| *c <= Instant::now()) {
            crashes.pop_front();
            let power = w.shape.faults.allows(FaultSwitch::PowerLoss) && rng.gen_bool(0.5);
            // Half the crashes are aimed: just before, or just after the effect of, the next
            // call of a chosen step (at most 5 s later; else wherever berth is then).
            if rng.gen_bool(0.5) {
                let verb = CRASH_TARGETS[rng.gen_range(0..CRASH_TARGETS.len())];
                w.aim_crash(verb, rng.gen_bool(0.5), Duration::from_secs(5))
                    .await;
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
    w: &SimWorld,
    sweep: bool,
) -> Result<(Vec<ContainerView>, Vec<String>), Vec<String>> {
    let Some(inc) = w.ready() else {
        return Err(vec!["berth is not serving after the heal".to_owned()]);
    };
    if let Err(v) = invariants::core(inc.svc.check_invariants().await) {
        return Err(vec![v]);
    }
    let (views, pods) = lists(&inc).await.map_err(|e| vec![e])?;
    let armed = inc.svc.armed_waits().await.map_err(|e| {
        vec![format!(
            "the armed waits could not be read after the heal: {e}"
        )]
    })?;
    let mut bad = Vec::new();
    if let Err(v) = invariants::names_bijective(&views, &pods) {
        bad.push(v);
    }
    let truth = w.sim.truth();
    let disk = sweep.then(|| w.disk.cached());
    bad.extend(exited::exited_is_settled(&views, &pods, &truth, &armed));
    bad.extend(truth::cri_matches_truth(&views, &pods, &truth));
    {
        let model = lock(&w.model);
        bad.extend(exits::no_exit_lost(&views, &truth, |id, task, pid| {
            model.process_promised(id, task, pid)
        }));
    }
    bad.extend(leaks::no_leaks(&views, &pods, &truth, disk.as_ref()));
    bad.extend(execs::none_left(&truth));
    bad.extend(stuck::nothing_removing(&views));
    bad.extend(graceful::stop_signal_first(&truth.signals, &lock(&w.kills)));
    bad.extend(write_order::one_write_at_a_time(&w.disk.overlaps()).err());
    bad.extend(w.judge_first_exits());
    bad.extend(sweep::known_checkpoints_kept(&w.disk.swept(), |id| {
        truth.records.get(id).map(|r| r.created_at)
    }));
    Ok((views, bad))
}

/// The settled checks, given a few chances to converge (a retry in backoff may still be
/// finishing): the last result counts.
async fn converged(w: &SimWorld, sweep: bool) -> Option<Vec<ContainerView>> {
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
async fn teardown(w: &SimWorld) -> Result<(), String> {
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
    w: &Arc<SimWorld>,
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
        let point = w.calls_in_flight();
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
    let power = w.shape.faults.allows(FaultSwitch::PowerLoss) && rng.gen_bool(0.5);
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

async fn simulate(w: Arc<SimWorld>) {
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
    w.hold_tasks(
        node.clone(),
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
                let w = Arc::new(SimWorld::new(seed, s2, keep_trace));
                let mut failed = w.failure_signal();
                tokio::select! {
                    biased;
                    _ = failed.wait_for(|f| *f) => {}
                    () = simulate(w.clone()) => {}
                }
                // Stop every task (see SimWorld::hold_tasks) and let the executor drop them.
                w.stop_tasks();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let sim_time = w.epoch.elapsed();
                let mut faults = w.sim.fault_counts();
                faults.merge(&w.disk.fault_counts());
                let mut trace = lock(&w.trace);
                let (hash, events) = (trace.hash(), trace.len());
                let lines = trace.take_lines();
                let violations = w.violations();
                (
                    violations,
                    hash,
                    events,
                    lines,
                    faults,
                    sim_time,
                    w.crash_points(),
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
