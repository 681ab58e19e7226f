//! A seed expands into a workload: pods, containers whose processes exit with chosen codes
//! at chosen times (or run until killed, ignore SIGTERM, or shut down on it with a code of
//! their own after a while; some use enough memory for a lowered limit to OOM-kill them),
//! and one script of CRI requests
//! per client. The scripts are fixed before the run starts, so the same seed and shape give
//! the same requests whatever happens; what each request finds depends on the run.

use std::time::Duration;

use berth_core::{ContainerConfig, SandboxConfig};
use berth_simbackend::{ExecPlan, ProcessPlan};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::shape::Shape;

/// Stream constant: the workload's draws are independent of the fault plan's.
const WORKLOAD_STREAM: u64 = 0x3017_4B1D_0A0D_5EED;
/// Stream constant of each container's updates and log reopens: drawn apart from its other
/// steps, so that those stay what they were before these requests existed.
const RESIZE_STREAM: u64 = 0x0E51_2E10_6A11_0005;

/// A memory limit an update asks for, in MiB.
fn limit(rng: &mut SmallRng) -> u16 {
    [16, 32, 64, 128, 256][rng.gen_range(0..5)]
}

/// Exit codes the processes choose from (0 is more likely).
const CODES: &[i32] = &[0, 0, 0, 1, 2, 42, 137, 143, 255];

/// Stream constant of the graceful-shutdown draws (added later: a stream of its own keeps
/// the rest of older seeds' workloads as they were).
const TERM_STREAM: u64 = 0x7E53_0000_5EED_0006;

/// Stream constant of the processes' memory use (a stream of its own, as above).
const MEMORY_STREAM: u64 = 0x3E30_0000_5EED_0007;

/// Memory a process uses, in MiB: some of the limits updates ask for ([`limit`]) are below
/// it, and such an update has the process OOM-killed while the update is in flight.
const MEMORY_USE: &[u16] = &[24, 48, 96, 200];

/// Stream constant of where an early pod stop goes ([`Shape::early_pod_stops`]).
const EARLY_STOP_STREAM: u64 = 0xEA21_57A9_0000_0008;

/// Exit codes of a process shutting down on SIGTERM: neither 137 nor 143, so that a kill
/// or an unhandled signal cannot pass for them.
const TERM_CODES: &[i32] = &[3, 64];

/// Stream constant of each container's ExecSyncs (a stream of its own, as above).
const EXEC_STREAM: u64 = 0xE8EC_0000_5EED_0008;

/// The output cap berth runs with in the simulator (production: 16 MiB,
/// `berth_core::EXEC_OUTPUT_CAP`): small, so that plans write past it cheaply.
pub const SIM_EXEC_OUTPUT_CAP: usize = 256;

/// An ExecSync's plan and timeout: mostly quick commands with output (some past the cap),
/// some that outlive their timeout (run until killed, or exit too late), some whose
/// background child keeps the pipe open after they exit.
fn exec_step(rng: &mut SmallRng, tag: u64) -> (ExecPlan, Duration) {
    let secs = Duration::from_secs;
    let ms = Duration::from_millis;
    let (plan, timeout) = match rng.gen_range(0..10) {
        0..=3 => (
            ExecPlan::exit(
                ms(rng.gen_range(0..1500)),
                CODES[rng.gen_range(0..CODES.len())],
            )
            .printing(
                rng.gen_range(0..2 * SIM_EXEC_OUTPUT_CAP),
                rng.gen_range(0..64),
            ),
            secs(rng.gen_range(4..8)),
        ),
        4 | 5 => (
            ExecPlan::forever().printing(10, 0),
            secs(rng.gen_range(1..3)),
        ),
        6 => (ExecPlan::exit(secs(4), 0), secs(1)),
        7 | 8 => (
            ExecPlan::exit(ms(rng.gen_range(0..300)), 0)
                .printing(5, 0)
                .lingering(Duration::MAX),
            secs(10),
        ),
        _ => (
            ExecPlan::exit(ms(rng.gen_range(0..500)), 1).lingering(ms(500)),
            secs(4),
        ),
    };
    (plan.tagged(tag), timeout)
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// CRI name (`pod<i>`).
    pub name: String,
    /// The client that owns it.
    pub client: usize,
}

/// One container and what its process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// CRI name (`ctr<i>`), unique over the run.
    pub name: String,
    /// Index of its pod.
    pub pod: usize,
    /// Its process.
    pub plan: ProcessPlan,
}

