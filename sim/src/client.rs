//! A CRI client playing its script like kubelet: every request is retried until it has the
//! effect it wants or cannot have it; a create or run whose reply was lost is found again by
//! name; a pod whose pause process died is replaced (removed, run again with the next
//! attempt number). Every reply is judged by the reply model, every step is followed by the
//! step checks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_backend::Target;
use berth_core::{CommandError, ContainerId, ContainerState, Resources, SandboxId, SandboxState};
use berth_service::{ContainerFilter, SandboxFilter, ServiceError};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::checks::{execs, graceful};
use crate::workload::{ClientStep, container_config, sandbox_config};
use crate::world::{Incarnation, SimWorld, lock};

const CLIENT_STREAM: u64 = 0xC11E_0000_0000_0004;

/// How often a client replaces a dead pod before it gives up on creating in it.
const POD_REPLACEMENTS: u32 = 3;

/// Retry delay: 100 ms doubling to 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64 << attempt.min(5)).min(Duration::from_secs(2))
}

/// A numeric outcome for the trace: 0 for OK, else a code per error kind.
fn outcome<T>(r: &Result<T, ServiceError>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(ServiceError::Command(CommandError::Recovering)) => 1,
        Err(ServiceError::Stopped) => 2,
        Err(ServiceError::Command(e)) => 10 + e.code() as i64,
        Err(ServiceError::Backend(e)) => 100 + e.kind.code() as i64,
    }
}

fn transient(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::Stopped | ServiceError::Command(CommandError::Recovering)
    )
}

/// An exec's output in the trace: its code and sizes, not every byte.
struct Output(berth_core::ExecOutput);

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} stdout {}B stderr {}B",
            self.0.exit_code,
            self.0.stdout.len(),
            self.0.stderr.len()
        )
    }
}

struct Client {
    w: Arc<SimWorld>,
    k: usize,
    actor: String,
    rng: SmallRng,
    /// CRI attempt number of each owned pod (bumped when a dead pod is replaced).
    attempts: Vec<u32>,
    replacements: u32,
}

/// Runs client `k`'s script to its end.
pub(crate) async fn run(w: Arc<SimWorld>, k: usize) {
    let pods = w.workload.pods.len();
    let mut c = Client {
        rng: SmallRng::seed_from_u64(w.seed ^ CLIENT_STREAM ^ (k as u64) << 32),
        actor: format!("client{k}"),
        attempts: vec![0; pods],
        replacements: 0,
        w,
        k,
    };
    let script = c.w.workload.scripts[k].clone();
    for (n, step) in script.into_iter().enumerate() {
        if c.w.has_failed() {
            return;
        }
        lock(&c.w.progress)[k] = format!("step {n} {step:?}");
        c.step(step).await;
        if !matches!(step, ClientStep::Think(_)) {
            c.w.step_checks().await;
        }
    }
    lock(&c.w.progress)[k] = "done".to_owned();
}

impl Client {
    /// Sends one request: traced when sent and when answered.
    async fn call<T: std::fmt::Debug>(
        &self,
        what: &str,
        object: &str,
        request: impl std::future::Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        self.w.requests.fetch_add(1, Ordering::Relaxed);
        self.w
            .event(&self.actor, what, object, -1, || "sent".to_owned());
        let sent = (what.to_owned(), object.to_owned(), self.w.micros());
        lock(&self.w.last_request).insert(self.actor.clone(), sent);
        let r = request.await;
        lock(&self.w.last_request).remove(&self.actor);
        self.w
            .event(&self.actor, what, object, outcome(&r), || match &r {
                Ok(v) => format!("ok {v:?}"),
                Err(e) => format!("error: {e}"),
            });
        r
    }

    /// Sends a request that may kill `object`'s processes, its window noted for the
    /// graceful-stop check.
    async fn killing<T: std::fmt::Debug>(
        &self,
        request: graceful::Request,
        what: &str,
        object: &str,
        r: impl std::future::Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        let token = lock(&self.w.kills).sent(object, request, self.w.sim.now_wall());
        let r = self.call(what, object, r).await;
        lock(&self.w.kills).answered(token, self.w.sim.now_wall(), r.is_ok());
        r
    }

