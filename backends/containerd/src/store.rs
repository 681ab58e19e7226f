//! [`FsCheckpointStore`]: berth's status checkpoints on the local file system
//! (docs/architecture.md §3.6).
//!
//! Layout, like containerd's CRI plugin (`<root>/containers/<id>/status`):
//!
//! ```text
//! <root>/containers/            0755
//! <root>/containers/<id>/       0755, one per container
//! <root>/containers/<id>/status 0600, the v1 checkpoint (berth_core::encode_checkpoint)
//! ```
//!
//! Durability, where containerd's `atomicfile` falls short:
//! - write: a temp file `.tmp-status-<n>` in the container's directory, all bytes written,
//!   fsync, rename over `status`, fsync the directory (and `containers/` unless this store
//!   already made the directory's entry durable: a write that created the directory and failed
//!   before that fsync leaves it visible but not durable, so the next write fsyncs it). A failure
//!   removes the temp file (and a directory this write created)
//!   and reports a typed [`StoreError`]; a crash leaves the old or the new record, and at
//!   worst a stray temp file that the next write of that container removes. A directory
//!   fsync that fails after the rename leaves the new record visible but not durable: the
//!   caller (berth-core) rewrites the record it holds until a write succeeds.
//! - delete: unlink `status` (atomic), remove the directory, fsync `containers/` (also when
//!   the directory is gone already: an earlier attempt may have failed at that fsync). A crash
//!   leaves the record or an empty directory (listed, so the orphan sweep removes it), never
//!   a sibling file like containerd's `<id>.del-status`.
//!
//! Blocking file I/O runs on tokio's blocking pool.

use std::collections::HashSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_backend::{CheckpointStore, LoadError, StoreError, StoreErrorKind};
use berth_core::{ContainerId, MAX_CHECKPOINT_BYTES, Status};

/// Name of the checkpoint file inside a container's directory.
pub const STATUS_FILE: &str = "status";

/// Prefix of the temp files a write renames over [`STATUS_FILE`].
pub const TEMP_PREFIX: &str = ".tmp-status-";

/// Name of the directory under the store's root that holds one directory per container.
pub const CONTAINERS_DIR: &str = "containers";

/// Durable per-container status checkpoints on the local file system (see the module docs
/// for the layout and the crash guarantees). Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct FsCheckpointStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    containers: PathBuf,
    next_temp: AtomicU64,
    /// Temp files of writes in progress: stale-temp cleanup must not remove these.
    in_flight: Mutex<HashSet<PathBuf>>,
    /// Container directories whose entry in `containers/` this store made durable (an fsync
    /// of `containers/` after they existed). A write that created a directory and failed
    /// before that fsync leaves it in place but not durable; the next write of the container
    /// must not take it for a durable one.
    durable_dirs: Mutex<HashSet<String>>,
}

impl FsCheckpointStore {
    /// Opens the store rooted at `root`, creating `<root>/containers/` (0755) and its
    /// parents if needed, and making the new directory durable.
    pub fn open(root: PathBuf) -> Result<FsCheckpointStore, StoreError> {
        let containers = root.join(CONTAINERS_DIR);
        let existed = containers.is_dir();
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&containers)
            .map_err(|e| store_error("open", &containers, "create directory", &e, false))?;
        if !existed {
            fsync_dir(&root).map_err(|e| store_error("open", &root, "fsync", &e, true))?;
        }
        // Temp names only need to be unique among this store's live writes and not collide
        // with a previous run's leftovers; the clock makes the latter unlikely, the
        // exclusive create below makes it harmless.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Ok(FsCheckpointStore {
            inner: Arc::new(Inner {
                containers,
                next_temp: AtomicU64::new(seed),
                in_flight: Mutex::new(HashSet::new()),
                durable_dirs: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// `<root>/containers`.
    pub fn containers_dir(&self) -> &Path {
        &self.inner.containers
    }

    /// The directory of one container: `<root>/containers/<id>`.
    pub fn container_dir(&self, id: &ContainerId) -> PathBuf {
        self.inner.containers.join(id.as_str())
    }

    /// The checkpoint file of one container: `<root>/containers/<id>/status`.
    pub fn status_path(&self, id: &ContainerId) -> PathBuf {
        self.container_dir(id).join(STATUS_FILE)
    }

    async fn blocking<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let containers = self.inner.containers.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .unwrap_or_else(|join| {
                Err(StoreError {
                    kind: StoreErrorKind::Io,
                    what,
                    path: containers.display().to_string(),
                    message: format!("blocking task failed: {join}"),
                })
            })
    }
}

#[async_trait]
impl CheckpointStore for FsCheckpointStore {
    async fn write(&self, id: &ContainerId, status: &Status) -> Result<(), StoreError> {
        let id = id.clone();
        let bytes = berth_core::encode_checkpoint(status);
        self.blocking("write", move |inner| inner.write(&id, &bytes))
            .await
    }

