//! Wrappers around the production backend and checkpoint store that delegate every call
//! but can hold chosen ones at a gate (so the service is stopped at a known step, or a
//! crash lands there), and count what the service asked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_backend::{
    Backend, BackendError, CheckpointStore, ContainerId, ContainerMeta, ExecId, ExecOutput,
    ExecSpec, ExitStatus, ImageRef, Listing, LoadError, Resources, ResourcesOf, SandboxMeta,
    Status, StoreError, Target, TaskMetrics, TaskState,
};
use berth_core::ContainerState;
use tokio::sync::Semaphore;

/// A gate: while armed, calls wait at it until it is opened (for good).
pub struct Gate {
    armed: AtomicBool,
    waiting: AtomicUsize,
    permits: Semaphore,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            armed: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            permits: Semaphore::new(0),
        }
    }

    /// From now on calls wait here.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// How many calls have reached the gate (waiting or let through since).
    pub fn reached(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Returns once exactly one call has reached the gate; panics with `what` if that is
    /// not so within [`super::PATIENCE`] (none came, or more than the one expected).
    pub async fn await_one(&self, what: &str) {
        super::eventually(what, || async {
            match self.reached() {
                1 => Ok(()),
                n => Err(format!("{n} calls at the gate")),
            }
        })
        .await
    }

    /// Lets every waiting and later call through.
    pub fn open(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.permits.close();
    }

    async fn pass(&self) {
        if self.armed.load(Ordering::SeqCst) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            // Err = closed = opened for good.
            let _ = self.permits.acquire().await;
        }
    }
}

/// The controls and counters of a [`GatedBackend`].
pub struct Knobs {
    /// `Tasks.Start` of containers (not of pause tasks).
    pub container_start: Gate,
    /// `list` (recovery's first backend call).
    pub list: Gate,
    /// `Tasks.Wait` calls that ended in an error (a broken wait).
    pub wait_errors: AtomicUsize,
    /// `Tasks.Get` calls that ended in an error.
    pub status_errors: AtomicUsize,
    /// `DeleteTask` calls in flight, by target.
    deletes_in_flight: Mutex<BTreeMap<String, usize>>,
    /// Targets that had two `DeleteTask` calls in flight at once, one entry per overlap.
    pub overlapping_deletes: Mutex<Vec<String>>,
}

impl Knobs {
    /// Everything open, counters at zero.
    pub fn new() -> Arc<Knobs> {
        Arc::new(Knobs {
            container_start: Gate::new(),
            list: Gate::new(),
            wait_errors: AtomicUsize::new(0),
            status_errors: AtomicUsize::new(0),
            deletes_in_flight: Mutex::new(BTreeMap::new()),
            overlapping_deletes: Mutex::new(Vec::new()),
        })
    }

    /// The overlapping deletes seen so far.
    pub fn overlaps(&self) -> Vec<String> {
        self.overlapping_deletes.lock().unwrap().clone()
    }

    /// Panics unless no two `DeleteTask` calls of one task were ever in flight at once.
    pub fn assert_no_overlapping_deletes(&self) {
        assert_eq!(
            self.overlaps(),
            Vec::<String>::new(),
            "two Tasks.Delete (with kill) of one task in flight at once: the loser fails with \
             `ttrpc: closed` when the winner's delete shuts the shim down"
        );
    }
}

/// A backend that delegates to `inner`, holding calls at the [`Knobs`]' gates.
pub struct GatedBackend<B> {
    inner: B,
    knobs: Arc<Knobs>,
}

impl<B> GatedBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, knobs: Arc<Knobs>) -> Self {
        GatedBackend { inner, knobs }
    }
}

#[async_trait]
impl<B: Backend> Backend for GatedBackend<B> {
    async fn resolve_image(&self, id: &ContainerId, image: &str) -> Result<ImageRef, BackendError> {
        self.inner.resolve_image(id, image).await
    }

    async fn create_container(&self, meta: &ContainerMeta) -> Result<(), BackendError> {
        self.inner.create_container(meta).await
    }

    async fn create_sandbox(&self, meta: &SandboxMeta) -> Result<(), BackendError> {
        self.inner.create_sandbox(meta).await
    }

    async fn delete_container(&self, target: &Target) -> Result<(), BackendError> {
        self.inner.delete_container(target).await
    }

    async fn create_task(&self, target: &Target) -> Result<u32, BackendError> {
        self.inner.create_task(target).await
    }

