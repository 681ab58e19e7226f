//! The driver loop: one task owns the machine; everything else is a message to it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_backend::{Backend, CheckpointStore, run_call};
use berth_core::{
    BackendError, BackendErrorKind, Call, CallResult, Command, CommandError, ContainerId,
    EXEC_ID_PREFIX, Effect, ExecId, Machine, Now, OpId, PersistAction, PersistError, RequestId,
    Response, SandboxId,
};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::handle::{PrefixCommand, Reply, Request, ServiceHandle};
use crate::read;
use crate::{ServiceConfig, ServiceError};

enum Completion {
    Call(OpId, Result<CallResult, BackendError>),
    Persist(OpId, ContainerId, Result<(), PersistError>),
}

pub(crate) fn spawn<B: Backend, S: CheckpointStore>(
    backend: Arc<B>,
    store: Arc<S>,
    config: ServiceConfig,
) -> ServiceHandle {
    let (requests, request_rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(4096);
    let (ready_tx, ready) = watch::channel(false);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let driver = Driver {
        backend,
        store,
        rng: SmallRng::seed_from_u64(config.id_seed),
        config,
        machine: None,
        epoch: Instant::now(),
        replies: BTreeMap::new(),
        next_req: 1,
        persisting: BTreeSet::new(),
        persist_queue: BTreeMap::new(),
        events: events.clone(),
        ready: ready_tx,
        shutdown: shutdown_rx.clone(),
    };
    tokio::spawn(driver.run(request_rx, shutdown_rx));
    ServiceHandle {
        requests,
        events,
        ready,
        shutdown,
    }
}

struct Driver<B, S> {
    backend: Arc<B>,
    store: Arc<S>,
    config: ServiceConfig,
    rng: SmallRng,
    machine: Option<Machine>,
    epoch: Instant,
    replies: BTreeMap<RequestId, Reply<Response>>,
    next_req: u64,
    persisting: BTreeSet<ContainerId>,
    persist_queue: BTreeMap<ContainerId, VecDeque<(OpId, PersistAction)>>,
    events: broadcast::Sender<berth_core::Event>,
    ready: watch::Sender<bool>,
    shutdown: watch::Receiver<bool>,
}

impl<B: Backend, S: CheckpointStore> Driver<B, S> {
    fn now(&self) -> Now {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Now {
            wall,
            mono: self.epoch.elapsed(),
        }
    }

    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
        let mut recovery: Pin<Box<dyn Future<Output = berth_core::RecoveryInput> + Send>> =
            Box::pin(crate::recover::gather(
                self.backend.clone(),
                self.store.clone(),
                self.config.clone(),
            ));
        tracing::info!("berth service starting: recovering state");
        loop {
            let deadline = self
                .machine
                .as_ref()
                .and_then(Machine::poll_timeout)
                .map(|at| self.epoch + at);
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                input = &mut recovery, if self.machine.is_none() => {
                    let now = self.now();
                    tracing::info!(
                        sandboxes = input.sandboxes.len(),
                        containers = input.containers.len(),
                        "recovery: facts gathered"
                    );
                    let machine = Machine::recover(self.config.core.clone(), input, now);
                    for conflict in machine.name_conflicts() {
                        tracing::error!(%conflict, "recovery: name conflict (both objects kept)");
                    }
                    self.machine = Some(machine);
                }
                Some(done) = done_rx.recv() => self.complete(done, &done_tx),
                request = requests.recv() => match request {
                    Some(request) => self.serve(request),
                    None => break,
                },
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let now = self.now();
                    if let Some(m) = self.machine.as_mut() {
                        m.handle_timeout(now);
                    }
                }
            }
            self.drain(&done_tx);
            let ready = self.machine.as_ref().is_some_and(|m| !m.is_recovering());
            if ready && !*self.ready.borrow() {
                tracing::info!("recovery finished: serving");
                let _ = self.ready.send(true);
            }
        }
        tracing::info!("berth service stopped; containers keep running");
        for (_, reply) in std::mem::take(&mut self.replies) {
            let _ = reply.send(Err(ServiceError::Stopped));
        }
    }

    fn complete(&mut self, done: Completion, done_tx: &mpsc::UnboundedSender<Completion>) {
        let now = self.now();
        let Some(m) = self.machine.as_mut() else {
            return;
        };
        match done {
            Completion::Call(op, result) => m.handle_call(op, result, now),
            Completion::Persist(op, id, result) => {
                if let Err(e) = &result {
                    tracing::warn!(container = %id, error = %e, "checkpoint write failed");
                }
                m.handle_persisted(op, result, now);
                self.persisting.remove(&id);
                let next = self
                    .persist_queue
                    .get_mut(&id)
                    .and_then(VecDeque::pop_front);
                if self.persist_queue.get(&id).is_some_and(VecDeque::is_empty) {
                    self.persist_queue.remove(&id);
                }
                if let Some((op, action)) = next {
                    self.spawn_persist(op, id, action, done_tx);
                }
            }
        }
    }

    /// Carries out every effect the machine emitted.
    fn drain(&mut self, done_tx: &mpsc::UnboundedSender<Completion>) {
        let Some(m) = self.machine.as_mut() else {
            return;
        };
        let mut effects = Vec::new();
        while let Some(e) = m.poll_effect() {
            effects.push(e);
        }
        while let Some(ev) = m.poll_event() {
            let _ = self.events.send(ev);
        }
        for effect in effects {
            match effect {
                Effect::Call { op, call } => self.spawn_call(op, call, done_tx),
                Effect::Persist { op, id, action } => {
                    if self.persisting.contains(&id) {
                        self.persist_queue
                            .entry(id)
                            .or_default()
                            .push_back((op, action));
                    } else {
                        self.spawn_persist(op, id, action, done_tx);
                    }
                }
                Effect::Reply { req, result } => {
                    if let Err(e) = &result {
                        tracing::info!(request = %req, error = %e, "request failed");
                    }
                    if let Some(reply) = self.replies.remove(&req) {
                        let _ = reply.send(result.map_err(ServiceError::Command));
                    }
                }
            }
        }
    }

    fn spawn_call(&self, op: OpId, call: Call, done_tx: &mpsc::UnboundedSender<Completion>) {
        let backend = self.backend.clone();
        let tx = done_tx.clone();
        let timeout = self.config.call_timeout;
        let mut shutdown = self.shutdown.clone();
        tracing::debug!(%op, verb = call.verb(), target = %call.target(), "call");
        tokio::spawn(async move {
            let work = async {
                if call.is_long_lived() {
                    run_call(&*backend, &call).await
                } else {
                    match tokio::time::timeout(timeout, run_call(&*backend, &call)).await {
                        Ok(r) => r,
                        Err(_) => Err(BackendError::new(
                            BackendErrorKind::DeadlineExceeded,
                            call.verb(),
                            call.target().as_str(),
                            format!("no answer within {timeout:?}"),
                        )),
                    }
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                result = work => {
                    let _ = tx.send(Completion::Call(op, result));
                }
            }
        });
    }

    fn spawn_persist(
        &mut self,
        op: OpId,
        id: ContainerId,
        action: PersistAction,
        done_tx: &mpsc::UnboundedSender<Completion>,
    ) {
        self.persisting.insert(id.clone());
        let store = self.store.clone();
        let tx = done_tx.clone();
        tokio::spawn(async move {
            let result = match &action {
                PersistAction::Write(status) => store.write(&id, status).await,
                PersistAction::Delete => store.delete(&id).await,
            };
            let result = result.map_err(|e| PersistError {
                id: id.clone(),
                message: e.to_string(),
            });
            let _ = tx.send(Completion::Persist(op, id, result));
        });
    }

    fn serve(&mut self, request: Request) {
        let now = self.now();
        // Until recovery has built the machine there is no state to answer from: every
        // request gets the answer the machine gives while it finishes recovering.
        let Some(m) = self.machine.as_ref() else {
            reject(request);
            return;
        };
        match request {
            Request::Command(command, reply) => self.submit(command, reply, now),
            Request::ByPrefix(kind, prefix, reply) => {
                match resolve(m, kind, &prefix, || new_exec_id(&mut self.rng, m)) {
                    Ok(command) => self.submit(command, reply, now),
                    Err(e) => drop(reply.send(Err(e.into()))),
                }
            }
            Request::ContainerStatus(prefix, reply) => {
                drop(reply.send(read::container_status(m, &prefix).map_err(Into::into)))
            }
            Request::ListContainers(filter, reply) => {
                drop(reply.send(read::list_containers(m, &filter).map_err(Into::into)))
            }
            Request::SandboxStatus(prefix, reply) => {
                drop(reply.send(read::sandbox_status(m, &prefix).map_err(Into::into)))
            }
            Request::ListSandboxes(filter, reply) => {
                drop(reply.send(read::list_sandboxes(m, &filter).map_err(Into::into)))
            }
            Request::CheckInvariants(reply) => {
                drop(reply.send(Ok(m.check_invariants().map_err(|e| e.to_string()))))
            }
            Request::TaskMetrics(ids, reply) => self.spawn_metrics(ids, reply),
            Request::ArmedWaits(reply) => drop(reply.send(Ok(m.armed_waits()))),
            Request::NewContainerId(reply) => {
                let id = loop {
                    if let Ok(id) = ContainerId::new(random_id(&mut self.rng))
                        && m.container(&id).is_none()
                    {
                        break id;
                    }
                };
                drop(reply.send(Ok(id)));
            }
            Request::NewSandboxId(reply) => {
                let id = loop {
                    if let Ok(id) = SandboxId::new(random_id(&mut self.rng))
                        && m.sandbox(&id).is_none()
                    {
                        break id;
                    }
                };
                drop(reply.send(Ok(id)));
            }
        }
    }

    /// Samples task metrics off the driver loop, under the call deadline: a read the core
    /// has no part in (no state changes, nothing to recover).
    fn spawn_metrics(&self, ids: Vec<ContainerId>, reply: Reply<Vec<berth_backend::TaskMetrics>>) {
        let backend = self.backend.clone();
        let timeout = self.config.call_timeout;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, backend.task_metrics(&ids)).await {
                Ok(r) => r,
                Err(_) => Err(BackendError::new(
                    BackendErrorKind::DeadlineExceeded,
                    "Tasks.Metrics",
                    ids.first().map_or("", ContainerId::as_str),
                    format!("no answer within {timeout:?}"),
                )),
            };
            let _ = reply.send(result.map_err(ServiceError::Backend));
        });
    }

    /// Hands a command to the machine; its reply comes back as an effect.
    fn submit(&mut self, command: Command, reply: Reply<Response>, now: Now) {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.replies.insert(req, reply);
        if let Some(m) = self.machine.as_mut() {
            m.handle_command(req, command, now);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A fresh exec id of berth's ([`EXEC_ID_PREFIX`]), drawn like every other id, unused by
/// any exec in flight.
fn new_exec_id(rng: &mut SmallRng, m: &Machine) -> ExecId {
    loop {
        let a: u64 = rng.r#gen();
        let b: u64 = rng.r#gen();
        if let Ok(id) = ExecId::new(format!("{EXEC_ID_PREFIX}{a:016x}{b:016x}"))
            && m.exec(&id).is_none()
        {
            return id;
        }
    }
}

fn random_id(rng: &mut SmallRng) -> String {
    let a: u64 = rng.r#gen();
    let b: u64 = rng.r#gen();
    let c: u64 = rng.r#gen();
    let d: u64 = rng.r#gen();
    format!("{a:016x}{b:016x}{c:016x}{d:016x}")
}

/// Answers a request that came before the machine exists.
fn reject(request: Request) {
    let e = ServiceError::Command(CommandError::Recovering);
    match request {
        Request::Command(_, r) | Request::ByPrefix(_, _, r) => drop(r.send(Err(e))),
        Request::ContainerStatus(_, r) => drop(r.send(Err(e))),
        Request::ListContainers(_, r) => drop(r.send(Err(e))),
        Request::SandboxStatus(_, r) => drop(r.send(Err(e))),
        Request::ListSandboxes(_, r) => drop(r.send(Err(e))),
        Request::NewContainerId(r) => drop(r.send(Err(e))),
        Request::NewSandboxId(r) => drop(r.send(Err(e))),
        Request::CheckInvariants(r) => drop(r.send(Err(e))),
        Request::TaskMetrics(_, r) => drop(r.send(Err(e))),
        Request::ArmedWaits(r) => drop(r.send(Err(e))),
    }
}

/// The command a by-id request means, its id resolved by the machine (an unknown id is
/// passed through: the command decides what it means). While recovering, the machine's
/// answer to any command, before an id the recovering state cannot settle is resolved.
fn resolve(
    m: &Machine,
    kind: PrefixCommand,
    prefix: &str,
    exec_id: impl FnOnce() -> ExecId,
) -> Result<Command, CommandError> {
    m.serving()?;
    Ok(match kind {
        PrefixCommand::Start => Command::StartContainer(m.container_id(prefix)?),
        PrefixCommand::Stop(timeout) => Command::StopContainer {
            id: m.container_id(prefix)?,
            timeout,
        },
        PrefixCommand::Remove => Command::RemoveContainer(m.container_id(prefix)?),
        PrefixCommand::Update(resources) => Command::UpdateContainerResources {
            id: m.container_id(prefix)?,
            resources,
        },
        PrefixCommand::ReopenLog => Command::ReopenContainerLog(m.container_id(prefix)?),
        PrefixCommand::Exec { cmd, timeout } => Command::ExecSync {
            id: m.container_id(prefix)?,
            exec_id: exec_id(),
            cmd,
            timeout,
        },
        PrefixCommand::StopSandbox => Command::StopPodSandbox(m.sandbox_id(prefix)?),
        PrefixCommand::RemoveSandbox => Command::RemovePodSandbox(m.sandbox_id(prefix)?),
    })
}
