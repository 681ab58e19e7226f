//! Wrappers around the backend and the checkpoint store that one berth incarnation uses:
//! they trace every call with its outcome, count the calls in flight (what a crash
//! interrupts: the "crash point"), and give every backend call but `Tasks.Wait` the
//! deadline berth's real backend has (10 s: `BackendConfig::call_timeout`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_backend::{
    Backend, BackendError, BackendErrorKind, CheckpointStore, ContainerId, ContainerMeta, ExecId,
    ExecOutput, ExecSpec, ExitStatus, ImageRef, Listing, LoadError, Resources, ResourcesOf,
    SandboxMeta, Status, StoreError, Target, TaskMetrics, TaskState,
};
use tokio::time::Instant;

use crate::trace::Trace;

/// The deadline of berth's real backend on every call but `Tasks.Wait`.
pub const BACKEND_DEADLINE: Duration = Duration::from_secs(10);

/// Calls in flight, by verb.
pub type InFlight = Arc<Mutex<BTreeMap<&'static str, u32>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Called with the containerd id of every task that `Tasks.Start` started.
pub type OnStarted = Arc<dyn Fn(&str) + Send + Sync>;

/// A crash point armed by the supervisor: the next call of `verb` (a containerd verb or a
/// disk step) stops just before it runs or just after it took effect (its reply never
/// reaches berth), and the supervisor is told to kill berth there.
#[derive(Debug, Default)]
pub struct Trigger {
    armed: Mutex<Option<(&'static str, bool)>>,
    fired: Mutex<Option<String>>,
    /// Woken when the armed point is reached.
    pub notify: tokio::sync::Notify,
}

impl Trigger {
    /// Arms the point: before (`after == false`) or after the next `verb`.
    pub fn arm(&self, verb: &'static str, after: bool) {
        *lock(&self.armed) = Some((verb, after));
        *lock(&self.fired) = None;
    }

    /// Disarms; returns the point reached, if it was (`before:Tasks.Start`).
    pub fn disarm(&self) -> Option<String> {
        *lock(&self.armed) = None;
        lock(&self.fired).take()
    }

    /// True (and the supervisor woken) if this is the armed point.
    fn hit(&self, verb: &str, after: bool) -> bool {
        let mut armed = lock(&self.armed);
        match *armed {
            Some((v, a)) if v == verb && a == after => *armed = None,
            _ => return false,
        }
        *lock(&self.fired) = Some(format!("{}:{verb}", if after { "after" } else { "before" }));
        self.notify.notify_one();
        true
    }
}

/// Every step a crash can be aimed at.
pub const CRASH_TARGETS: &[&str] = &[
    "Containers.Create",
    "Containers.Delete",
    "Tasks.Create",
    "Tasks.Start",
    "Tasks.Kill",
    "Tasks.Delete",
    "Tasks.Get",
    "Tasks.Update",
    "Containers.Update",
    "Containers.List",
    "write",
    "delete",
    "sync",
    "remove_orphan",
];

/// What one incarnation's wrappers share: the trace, its epoch, the in-flight counts.
#[derive(Clone)]
pub struct Probe {
    /// The run's trace.
    pub trace: Arc<Mutex<Trace>>,
    /// Time zero of the trace.
    pub epoch: Instant,
    /// Calls of this incarnation in flight.
    pub inflight: InFlight,
    /// Who is calling (e.g. `berth#3`).
    pub actor: String,
    /// Give `Tasks.Get` a deadline of its own (false models a backend that relies on the
    /// caller's: the planted bug `recovery_no_deadline`).
    pub task_status_deadline: bool,
    /// Told of every successful `Tasks.Start` (the reply model checks that no stopped
    /// container starts again without a new StartContainer).
    pub on_started: Option<OnStarted>,
    /// The supervisor's crash point, if any.
    pub trigger: Option<Arc<Trigger>>,
    /// Told of every checkpoint write that carries an exit, as it begins (the fault plan's
    /// exit race: a conflicting observation of an exit being recorded).
    pub on_exit_write: Option<OnStarted>,
}

struct Count {
    inflight: InFlight,
    verb: &'static str,
}

impl Drop for Count {
    fn drop(&mut self) {
        let mut m = lock(&self.inflight);
        if let Some(n) = m.get_mut(self.verb) {
            *n -= 1;
            if *n == 0 {
                m.remove(self.verb);
            }
        }
    }
}

/// A numeric outcome for the trace hash: 0 for success, else 1 + the error kind.
fn code<T>(r: &Result<T, BackendError>) -> i64 {
    match r {
        Ok(_) => 0,
        Err(e) => 1 + e.kind as i64,
    }
}

impl Probe {
    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Stops here for good if the armed crash point is this one (berth is being killed).
    async fn crash_point_here(&self, verb: &str, after: bool) {
        if self.trigger.as_ref().is_some_and(|t| t.hit(verb, after)) {
            std::future::pending::<()>().await;
        }
    }