/// One step of a client's script. Indices refer to [`Workload::pods`] and
/// [`Workload::containers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStep {
    /// RunPodSandbox (retried until the pod exists).
    RunPod(usize),
    /// CreateContainer (retried; a lost reply is found again by name).
    Create(usize),
    /// StartContainer.
    Start(usize),
    /// StartContainer and StopContainer sent at once (the race of docs/containerd-behaviour.md
    /// §4.3).
    StartStopRace(usize, Duration),
    /// StopContainer with a grace period.
    Stop(usize, Duration),
    /// RemoveContainer.
    Remove(usize),
    /// ContainerStatus.
    Status(usize),
    /// ListContainers.
    List,
    /// UpdateContainerResources with a memory limit of this many MiB.
    Update(usize, u16),
    /// ReopenContainerLog.
    ReopenLog(usize),
    /// ExecSync of a command following this plan, with this timeout.
    Exec(usize, ExecPlan, Duration),
    /// ExecSync, and a StopContainer with this grace period sent while it runs.
    ExecDuringStop(usize, ExecPlan, Duration, Duration),
    /// StopPodSandbox.
    StopPod(usize),
    /// RemovePodSandbox (its containers go with it).
    RemovePod(usize),
    /// Nothing for a while.
    Think(Duration),
}

/// Pods, containers and one script per client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Every pod.
    pub pods: Vec<PodSpec>,
    /// Every container.
    pub containers: Vec<ContainerSpec>,
    /// One script per client.
    pub scripts: Vec<Vec<ClientStep>>,
}

/// The CRI config of pod `name`.
pub fn sandbox_config(name: &str) -> SandboxConfig {
    SandboxConfig {
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        namespace: "sim".to_owned(),
        hostname: name.to_owned(),
        log_directory: format!("/var/log/pods/{name}"),
        ..SandboxConfig::default()
    }
}

/// The CRI config of container `name`.
pub fn container_config(name: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.to_owned(),
        image: "busybox".to_owned(),
        command: vec!["sleep".to_owned(), "1000".to_owned()],
        log_path: format!("{name}.log"),
        ..ContainerConfig::default()
    }
}

/// The container a step is about, if any.
fn step_container(step: &ClientStep) -> Option<usize> {
    match *step {
        ClientStep::Create(i)
        | ClientStep::Start(i)
        | ClientStep::StartStopRace(i, _)
        | ClientStep::Stop(i, _)
        | ClientStep::Remove(i)
        | ClientStep::Status(i)
        | ClientStep::Update(i, _)
        | ClientStep::ReopenLog(i)
        | ClientStep::Exec(i, _, _)
        | ClientStep::ExecDuringStop(i, _, _, _) => Some(i),
        ClientStep::RunPod(_)
        | ClientStep::List
        | ClientStep::StopPod(_)
        | ClientStep::RemovePod(_)
        | ClientStep::Think(_) => None,
    }
}

fn grace(rng: &mut SmallRng) -> Duration {
    Duration::from_millis([0, 500, 2000][rng.gen_range(0..3)])
}

