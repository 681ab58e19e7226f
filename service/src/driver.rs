//! The driver loop: one task owns the machine; everything else is a message to it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_backend::{Backend, CheckpointStore, run_call};
use berth_core::{
    BackendError, BackendErrorKind, Call, CallResult, Command, CommandError, ContainerId, Effect,
    Machine, Now, OpId, PersistAction, PersistError, RequestId, Response, SandboxId,
};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::handle::{
    ContainerFilter, ContainerView, PrefixCommand, Reply, Request, SandboxFilter, SandboxView,
    ServiceHandle,
};
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
        let request = match request {
            Request::CheckInvariants(reply) => {
                let result = match self.machine.as_ref() {
                    Some(m) => Ok(m.check_invariants().map_err(|e| e.to_string())),
                    None => Err(ServiceError::Unavailable),
                };
                let _ = reply.send(result);
                return;
            }
            other => other,
        };
        let Some(m) = self.machine.as_mut().filter(|m| !m.is_recovering()) else {
            reject(request);
            return;
        };
        match request {
            Request::Command(command, reply) => {
                let req = RequestId(self.next_req);
                self.next_req += 1;
                self.replies.insert(req, reply);
                m.handle_command(req, command, now);
            }
            Request::ByPrefix(kind, prefix, reply) => {
                let command = match resolve(m, kind.clone(), &prefix) {
                    Ok(Some(command)) => command,
                    // Unknown ids: stop and remove succeed, start is NotFound.
                    Ok(None) => {
                        let result = match kind {
                            PrefixCommand::Start | PrefixCommand::Update(_) => {
                                let err = match ContainerId::new(prefix) {
                                    Ok(id) => CommandError::ContainerNotFound { id },
                                    Err(e) => CommandError::InvalidId(e),
                                };
                                Err(ServiceError::Command(err))
                            }
                            _ => Ok(Response::Done),
                        };
                        let _ = reply.send(result);
                        return;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let req = RequestId(self.next_req);
                self.next_req += 1;
                self.replies.insert(req, reply);
                m.handle_command(req, command, now);
            }
            Request::ContainerStatus(prefix, reply) => {
                let result = find_container(m, &prefix).and_then(|id| {
                    id.and_then(|id| m.container(&id).map(container_view))
                        .ok_or_else(|| not_found_container(&prefix))
                });
                let _ = reply.send(result);
            }
            Request::ListContainers(filter, reply) => {
                let _ = reply.send(Ok(list_containers(m, &filter)));
            }
            Request::SandboxStatus(prefix, reply) => {
                let result = find_sandbox(m, &prefix).and_then(|id| {
                    id.and_then(|id| m.sandbox(&id).map(sandbox_view))
                        .ok_or_else(|| not_found_sandbox(&prefix))
                });
                let _ = reply.send(result);
            }
            Request::ListSandboxes(filter, reply) => {
                let _ = reply.send(Ok(list_sandboxes(m, &filter)));
            }
            Request::NewContainerId(reply) => {
                let id = loop {
                    let id = random_id(&mut self.rng);
                    if let Ok(id) = ContainerId::new(id)
                        && m.container(&id).is_none()
                    {
                        break id;
                    }
                };
                let _ = reply.send(Ok(id));
            }
            Request::CheckInvariants(_) => {}
            Request::NewSandboxId(reply) => {
                let id = loop {
                    let id = random_id(&mut self.rng);
                    if let Ok(id) = SandboxId::new(id)
                        && m.sandbox(&id).is_none()
                    {
                        break id;
                    }
                };
                let _ = reply.send(Ok(id));
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn random_id(rng: &mut SmallRng) -> String {
    let a: u64 = rng.r#gen();
    let b: u64 = rng.r#gen();
    let c: u64 = rng.r#gen();
    let d: u64 = rng.r#gen();
    format!("{a:016x}{b:016x}{c:016x}{d:016x}")
}

fn reject(request: Request) {
    let e = ServiceError::Unavailable;
    match request {
        Request::Command(_, r) | Request::ByPrefix(_, _, r) => drop(r.send(Err(e))),
        Request::ContainerStatus(_, r) => drop(r.send(Err(e))),
        Request::ListContainers(_, r) => drop(r.send(Err(e))),
        Request::SandboxStatus(_, r) => drop(r.send(Err(e))),
        Request::ListSandboxes(_, r) => drop(r.send(Err(e))),
        Request::NewContainerId(r) => drop(r.send(Err(e))),
        Request::NewSandboxId(r) => drop(r.send(Err(e))),
        Request::CheckInvariants(r) => drop(r.send(Err(e))),
    }
}

fn not_found_container(prefix: &str) -> ServiceError {
    match ContainerId::new(prefix) {
        Ok(id) => ServiceError::Command(CommandError::ContainerNotFound { id }),
        Err(e) => ServiceError::Command(CommandError::InvalidId(e)),
    }
}

fn not_found_sandbox(prefix: &str) -> ServiceError {
    match SandboxId::new(prefix) {
        Ok(id) => ServiceError::Command(CommandError::SandboxNotFound { id }),
        Err(e) => ServiceError::Command(CommandError::InvalidId(e)),
    }
}

/// Resolves an exact id or a unique prefix (CRI accepts both) among `ids`. `Ok(None)`: no
/// match.
fn find_unique<'a, T: AsRef<str> + Clone + 'a>(
    ids: impl Iterator<Item = &'a T>,
    prefix: &str,
) -> Result<Option<T>, ServiceError> {
    let mut matches = Vec::new();
    for id in ids {
        if id.as_ref() == prefix {
            return Ok(Some(id.clone()));
        }
        if !prefix.is_empty() && id.as_ref().starts_with(prefix) {
            matches.push(id);
        }
    }
    match matches.len() {
        0 => Ok(None),
        1 => Ok(Some(matches[0].clone())),
        n => Err(ServiceError::Ambiguous {
            prefix: prefix.to_owned(),
            matches: n,
        }),
    }
}

fn find_container(m: &Machine, prefix: &str) -> Result<Option<ContainerId>, ServiceError> {
    find_unique(m.containers().map(|c| &c.meta().id), prefix)
}

fn find_sandbox(m: &Machine, prefix: &str) -> Result<Option<SandboxId>, ServiceError> {
    find_unique(m.sandboxes().map(|s| &s.meta().id), prefix)
}

fn resolve(
    m: &Machine,
    kind: PrefixCommand,
    prefix: &str,
) -> Result<Option<Command>, ServiceError> {
    Ok(match kind {
        PrefixCommand::Start => find_container(m, prefix)?.map(Command::StartContainer),
        PrefixCommand::Stop(timeout) => {
            find_container(m, prefix)?.map(|id| Command::StopContainer { id, timeout })
        }
        PrefixCommand::Remove => find_container(m, prefix)?.map(Command::RemoveContainer),
        PrefixCommand::Update(resources) => {
            find_container(m, prefix)?.map(|id| Command::UpdateContainerResources { id, resources })
        }
        PrefixCommand::StopSandbox => find_sandbox(m, prefix)?.map(Command::StopPodSandbox),
        PrefixCommand::RemoveSandbox => find_sandbox(m, prefix)?.map(Command::RemovePodSandbox),
    })
}

fn container_view(c: &berth_core::Container) -> ContainerView {
    ContainerView {
        meta: c.meta().clone(),
        status: c.status().clone(),
        state: c.state(),
        removing: c.is_removing(),
    }
}

fn sandbox_view(s: &berth_core::Sandbox) -> SandboxView {
    SandboxView {
        meta: s.meta().clone(),
        state: s.state(),
        pid: s.pid(),
        exit: s.exit(),
    }
}

fn labels_match(
    have: &std::collections::BTreeMap<String, String>,
    want: &std::collections::BTreeMap<String, String>,
) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn list_containers(m: &Machine, f: &ContainerFilter) -> Vec<ContainerView> {
    m.containers()
        .filter(|c| {
            f.id.as_ref()
                .is_none_or(|p| c.meta().id.as_str().starts_with(p.as_str()))
                && f.state.is_none_or(|s| c.state() == s)
                && f.sandbox
                    .as_ref()
                    .is_none_or(|p| c.meta().sandbox_id.as_str().starts_with(p.as_str()))
                && labels_match(&c.meta().config.labels, &f.labels)
        })
        .map(container_view)
        .collect()
}

fn list_sandboxes(m: &Machine, f: &SandboxFilter) -> Vec<SandboxView> {
    m.sandboxes()
        .filter(|s| {
            f.id.as_ref()
                .is_none_or(|p| s.meta().id.as_str().starts_with(p.as_str()))
                && f.state.is_none_or(|st| s.state() == st)
                && labels_match(&s.meta().config.labels, &f.labels)
        })
        .map(sandbox_view)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ids_win_and_prefixes_must_be_unique() {
        let ids: Vec<String> = ["abc1", "abc2", "abd", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            find_unique(ids.iter(), "abd").unwrap(),
            Some("abd".to_owned())
        );
        assert_eq!(
            find_unique(ids.iter(), "abc1").unwrap(),
            Some("abc1".to_owned())
        );
        assert_eq!(find_unique(ids.iter(), "x").unwrap(), Some("x".to_owned()));
        assert_eq!(
            find_unique(ids.iter(), "abd").unwrap(),
            Some("abd".to_owned())
        );
        assert_eq!(find_unique(ids.iter(), "zz").unwrap(), None);
        assert_eq!(find_unique(ids.iter(), "").unwrap(), None);
        assert_eq!(
            find_unique(ids.iter(), "abc"),
            Err(ServiceError::Ambiguous {
                prefix: "abc".into(),
                matches: 2
            })
        );
    }
}