    fn count(&self, verb: &'static str) -> Count {
        *lock(&self.inflight).entry(verb).or_insert(0) += 1;
        Count {
            inflight: self.inflight.clone(),
            verb,
        }
    }

    /// Runs one backend call: counted while in flight, under `deadline`, traced.
    async fn call<T: std::fmt::Debug>(
        &self,
        verb: &'static str,
        object: &str,
        deadline: Option<Duration>,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let _count = self.count(verb);
        self.crash_point_here(verb, false).await;
        let result = match deadline {
            None => call.await,
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                Err(BackendError::new(
                    BackendErrorKind::DeadlineExceeded,
                    verb,
                    object,
                    format!("no answer from containerd within {limit:?}"),
                ))
            }),
        };
        let at = self.micros();
        lock(&self.trace).event(
            at,
            &self.actor,
            verb,
            object,
            code(&result),
            || match &result {
                Ok(v) => format!("ok {v:?}"),
                Err(e) => format!("error {:?}: {}", e.kind, e.message),
            },
        );
        result
    }

    /// Runs one checkpoint-store step: counted while in flight, traced.
    async fn store<T>(
        &self,
        verb: &'static str,
        object: &str,
        step: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let _count = self.count(verb);
        self.crash_point_here(verb, false).await;
        let result = step.await;
        if result.is_ok() {
            self.crash_point_here(verb, true).await;
        }
        let at = self.micros();
        let outcome = i64::from(result.is_err());
        lock(&self.trace).event(at, &self.actor, verb, object, outcome, || match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        });
        result
    }

    /// The calls in flight now, as a crash-point label (`idle` if none; waits, always in
    /// flight, are left out).
    pub fn crash_point(inflight: &InFlight) -> String {
        let m = lock(inflight);
        let steps: Vec<&str> = m.keys().copied().filter(|v| *v != "Tasks.Wait").collect();
        if steps.is_empty() {
            "idle".to_owned()
        } else {
            steps.join("+")
        }
    }
}

/// A [`Backend`] traced and counted by a [`Probe`].
pub struct ProbedBackend<B> {
    inner: B,
    probe: Probe,
}

impl<B> ProbedBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, probe: Probe) -> Self {
        ProbedBackend { inner, probe }
    }
}