    async fn delete(&self, id: &ContainerId) -> Result<(), StoreError> {
        let id = id.clone();
        self.blocking("delete", move |inner| inner.delete(&id))
            .await
    }

    async fn load(&self, id: &ContainerId) -> Result<Status, LoadError> {
        let owned = id.clone();
        let bytes = self
            .blocking("load", move |inner| inner.read(&owned))
            .await?;
        match bytes {
            None => Err(LoadError::Missing { id: id.clone() }),
            Some(bytes) => {
                berth_core::decode_checkpoint(&bytes).map_err(|error| LoadError::Corrupt {
                    id: id.clone(),
                    error,
                })
            }
        }
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.blocking("list", |inner| inner.list()).await
    }

    async fn remove_orphan(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.blocking("remove_orphan", move |inner| inner.remove_orphan(&name))
            .await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.blocking("sync", |inner| {
            fsync_dir(&inner.containers)
                .map_err(|e| store_error("sync", &inner.containers, "fsync", &e, true))
        })
        .await
    }
}

impl Inner {
    fn write(&self, id: &ContainerId, bytes: &[u8]) -> Result<(), StoreError> {
        const W: &str = "write";
        let dir = self.containers.join(id.as_str());
        let created = match DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(store_error(W, &dir, "create directory", &e, false)),
        };
        let fsync_root = created || !self.durable_dirs_set().contains(id.as_str());
        let result = self.write_in(&dir, bytes, fsync_root);
        if result.is_ok() && fsync_root {
            self.durable_dirs_set().insert(id.as_str().to_owned());
        }
        if result.is_err() && created {
            // Leave no empty directory behind a write that never produced a record.
            let _ = std::fs::remove_dir(&dir);
        }
        result?;
        self.remove_stale_temps(&dir);
        Ok(())
    }

    fn write_in(&self, dir: &Path, bytes: &[u8], fsync_root: bool) -> Result<(), StoreError> {
        const W: &str = "write";
        let (temp, mut file) = self.create_temp(dir)?;
        let guard = TempGuard {
            path: &temp,
            inner: self,
            armed: true,
        };
        file.write_all(bytes)
            .map_err(|e| store_error(W, &temp, "write", &e, false))?;
        file.sync_all()
            .map_err(|e| store_error(W, &temp, "fsync", &e, true))?;
        drop(file);
        let status = dir.join(STATUS_FILE);
        std::fs::rename(&temp, &status)
            .map_err(|e| store_error(W, &status, "rename", &e, false))?;
        guard.disarm();
        // The rename is visible now; these make it durable.
        fsync_dir(dir).map_err(|e| store_error(W, dir, "fsync directory", &e, true))?;
        if fsync_root {
            fsync_dir(&self.containers)
                .map_err(|e| store_error(W, &self.containers, "fsync directory", &e, true))?;
        }
        Ok(())
    }