    async fn start_task(&self, target: &Target) -> Result<u32, BackendError> {
        if matches!(target, Target::Container(_)) {
            self.knobs.container_start.pass().await;
        }
        self.inner.start_task(target).await
    }

    async fn wait_task(&self, target: &Target) -> Result<ExitStatus, BackendError> {
        let result = self.inner.wait_task(target).await;
        if result.is_err() {
            self.knobs.wait_errors.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    async fn kill_task(&self, target: &Target, signal: i32) -> Result<(), BackendError> {
        self.inner.kill_task(target, signal).await
    }

    async fn delete_task(&self, target: &Target, kill: bool) -> Result<(), BackendError> {
        let key = target.to_string();
        {
            let mut in_flight = self.knobs.deletes_in_flight.lock().unwrap();
            let n = in_flight.entry(key.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                self.knobs
                    .overlapping_deletes
                    .lock()
                    .unwrap()
                    .push(key.clone());
            }
        }
        let result = self.inner.delete_task(target, kill).await;
        if let Some(n) = self.knobs.deletes_in_flight.lock().unwrap().get_mut(&key) {
            *n -= 1;
        }
        result
    }

    async fn task_status(&self, target: &Target) -> Result<TaskState, BackendError> {
        let result = self.inner.task_status(target).await;
        if result.is_err() {
            self.knobs.status_errors.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    async fn update_resources(
        &self,
        id: &ContainerId,
        of: ResourcesOf,
        resources: &Resources,
    ) -> Result<(), BackendError> {
        self.inner.update_resources(id, of, resources).await
    }

    async fn reopen_log(&self, id: &ContainerId) -> Result<(), BackendError> {
        self.inner.reopen_log(id).await
    }

    async fn start_exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<u32, BackendError> {
        self.inner.start_exec(id, exec).await
    }

    async fn wait_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
    ) -> Result<ExecOutput, BackendError> {
        self.inner.wait_exec(id, exec_id).await
    }

    async fn kill_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
        signal: i32,
    ) -> Result<(), BackendError> {
        self.inner.kill_exec(id, exec_id, signal).await
    }

    async fn delete_exec(&self, id: &ContainerId, exec_id: &ExecId) -> Result<(), BackendError> {
        self.inner.delete_exec(id, exec_id).await
    }

    async fn sweep_execs(&self, id: &ContainerId) -> Result<u32, BackendError> {
        self.inner.sweep_execs(id).await
    }

    async fn list(&self) -> Result<Listing, BackendError> {
        self.knobs.list.pass().await;
        self.inner.list().await
    }

    async fn task_metrics(&self, ids: &[ContainerId]) -> Result<Vec<TaskMetrics>, BackendError> {
        self.inner.task_metrics(ids).await
    }
}

/// Which checkpoint writes a [`HoldingStore`] holds at its gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Writes of a RUNNING record (the persist of StartContainer).
    Running,
    /// Every write.
    Writes,
}

/// A checkpoint store that delegates to `inner` but holds the chosen writes at a gate
/// while it is armed: the write hangs, as on a stalled disk, until the gate opens or the
/// service crashes.
pub struct HoldingStore<S> {
    inner: S,
    gate: Arc<Gate>,
    hold: Hold,
}

impl<S> HoldingStore<S> {
    /// Wraps `inner`; `gate` holds the writes `hold` selects.
    pub fn new(inner: S, gate: Arc<Gate>, hold: Hold) -> Self {
        HoldingStore { inner, gate, hold }
    }
}

/// A fresh gate for a [`HoldingStore`].
pub fn store_gate() -> Arc<Gate> {
    Arc::new(Gate::new())
}

#[async_trait]
impl<S: CheckpointStore> CheckpointStore for HoldingStore<S> {
    async fn write(&self, id: &ContainerId, status: &Status) -> Result<(), StoreError> {
        if self.hold == Hold::Writes || status.state() == ContainerState::Running {
            self.gate.pass().await;
        }
        self.inner.write(id, status).await
    }

    async fn delete(&self, id: &ContainerId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }

    async fn load(&self, id: &ContainerId) -> Result<Status, LoadError> {
        self.inner.load(id).await
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list().await
    }

    async fn remove_orphan(&self, name: &str) -> Result<(), StoreError> {
        self.inner.remove_orphan(name).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
}