#[async_trait]
impl<B: Backend> Backend for ProbedBackend<B> {
    async fn resolve_image(&self, id: &ContainerId, image: &str) -> Result<ImageRef, BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Images.List",
                id.as_str(),
                d,
                self.inner.resolve_image(id, image),
            )
            .await
    }
    async fn create_container(&self, meta: &ContainerMeta) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Containers.Create",
                meta.id.as_str(),
                d,
                self.inner.create_container(meta),
            )
            .await
    }
    async fn create_sandbox(&self, meta: &SandboxMeta) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Containers.Create",
                meta.id.as_str(),
                d,
                self.inner.create_sandbox(meta),
            )
            .await
    }
    async fn delete_container(&self, target: &Target) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Containers.Delete",
                target.as_str(),
                d,
                self.inner.delete_container(target),
            )
            .await
    }
    async fn create_task(&self, target: &Target) -> Result<u32, BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Tasks.Create",
                target.as_str(),
                d,
                self.inner.create_task(target),
            )
            .await
    }
    async fn start_task(&self, target: &Target) -> Result<u32, BackendError> {
        let d = Some(BACKEND_DEADLINE);
        let r = self
            .probe
            .call(
                "Tasks.Start",
                target.as_str(),
                d,
                self.inner.start_task(target),
            )
            .await;
        if r.is_ok()
            && let Some(hook) = &self.probe.on_started
        {
            hook(target.as_str());
        }
        r
    }
    async fn wait_task(&self, target: &Target) -> Result<ExitStatus, BackendError> {
        self.probe
            .call(
                "Tasks.Wait",
                target.as_str(),
                None,
                self.inner.wait_task(target),
            )
            .await
    }
    async fn kill_task(&self, target: &Target, signal: i32) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Tasks.Kill",
                target.as_str(),
                d,
                self.inner.kill_task(target, signal),
            )
            .await
    }
    async fn delete_task(&self, target: &Target, kill: bool) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Tasks.Delete",
                target.as_str(),
                d,
                self.inner.delete_task(target, kill),
            )
            .await
    }
    async fn task_status(&self, target: &Target) -> Result<TaskState, BackendError> {
        let d = self.probe.task_status_deadline.then_some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Tasks.Get",
                target.as_str(),
                d,
                self.inner.task_status(target),
            )
            .await
    }
    async fn update_resources(
        &self,
        id: &ContainerId,
        of: ResourcesOf,
        resources: &Resources,
    ) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        let verb = match of {
            ResourcesOf::Task => "Tasks.Update",
            ResourcesOf::Record => "Containers.Update",
        };
        self.probe
            .call(
                verb,
                id.as_str(),
                d,
                self.inner.update_resources(id, of, resources),
            )
            .await
    }
    async fn reopen_log(&self, id: &ContainerId) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call("Logs.Reopen", id.as_str(), d, self.inner.reopen_log(id))
            .await
    }
    async fn start_exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<u32, BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Tasks.Exec",
                id.as_str(),
                d,
                self.inner.start_exec(id, exec),
            )
            .await
    }
    async fn wait_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
    ) -> Result<ExecOutput, BackendError> {
        let out = self
            .probe
            .call("Tasks.Wait", id.as_str(), None, async {
                self.inner.wait_exec(id, exec_id).await.map(OutputShort)
            })
            .await?;
        Ok(out.0)
    }
    async fn kill_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
        signal: i32,
    ) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Tasks.Kill",
                id.as_str(),
                d,
                self.inner.kill_exec(id, exec_id, signal),
            )
            .await
    }
    async fn delete_exec(&self, id: &ContainerId, exec_id: &ExecId) -> Result<(), BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call(
                "Tasks.DeleteProcess",
                id.as_str(),
                d,
                self.inner.delete_exec(id, exec_id),
            )
            .await
    }
    async fn sweep_execs(&self, id: &ContainerId) -> Result<u32, BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call("Tasks.ListPids", id.as_str(), d, self.inner.sweep_execs(id))
            .await
    }
    async fn list(&self) -> Result<Listing, BackendError> {
        let d = Some(BACKEND_DEADLINE);
        let listing = self
            .probe
            .call("Containers.List", "", d, async {
                self.inner.list().await.map(|l| {
                    // Trace the ids only, not the metadata.
                    ListingIds(l)
                })
            })
            .await?;
        Ok(listing.0)
    }
    async fn task_metrics(&self, ids: &[ContainerId]) -> Result<Vec<TaskMetrics>, BackendError> {
        let d = Some(BACKEND_DEADLINE);
        self.probe
            .call("Tasks.Metrics", "", d, self.inner.task_metrics(ids))
            .await
    }
}

/// An exec's output whose debug form is its code and sizes (the trace would otherwise print
/// every byte).
struct OutputShort(ExecOutput);

impl std::fmt::Debug for OutputShort {
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

/// A listing whose debug form is its ids (the trace would otherwise print every config).
struct ListingIds(Listing);

impl std::fmt::Debug for ListingIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s: Vec<&str> = self
            .0
            .sandboxes
            .iter()
            .map(|l| crate::trace::short(&l.id))
            .collect();
        let c: Vec<&str> = self
            .0
            .containers
            .iter()
            .map(|l| crate::trace::short(&l.id))
            .collect();
        write!(f, "sandboxes {s:?} containers {c:?}")
    }
}

/// A [`CheckpointStore`] traced and counted by a [`Probe`].
pub struct ProbedStore<S> {
    inner: S,
    probe: Probe,
}

impl<S> ProbedStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, probe: Probe) -> Self {
        ProbedStore { inner, probe }
    }
}

#[async_trait]
impl<S: CheckpointStore> CheckpointStore for ProbedStore<S> {
    async fn write(&self, id: &ContainerId, status: &Status) -> Result<(), StoreError> {
        if status.state() == berth_core::ContainerState::Exited
            && let Some(hook) = &self.probe.on_exit_write
        {
            hook(id.as_str());
        }
        self.probe
            .store("write", id.as_str(), self.inner.write(id, status))
            .await
    }
    async fn delete(&self, id: &ContainerId) -> Result<(), StoreError> {
        self.probe
            .store("delete", id.as_str(), self.inner.delete(id))
            .await
    }
    async fn load(&self, id: &ContainerId) -> Result<Status, LoadError> {
        self.inner.load(id).await
    }
    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list().await
    }
    async fn remove_orphan(&self, name: &str) -> Result<(), StoreError> {
        self.probe
            .store("remove_orphan", name, self.inner.remove_orphan(name))
            .await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.probe.store("sync", "", self.inner.sync()).await
    }
}