    async fn pause(&mut self, attempt: u32) {
        let jitter = self.rng.gen_range(0..50);
        tokio::time::sleep(backoff(attempt) + Duration::from_millis(jitter)).await;
    }

    fn ctr(&self, i: usize) -> Option<(ContainerId, SandboxId)> {
        lock(&self.w.registry).ctrs.get(&i).cloned()
    }

    fn pod(&self, p: usize) -> Option<SandboxId> {
        lock(&self.w.registry).pods.get(&p).cloned()
    }

    async fn step(&mut self, step: ClientStep) {
        match step {
            ClientStep::RunPod(p) => self.run_pod(p).await,
            ClientStep::Create(i) => self.create(i).await,
            ClientStep::Start(i) => {
                if let Some((id, _)) = self.ctr(i) {
                    self.start(&id).await;
                }
            }
            ClientStep::StartStopRace(i, grace) => {
                if let Some((id, _)) = self.ctr(i) {
                    let delay = Duration::from_millis(self.rng.gen_range(0..60));
                    let (w, actor) = (self.w.clone(), self.actor.clone());
                    let mut other = Client {
                        rng: SmallRng::seed_from_u64(self.rng.r#gen()),
                        actor: format!("{actor}'"),
                        attempts: self.attempts.clone(),
                        replacements: POD_REPLACEMENTS,
                        w,
                        k: self.k,
                    };
                    let id2 = id.clone();
                    tokio::join!(self.start(&id), async move {
                        tokio::time::sleep(delay).await;
                        other.stop(&id2, grace).await;
                    });
                }
            }
            ClientStep::Stop(i, grace) => {
                if let Some((id, _)) = self.ctr(i) {
                    self.stop(&id, grace).await;
                }
            }
            ClientStep::Remove(i) => {
                if let Some((id, _)) = self.ctr(i) {
                    self.remove(&id).await;
                }
            }
            ClientStep::Status(i) => {
                if let Some((id, _)) = self.ctr(i) {
                    self.w.observe(&id).await;
                }
            }
            ClientStep::List => self.w.observe_all().await,
            ClientStep::Update(i, mib) => {
                if let Some((id, _)) = self.ctr(i) {
                    self.update(&id, mib).await;
                }
            }
            ClientStep::ReopenLog(i) => {
                if let Some((id, _)) = self.ctr(i) {
                    self.reopen_log(&id).await;
                }
            }
            ClientStep::Exec(i, plan, timeout) => {
                if let Some((id, _)) = self.ctr(i) {
                    self.exec(&id, plan, timeout).await;
                }
            }
            ClientStep::ExecDuringStop(i, plan, timeout, grace) => {
                if let Some((id, _)) = self.ctr(i) {
                    let delay = Duration::from_millis(self.rng.gen_range(0..500));
                    let (w, actor) = (self.w.clone(), self.actor.clone());
                    let mut other = Client {
                        rng: SmallRng::seed_from_u64(self.rng.r#gen()),
                        actor: format!("{actor}'"),
                        attempts: self.attempts.clone(),
                        replacements: POD_REPLACEMENTS,
                        w,
                        k: self.k,
                    };
                    let id2 = id.clone();
                    tokio::join!(self.exec(&id, plan, timeout), async move {
                        tokio::time::sleep(delay).await;
                        other.stop(&id2, grace).await;
                    });
                }
            }
            ClientStep::StopPod(p) => {
                if let Some(pod) = self.pod(p) {
                    self.stop_pod(&pod).await;
                }
            }
            ClientStep::RemovePod(p) => {
                if let Some(pod) = self.pod(p) {
                    self.remove_pod(&pod).await;
                }
            }
            ClientStep::Think(d) => tokio::time::sleep(d).await,
        }
    }

    /// RunPodSandbox of pod `p`, retried; a lost reply is found again by name.
    async fn run_pod(&mut self, p: usize) {
        let name = self.w.workload.pods[p].name.clone();
        let mut config = sandbox_config(&name);
        config.attempt = self.attempts[p];
        for attempt in 0.. {
            let inc = self.w.incarnation().await;
            let r = self
                .call("run_pod", &name, inc.svc.run_pod_sandbox(config.clone()))
                .await;
            let id = match r {
                Ok(id) => Some(id),
                Err(_) => match find_pod(&inc, &name, config.attempt).await {
                    // A run whose rollback could not delete the pause task or record
                    // leaves the pod UNKNOWN or NOTREADY: kubelet removes it and runs it
                    // again.
                    Some((id, SandboxState::Unknown | SandboxState::NotReady)) => {
                        self.remove_pod(&id).await;
                        continue;
                    }
                    found => found.map(|(id, _)| id),
                },
            };
            if let Some(id) = id {
                lock(&self.w.registry).pods.insert(p, id);
                return;
            }
            self.pause(attempt).await;
        }
    }

    /// The pod of container `i` is dead (its pause process gone): remove it and run it
    /// again with the next attempt number, as kubelet does.
    async fn replace_pod(&mut self, p: usize, old: &SandboxId) -> bool {
        self.remove_pod(old).await;
        if self.replacements >= POD_REPLACEMENTS {
            lock(&self.w.registry).pods.remove(&p);
            return false;
        }
        self.replacements += 1;
        self.attempts[p] += 1;
        self.run_pod(p).await;
        true
    }

    /// CreateContainer of container `i`, retried; a lost reply is found again by name.
    async fn create(&mut self, i: usize) {
        let spec = self.w.workload.containers[i].clone();
        let config = container_config(&spec.name);
        for attempt in 0.. {
            let Some(pod) = self.pod(spec.pod) else {
                return;
            };
            let inc = self.w.incarnation().await;
            let r = self
                .call(
                    "create",
                    &spec.name,
                    inc.svc.create_container(pod.as_str(), config.clone()),
                )
                .await;
            match r {
                Ok(id) => {
                    let t = self.w.sim.truth_of(id.as_str());
                    let check = lock(&self.w.model).acked_create(&id, &pod, &t);
                    self.w.check(check);
                    self.adopt(i, id, pod);
                    return;
                }
                Err(e) => {
                    match find_container(&inc, &pod, &spec.name).await {
                        // A create whose rollback could not delete the record leaves the
                        // container UNKNOWN (as would a crash before its first checkpoint):
                        // kubelet removes such a container and creates it again.
                        Some((id, ContainerState::Unknown)) => {
                            self.remove(&id).await;
                            continue;
                        }
                        Some((id, _)) => {
                            self.adopt(i, id, pod);
                            return;
                        }
                        None => {}
                    }
                    match e {
                        ServiceError::Command(
                            CommandError::SandboxNotFound { .. }
                            | CommandError::SandboxNotReady { .. }
                            | CommandError::SandboxRemoving { .. },
                        ) => {
                            if !self.replace_pod(spec.pod, &pod).await {
                                return;
                            }
                        }
                        ServiceError::Command(CommandError::InvalidArgument { .. }) => return,
                        _ => self.pause(attempt).await,
                    }
                }
            }
        }
    }

    /// The container's id is known: its process plan is set before anyone can start it.
    fn adopt(&self, i: usize, id: ContainerId, pod: SandboxId) {
        let plan = self.w.workload.containers[i].plan;
        self.w.sim.plan(&Target::Container(id.clone()), plan);
        lock(&self.w.model).set_pod(&id, &pod);
        lock(&self.w.registry).ctrs.insert(i, (id, pod));
    }

    async fn status(&self, inc: &Incarnation, id: &ContainerId) -> Option<ContainerState> {
        inc.svc
            .container_status(id.as_str())
            .await
            .ok()
            .map(|v| v.state)
    }

    /// StartContainer, retried while the container is still CREATED.
    async fn start(&mut self, id: &ContainerId) {
        for attempt in 0..40 {
            let inc = self.w.incarnation().await;
            lock(&self.w.model).sent_start(id);
            let r = self
                .call("start", id.as_str(), inc.svc.start_container(id.as_str()))
                .await;
            match r {
                Ok(()) => {
                    let t = self.w.sim.truth_of(id.as_str());
                    let check = lock(&self.w.model).acked_start(id, &t);
                    self.w.check(check);
                    return;
                }
                Err(ServiceError::Command(
                    CommandError::ContainerNotFound { .. } | CommandError::InvalidState { .. },
                )) => return,
                Err(e)
                    if transient(&e)
                        || matches!(e, ServiceError::Command(CommandError::Busy { .. })) =>
                {
                    self.pause(attempt).await
                }
                Err(_) => {
                    // The start failed and was recorded (EXITED "StartError"), or the record
                    // could not be written and the container is CREATED again.
                    if self.status(&inc, id).await != Some(ContainerState::Created) {
                        return;
                    }
                    self.pause(attempt).await;
                }
            }
        }
    }

    /// UpdateContainerResources, retried while berth is busy or unavailable (kubelet
    /// retries a resize on its next sync); a state that forbids it or an unknown container
    /// ends it.
    async fn update(&mut self, id: &ContainerId, mib: u16) {
        let resources = Resources {
            memory_limit_in_bytes: i64::from(mib) << 20,
            ..Resources::default()
        };
        for attempt in 0..20 {
            let inc = self.w.incarnation().await;
            let seq = lock(&self.w.model).sent_update(id);
            let r = self
                .call(
                    "update",
                    id.as_str(),
                    inc.svc
                        .update_container_resources(id.as_str(), resources.clone()),
                )
                .await;
            match r {
                Ok(()) => {
                    let t = self.w.sim.truth_of(id.as_str());
                    let check = lock(&self.w.model).acked_update(id, seq, &resources, &t);
                    self.w.check(check);
                    return;
                }
                Err(ServiceError::Command(
                    CommandError::ContainerNotFound { .. } | CommandError::InvalidState { .. },
                )) => return,
                Err(_) => self.pause(attempt).await,
            }
        }
    }

    /// ReopenContainerLog, retried only while berth is unavailable.
    async fn reopen_log(&mut self, id: &ContainerId) {
        for attempt in 0..20 {
            let inc = self.w.incarnation().await;
            let seq = lock(&self.w.model).sent_reopen(id);
            let r = self
                .call(
                    "reopen_log",
                    id.as_str(),
                    inc.svc.reopen_container_log(id.as_str()),
                )
                .await;
            match r {
                Ok(()) => {
                    let t = self.w.sim.truth_of(id.as_str());
                    let check = lock(&self.w.model).acked_reopen(id, seq, &t);
                    self.w.check(check);
                    return;
                }
                Err(e) if transient(&e) => self.pause(attempt).await,
                Err(_) => return,
            }
        }
    }

    /// ExecSync of a command following `plan`, retried while berth is not serving (each
    /// attempt a process of its own, tagged apart); every answer is checked against the
    /// plan and the truth at once.
    async fn exec(
        &mut self,
        id: &ContainerId,
        plan: berth_simbackend::ExecPlan,
        timeout: Duration,
    ) {
        for attempt in 0..8u64 {
            let inc = self.w.incarnation().await;
            let plan = plan.tagged(plan.tag + attempt);
            let faults_before = self.w.sim.faults().calls.is_none();
            let sent = self.w.sim.now_wall();
            let svc = inc.svc.clone();
            let r = self
                .call("exec", id.as_str(), async {
                    svc.exec_sync(id.as_str(), plan.to_cmd(), timeout)
                        .await
                        .map(Output)
                })
                .await
                .map(|o| o.0);
            let req = execs::Request {
                container: id.as_str(),
                plan,
                timeout,
                cap: crate::workload::SIM_EXEC_OUTPUT_CAP,
                drain_bound: self.w.sim.config().exec_drain_bound,
                sent,
                answered: self.w.sim.now_wall(),
                faults_off: faults_before && self.w.sim.faults().calls.is_none(),
            };
            let check = execs::answer(&req, &r, &self.w.sim.execs());
            self.w.check(check);
            match r {
                Err(e) if transient(&e) => self.pause(attempt as u32).await,
                _ => return,
            }
        }
    }

    /// StopContainer, retried until it succeeds.
    async fn stop(&mut self, id: &ContainerId, grace: Duration) {
        for attempt in 0.. {
            let inc = self.w.incarnation().await;
            let seq = lock(&self.w.model).sent_stop(id);
            let r = self
                .killing(
                    graceful::Request::Stop(grace),
                    "stop",
                    id.as_str(),
                    inc.svc.stop_container(id.as_str(), grace),
                )
                .await;
            if r.is_ok() {
                let t = self.w.sim.truth_of(id.as_str());
                let check = lock(&self.w.model).acked_stop(id, seq, &t);
                self.w.check(check);
                return;
            }
            self.pause(attempt).await;
        }
    }

    /// RemoveContainer, retried until it succeeds.
    async fn remove(&mut self, id: &ContainerId) {
        for attempt in 0.. {
            let inc = self.w.incarnation().await;
            lock(&self.w.model).sent_remove(id);
            let r = self
                .killing(
                    graceful::Request::Remove,
                    "remove",
                    id.as_str(),
                    inc.svc.remove_container(id.as_str()),
                )
                .await;
            if r.is_ok() {
                let t = self.w.sim.truth_of(id.as_str());
                let check = lock(&self.w.model).acked_remove(id, &t);
                self.w.check(check);
                return;
            }
            self.pause(attempt).await;
        }
    }

    /// StopPodSandbox, retried until it succeeds; then every container of the pod is
    /// stopped (the reply model checks containerd now, and berth's view of each at once;
    /// sometimes berth is killed right after the reply, and the promise must hold after
    /// the restart too).
    async fn stop_pod(&mut self, pod: &SandboxId) {
        for attempt in 0.. {
            let inc = self.w.incarnation().await;
            let seq = lock(&self.w.model).sent_stop_pod(pod);
            let r = self
                .killing(
                    graceful::Request::StopPod,
                    "stop_pod",
                    pod.as_str(),
                    inc.svc.stop_pod_sandbox(pod.as_str()),
                )
                .await;
            if r.is_ok() {
                let w = &self.w;
                let acked =
                    lock(&w.model).acked_stop_pod(pod, seq, |id| w.sim.truth_of(id.as_str()));
                match acked {
                    Err(v) => w.fail(v),
                    Ok(members) => {
                        w.crash_after_reply("stop_pod", pod.as_str());
                        for id in &members {
                            w.observe(id).await;
                        }
                    }
                }
                return;
            }
            self.pause(attempt).await;
        }
    }

    /// RemovePodSandbox, retried until it succeeds; then nothing of the pod may remain.
    async fn remove_pod(&mut self, pod: &SandboxId) {
        for attempt in 0.. {
            let inc = self.w.incarnation().await;
            lock(&self.w.model).sent_remove_pod(pod);
            let r = self
                .killing(
                    graceful::Request::RemovePod,
                    "remove_pod",
                    pod.as_str(),
                    inc.svc.remove_pod_sandbox(pod.as_str()),
                )
                .await;
            if r.is_ok() {
                let members: Vec<(ContainerId, berth_simbackend::ObjectTruth)> =
                    lock(&self.w.registry)
                        .ctrs
                        .values()
                        .filter(|(_, p)| p == pod)
                        .map(|(id, _)| (id.clone(), self.w.sim.truth_of(id.as_str())))
                        .collect();
                let pause = self.w.sim.truth_of(pod.as_str());
                let check = lock(&self.w.model).acked_remove_pod(pod, &pause, &members);
                self.w.check(check);
                return;
            }
            self.pause(attempt).await;
        }
    }
}

/// A pod by CRI name and attempt, with its state, if berth lists one.
async fn find_pod(
    inc: &Incarnation,
    name: &str,
    attempt: u32,
) -> Option<(SandboxId, SandboxState)> {
    let pods = inc
        .svc
        .list_sandboxes(SandboxFilter::default())
        .await
        .ok()?;
    pods.into_iter()
        .find(|p| p.meta.config.name == name && p.meta.config.attempt == attempt)
        .map(|p| (p.meta.id, p.state))
}

/// A container of `pod` by CRI name, with its state, if berth lists one.
async fn find_container(
    inc: &Incarnation,
    pod: &SandboxId,
    name: &str,
) -> Option<(ContainerId, ContainerState)> {
    let filter = ContainerFilter {
        sandbox: Some(pod.to_string()),
        ..ContainerFilter::default()
    };
    let views = inc.svc.list_containers(filter).await.ok()?;
    views
        .into_iter()
        .find(|v| v.meta.config.name == name)
        .map(|v| (v.meta.id, v.state))
}