    /// Creates a fresh temp file (O_EXCL, 0600) and registers it as in flight.
    fn create_temp(&self, dir: &Path) -> Result<(PathBuf, File), StoreError> {
        loop {
            let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!("{TEMP_PREFIX}{n}"));
            self.in_flight_set().insert(temp.clone());
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
            {
                Ok(file) => return Ok((temp, file)),
                Err(e) => {
                    self.in_flight_set().remove(&temp);
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(store_error("write", &temp, "create", &e, false));
                    }
                }
            }
        }
    }

    fn durable_dirs_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight_set(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes temp files a crashed write left in `dir` (not the ones of live writes).
    fn remove_stale_temps(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX));
            let path = entry.path();
            if is_temp
                && !self.in_flight_set().contains(&path)
                && let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove stale temp file");
            }
        }
    }

    fn delete(&self, id: &ContainerId) -> Result<(), StoreError> {
        const D: &str = "delete";
        let dir = self.containers.join(id.as_str());
        let status = dir.join(STATUS_FILE);
        self.durable_dirs_set().remove(id.as_str());
        match std::fs::remove_file(&status) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(store_error(D, &status, "remove", &e, false)),
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            // Gone already, possibly by an earlier attempt whose fsync below failed: the
            // removal is durable only once `containers/` is fsynced, so fsync it anyway.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(store_error(D, &dir, "remove directory", &e, false)),
        }
        fsync_dir(&self.containers)
            .map_err(|e| store_error(D, &self.containers, "fsync directory", &e, true))
    }

    /// The checkpoint's bytes (at most one more than decoding accepts), or None if absent.
    fn read(&self, id: &ContainerId) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.containers.join(id.as_str()).join(STATUS_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(store_error("load", &path, "open", &e, false)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_CHECKPOINT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| store_error("load", &path, "read", &e, false))?;
        Ok(Some(bytes))
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        let c = &self.containers;
        let entries = std::fs::read_dir(c)
            .map_err(|e| store_error("list", c, "read directory", &e, false))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| store_error("list", c, "read directory", &e, false))?;
            // Not followed: a symlink is not one of our directories.
            let is_dir = entry
                .file_type()
                .map_err(|e| store_error("list", &entry.path(), "stat", &e, false))?
                .is_dir();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_dir && !name.starts_with(".tmp-") {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove_orphan(&self, name: &str) -> Result<(), StoreError> {
        const R: &str = "remove_orphan";
        if let Err(e) = berth_core::validate_id("container", name) {
            return Err(StoreError {
                kind: StoreErrorKind::Io,
                what: R,
                path: self.containers.join(name).display().to_string(),
                message: format!("refused: {e}"),
            });
        }
        let path = self.containers.join(name);
        self.durable_dirs_set().remove(name);
        let removed = match std::fs::symlink_metadata(&path) {
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
        };
        match removed {
            Ok(()) => {}
            // As in delete: fsync even when gone (an earlier attempt's fsync may have failed).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(store_error(R, &path, "remove", &e, false)),
        }
        fsync_dir(&self.containers)
            .map_err(|e| store_error(R, &self.containers, "fsync directory", &e, true))
    }
}

/// Removes a temp file unless disarmed (after the rename consumed it); always unregisters it.
struct TempGuard<'a> {
    path: &'a Path,
    inner: &'a Inner,
    armed: bool,
}

impl TempGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(self.path);
        }
        self.inner.in_flight_set().remove(self.path);
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The one mapping from an OS error to a [`StoreError`]: ENOSPC/EDQUOT → NoSpace,
/// EROFS → ReadOnly, any other failure of an fsync → Sync, the rest → Io.
fn store_error(
    what: &'static str,
    path: &Path,
    step: &str,
    e: &io::Error,
    during_fsync: bool,
) -> StoreError {
    let kind = match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreErrorKind::NoSpace,
        Some(libc::EROFS) => StoreErrorKind::ReadOnly,
        _ if during_fsync => StoreErrorKind::Sync,
        _ => StoreErrorKind::Io,
    };
    StoreError {
        kind,
        what,
        path: path.display().to_string(),
        message: format!("{step}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_errno_to_kinds() {
        let p = Path::new("/x");
        let k = |errno, sync| {
            store_error("write", p, "s", &io::Error::from_raw_os_error(errno), sync).kind
        };
        assert_eq!(k(libc::ENOSPC, false), StoreErrorKind::NoSpace);
        assert_eq!(k(libc::EDQUOT, true), StoreErrorKind::NoSpace);
        assert_eq!(k(libc::EROFS, false), StoreErrorKind::ReadOnly);
        assert_eq!(k(libc::EIO, true), StoreErrorKind::Sync);
        assert_eq!(k(libc::EIO, false), StoreErrorKind::Io);
        assert_eq!(k(libc::EACCES, false), StoreErrorKind::Io);
        let e = store_error(
            "write",
            p,
            "fsync",
            &io::Error::from_raw_os_error(libc::EIO),
            true,
        );
        assert_eq!(e.path, "/x");
        assert!(e.message.starts_with("fsync: "), "{}", e.message);
    }
}
