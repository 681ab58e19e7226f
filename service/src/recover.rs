//! Gathering the facts recovery starts from (docs/containerd-behaviour.md §6.2,
//! docs/architecture.md §3.8): make the checkpoint
//! store durable, list berth's containerd records, load each checkpoint and observe each
//! task under a per-object deadline with bounded parallelism, then sweep orphan
//! directories. Deciding what the facts mean is the core's job ([`berth_core::decide`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use berth_backend::{Backend, CheckpointStore, Listed, Listing, LoadError};
use berth_core::{
    BackendError, BackendErrorKind, CheckpointProblem, RecoveredContainer, RecoveredSandbox,
    RecoveryInput, Target, TaskState,
};
use futures::StreamExt;

use crate::ServiceConfig;

/// Retries `f` with backoff (100 ms doubling to 5 s) until it succeeds; recovery cannot
/// proceed without it, and containerd or the disk may come back.
async fn until_ok<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "recovery: {what} failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn observe<B: Backend>(
    backend: &B,
    target: &Target,
    deadline: Duration,
) -> Result<TaskState, BackendError> {
    match tokio::time::timeout(deadline, backend.task_status(target)).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::new(
            BackendErrorKind::DeadlineExceeded,
            "Tasks.Get",
            target.as_str(),
            format!("no answer within {deadline:?} during recovery"),
        )),
    }
}

fn unreadable(listing: &Listing) -> usize {
    let sandboxes = listing.sandboxes.iter().filter(|l| l.meta.is_err()).count();
    let containers = listing
        .containers
        .iter()
        .filter(|l| l.meta.is_err())
        .count();
    sandboxes + containers
}

/// Takes from `again` the metadata of the records `into` could not read.
fn take_read<M: Clone>(into: &mut [Listed<M>], again: &[Listed<M>]) {
    for l in into.iter_mut().filter(|l| l.meta.is_err()) {
        if let Some(Ok(meta)) = again.iter().find(|a| a.id == l.id).map(|a| &a.meta) {
            l.meta = Ok(meta.clone());
        }
    }
}

/// Reads the metadata that could not be read again, by listing again with backoff (50 ms
/// doubling to 1 s) for up to `budget` (the recovery timeout) of answered listings: a read
/// error may be transient, and a record skipped now would vanish from the CRI until the
/// next restart (docs/recovery.md §1, step 2). A record still unreadable after that is
/// skipped.
async fn reread_metadata<B: Backend>(backend: &B, listing: &mut Listing, budget: Duration) {
    let mut delay = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while unreadable(listing) > 0 && waited < budget {
        tokio::time::sleep(delay).await;
        waited += delay;
        delay = (delay * 2).min(Duration::from_secs(1));
        // A listing that fails (containerd restarting) is retried like the first one and
        // does not count against the budget: only reads that answered do.
        let again = until_ok("listing containerd records again", || backend.list()).await;
        take_read(&mut listing.sandboxes, &again.sandboxes);
        take_read(&mut listing.containers, &again.containers);
    }
}

/// Everything recovery needs, gathered.
pub(crate) async fn gather<B: Backend, S: CheckpointStore>(
    backend: Arc<B>,
    store: Arc<S>,
    config: ServiceConfig,
) -> RecoveryInput {
    // Nothing written before the crash may be acted on unless it is durable.
    until_ok("syncing the checkpoint store", || store.sync()).await;
    let mut listing = until_ok("listing containerd records", || backend.list()).await;
    let deadline = config.recovery_timeout;
    let parallel = config.recovery_parallelism.max(1);

    // What the orphan sweep must keep: every record containerd listed, whether or not its
    // metadata could be read (docs/recovery.md §1, step 5).
    let mut listed_ids = BTreeSet::new();
    for l in &listing.sandboxes {
        listed_ids.insert(l.id.clone());
    }
    for l in &listing.containers {
        #[cfg(feature = "planted-bugs")]
        if l.meta.is_err()
            && config
                .core
                .has_bug(berth_core::PlantedBug::UnreadableMetaSwept)
        {
            continue;
        }
        listed_ids.insert(l.id.clone());
    }
    reread_metadata(&*backend, &mut listing, deadline).await;

    let mut sandboxes = Vec::new();
    for l in &listing.sandboxes {
        match &l.meta {
            Ok(meta) => sandboxes.push(meta.clone()),
            Err(e) => {
                tracing::warn!(id = %l.id, error = %e, "recovery: skipping a sandbox whose metadata cannot be read (read again for the recovery timeout)")
            }
        }
    }
    let mut containers = Vec::new();
    for l in &listing.containers {
        match &l.meta {
            Ok(meta) => containers.push((meta.clone(), l.created_at)),
            Err(e) => {
                tracing::warn!(id = %l.id, error = %e, "recovery: skipping a container whose metadata cannot be read (read again for the recovery timeout; its directory is kept)")
            }
        }
    }

    let backend_ref = &*backend;
    let mut recovered_sandboxes: Vec<RecoveredSandbox> = futures::stream::iter(sandboxes)
        .map(|meta| async move {
            let task = observe(backend_ref, &Target::Sandbox(meta.id.clone()), deadline).await;
            RecoveredSandbox { meta, task }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    recovered_sandboxes.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));

    let store_ref = &*store;
    let mut recovered_containers: Vec<RecoveredContainer> = futures::stream::iter(containers)
        .map(|(meta, created_at)| async move {
            let checkpoint = match store_ref.load(&meta.id).await {
                Ok(status) => Ok(status),
                Err(LoadError::Missing { .. }) => Err(CheckpointProblem::Missing),
                Err(e) => {
                    tracing::warn!(id = %meta.id, error = %e, "recovery: unreadable checkpoint");
                    Err(CheckpointProblem::Unreadable(e.to_string()))
                }
            };
            let task = observe(backend_ref, &Target::Container(meta.id.clone()), deadline).await;
            RecoveredContainer {
                meta,
                record_created_at: created_at,
                checkpoint,
                task,
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    recovered_containers.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));

    // Orphan sweep (docs/containerd-behaviour.md §6.2 step 6): directories of containers
    // containerd no longer has.
    // Compared against containerd's list, not against what loaded, so directories of
    // skipped containers are kept.
    match store.list().await {
        Ok(names) => {
            for name in names.into_iter().filter(|n| !listed_ids.contains(n)) {
                match store.remove_orphan(&name).await {
                    Ok(()) => {
                        tracing::info!(dir = %name, "recovery: removed orphan checkpoint directory")
                    }
                    Err(e) => {
                        tracing::warn!(dir = %name, error = %e, "recovery: cannot remove orphan directory")
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "recovery: cannot list checkpoint directories; no orphan sweep")
        }
    }

    RecoveryInput {
        sandboxes: recovered_sandboxes,
        containers: recovered_containers,
    }
}