impl Workload {
    /// The workload of `seed` with `shape` (normalized first).
    pub fn generate(seed: u64, shape: &Shape) -> Workload {
        let shape = shape.normalized();
        // Each container draws from a stream of its own, so that shrinking (fewer containers)
        // leaves the others as they were.
        let stream = |k: u64| {
            SmallRng::seed_from_u64(seed ^ WORKLOAD_STREAM ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        };
        let pods: Vec<PodSpec> = (0..shape.pods)
            .map(|i| PodSpec {
                name: format!("pod{i}"),
                client: i % shape.clients,
            })
            .collect();
        let mut containers = Vec::with_capacity(shape.containers);
        let mut lanes_of: Vec<Vec<ClientStep>> = Vec::with_capacity(shape.containers);
        for i in 0..shape.containers {
            let mut rng = stream(i as u64 + 1);
            let client = i % shape.clients;
            let owned: Vec<usize> = (0..pods.len())
                .filter(|p| pods[*p].client == client)
                .collect();
            let pod = owned[rng.gen_range(0..owned.len())];
            let mut plan = if rng.gen_bool(0.55) {
                let after = Duration::from_millis(rng.gen_range(0..15_000));
                ProcessPlan::exit(after, CODES[rng.gen_range(0..CODES.len())])
            } else {
                ProcessPlan::forever()
            };
            if rng.gen_bool(0.3) {
                plan = plan.ignoring_term();
            } else {
                // Some shut down on SIGTERM, mostly within the longer grace period.
                let mut term = stream((i as u64 + 1) ^ TERM_STREAM);
                if term.gen_bool(0.4) {
                    let after = Duration::from_millis(term.gen_range(0..1500));
                    plan =
                        plan.handling_term(after, TERM_CODES[term.gen_range(0..TERM_CODES.len())]);
                }
            }
            let mut memory = stream((i as u64 + 1) ^ MEMORY_STREAM);
            if memory.gen_bool(0.4) {
                plan = plan.using_memory(MEMORY_USE[memory.gen_range(0..MEMORY_USE.len())]);
            }
            containers.push(ContainerSpec {
                name: format!("ctr{i}"),
                pod,
                plan,
            });
            let mut extra = SmallRng::seed_from_u64(
                seed ^ RESIZE_STREAM ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut lane = vec![ClientStep::Create(i)];
            // An update while CREATED goes to the record (the task starts with it).
            if extra.gen_bool(0.15) {
                lane.push(ClientStep::Update(i, limit(&mut extra)));
            }
            if rng.gen_bool(0.9) {
                if rng.gen_bool(0.1) {
                    lane.push(ClientStep::StartStopRace(i, grace(&mut rng)));
                } else {
                    lane.push(ClientStep::Start(i));
                }
            }
            // While it runs (or once it has exited, then refused): its cgroup, its log.
            if extra.gen_bool(0.3) {
                lane.push(ClientStep::Update(i, limit(&mut extra)));
            }
            if extra.gen_bool(0.2) {
                lane.push(ClientStep::ReopenLog(i));
            }
            let mut execs = stream((i as u64 + 1) ^ EXEC_STREAM);
            if execs.gen_bool(0.35) {
                for k in 0..execs.gen_range(1..3u64) {
                    let (plan, timeout) = exec_step(&mut execs, ((i as u64) << 8) | (k << 4));
                    lane.push(if execs.gen_bool(0.2) {
                        ClientStep::ExecDuringStop(i, plan, timeout, grace(&mut execs))
                    } else {
                        ClientStep::Exec(i, plan, timeout)
                    });
                }
            }
            if rng.gen_bool(0.5) {
                lane.push(ClientStep::Status(i));
            }
            if rng.gen_bool(0.6) {
                lane.push(ClientStep::Stop(i, grace(&mut rng)));
            }
            if rng.gen_bool(0.5) {
                lane.push(ClientStep::Remove(i));
            }
            lanes_of.push(lane);
        }
        let mut scripts = Vec::with_capacity(shape.clients);
        for client in 0..shape.clients {
            let mut rng = stream(u64::MAX - client as u64);
            // Each container's own steps, in order; then a random interleaving of them.
            let mut lanes: Vec<Vec<ClientStep>> = lanes_of
                .iter()
                .enumerate()
                .filter(|(i, _)| i % shape.clients == client)
                .map(|(_, lane)| lane.clone())
                .collect();
            // Another client's container, now and then: requests of two clients race.
            if shape.clients > 1 && !containers.is_empty() {
                for _ in 0..(lanes.len() / 4).max(1) {
                    let other = rng.gen_range(0..containers.len());
                    let step = if rng.gen_bool(0.5) {
                        ClientStep::Stop(other, Duration::ZERO)
                    } else {
                        ClientStep::Remove(other)
                    };
                    lanes.push(vec![step]);
                }
            }
            let mut merged: Vec<ClientStep> = pods
                .iter()
                .enumerate()
                .filter(|(_, p)| p.client == client)
                .map(|(i, _)| ClientStep::RunPod(i))
                .collect();
            let total: usize = lanes.iter().map(Vec::len).sum();
            let think_ms = (shape.chaos_secs * 1000 / (total as u64 + 1)).max(1) * 2;
            let mut heads = vec![0usize; lanes.len()];
            let mut live: Vec<usize> = (0..lanes.len()).collect();
            while !live.is_empty() {
                let k = rng.gen_range(0..live.len());
                let lane = live[k];
                merged.push(lanes[lane][heads[lane]]);
                heads[lane] += 1;
                if heads[lane] == lanes[lane].len() {
                    live.swap_remove(k);
                }
                if rng.gen_bool(0.08) {
                    merged.push(ClientStep::List);
                }
                merged.push(ClientStep::Think(Duration::from_millis(
                    rng.gen_range(0..think_ms),
                )));
            }
            // The end of a client's day: some of its pods stopped or removed with whatever
            // still runs in them. With early pod stops, a pod is stopped as soon as the
            // steps of its own containers are done (mid-day, during the chaos).
            for (i, _) in pods.iter().enumerate().filter(|(_, p)| p.client == client) {
                match rng.gen_range(0..10) {
                    0 | 1 if shape.early_pod_stops => {
                        // After a step of its own containers drawn from a stream of its
                        // own; their later steps are dropped (kubelet does not start or
                        // resize containers of a pod it stopped).
                        let own: Vec<usize> = (0..merged.len())
                            .filter(|at| {
                                step_container(&merged[*at]).is_some_and(|c| containers[c].pod == i)
                            })
                            .collect();
                        let at = if own.is_empty() {
                            merged
                                .iter()
                                .position(|s| *s == ClientStep::RunPod(i))
                                .map_or(merged.len(), |at| at + 1)
                        } else {
                            let mut pick = SmallRng::seed_from_u64(
                                seed ^ EARLY_STOP_STREAM
                                    ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                            );
                            own[pick.gen_range(0..own.len())] + 1
                        };
                        let later: Vec<ClientStep> = merged.split_off(at);
                        merged.push(ClientStep::StopPod(i));
                        merged.extend(
                            later.into_iter().filter(|s| {
                                step_container(s).is_none_or(|c| containers[c].pod != i)
                            }),
                        );
                    }
                    0 | 1 => merged.push(ClientStep::StopPod(i)),
                    2 | 3 => merged.push(ClientStep::RemovePod(i)),
                    _ => {}
                }
            }
            scripts.push(merged);
        }
        Workload {
            pods,
            containers,
            scripts,
        }
    }

    /// How many requests the scripts send (thinking excluded).
    pub fn requests(&self) -> usize {
        self.scripts
            .iter()
            .flatten()
            .filter(|s| !matches!(s, ClientStep::Think(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_workload() {
        let shape = Shape::default();
        let a = Workload::generate(7, &shape);
        assert_eq!(a, Workload::generate(7, &shape));
        assert_ne!(a, Workload::generate(8, &shape));
        assert_eq!(a.containers.len(), 50);
        assert_eq!(a.scripts.len(), 3);
        // Every container is created by its owner, in one of the owner's pods.
        for (i, c) in a.containers.iter().enumerate() {
            let owner = i % 3;
            assert_eq!(a.pods[c.pod].client, owner);
            assert!(a.scripts[owner].contains(&ClientStep::Create(i)));
        }
        // Each client runs its pods first.
        for (k, script) in a.scripts.iter().enumerate() {
            assert!(matches!(script[0], ClientStep::RunPod(p) if a.pods[p].client == k));
        }
        assert!(a.requests() > 150, "{}", a.requests());
    }

    #[test]
    fn early_pod_stops_come_after_the_pods_own_steps() {
        let mut moved = 0;
        for seed in 0..20 {
            let late = Workload::generate(seed, &Shape::default());
            let early = Workload::generate(
                seed,
                &Shape {
                    early_pod_stops: true,
                    ..Shape::default()
                },
            );
            let sorted = |w: &Workload| {
                let mut all: Vec<String> = w
                    .scripts
                    .iter()
                    .flatten()
                    .map(|s| format!("{s:?}"))
                    .collect();
                all.sort();
                all
            };
            // The same steps, but the pod stops moved and some of their pods' steps after
            // them dropped.
            let (late_steps, early_steps) = (sorted(&late), sorted(&early));
            let mut rest = late_steps.clone();
            for s in &early_steps {
                let at = rest.iter().position(|x| x == s);
                assert!(at.is_some(), "seed {seed}: {s} is new");
                rest.remove(at.unwrap_or(0));
            }
            assert!(
                rest.iter()
                    .all(|s| !s.starts_with("StopPod") && !s.starts_with("RunPod")),
                "seed {seed}: {rest:?}"
            );
            for script in &early.scripts {
                for (at, step) in script.iter().enumerate() {
                    let ClientStep::StopPod(p) = *step else {
                        continue;
                    };
                    assert!(
                        script[at..]
                            .iter()
                            .all(|s| step_container(s).is_none_or(|c| early.containers[c].pod != p)),
                        "seed {seed}: pod {p} stopped before a step of its own containers"
                    );
                    // Moved into the day: a request of another pod follows it.
                    moved +=
                        usize::from(script[at + 1..].iter().any(|s| step_container(s).is_some()));
                }
            }
        }
        assert!(moved > 5, "only {moved} pod stops moved into the day");
    }

    #[test]
    fn steps_of_one_container_keep_their_order() {
        let w = Workload::generate(3, &Shape::default());
        for (i, _) in w.containers.iter().enumerate() {
            let script = &w.scripts[i % 3];
            let pos = |want: &dyn Fn(&ClientStep) -> bool| script.iter().position(want);
            let create = pos(&|s| *s == ClientStep::Create(i)).unwrap();
            if let Some(start) = pos(
                &|s| matches!(s, ClientStep::Start(j) | ClientStep::StartStopRace(j, _) if *j == i),
            ) {
                assert!(create < start);
            }
        }
    }
}
