//! [`SimDisk`]: berth's [`CheckpointStore`] on a simulated file system with a page cache,
//! modelled closely enough that the durability protocol and its faults mean something.
//!
//! Layout, as berth's real store: `containers/<id>/status`, written through a temp file
//! `containers/<id>/.tmp-status-<n>`.
//!
//! The model:
//! - every file (inode) has cached bytes (what reads see) and durable bytes (what is on the
//!   platter); a write dirties the cache, an fsync of the file makes its bytes durable;
//! - every directory has cached entries and durable entries plus the ordered list of its
//!   changes not yet made durable (create, rename, unlink, mkdir, rmdir); an fsync of the
//!   directory makes them durable;
//! - a process crash ([`SimDisk::crash`] with `power_loss = false`) changes nothing: the page
//!   cache survives and the next reader sees everything written;
//! - a power loss keeps, per directory, a prefix of its unsynced changes (all of them unless
//!   a lost rename is drawn) and, per dirty file, its new bytes, its old bytes (a lost
//!   write) or a random strict prefix of its new bytes (a torn write); the cache is then
//!   rebuilt from the disk.
//!
//! `write` follows the real store's protocol step by step, with an await point (the write
//! and fsync latencies) between steps, so a crash can land between any two: create the temp
//! file and write it, fsync it, rename it over `status`, fsync the directory (and
//! `containers/` when the directory is new), then remove stale temp files. A failure
//! removes the temp file (and a directory this write created).
//!
//! The store promises berth's callers nothing about two operations on one container's
//! record at once (the core issues one at a time and the driver queues them per container),
//! so the disk notes every write or delete of a record that begins while another one of the
//! same record is still in flight ([`SimDisk::overlaps`]): a checker fails the run on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use berth_backend::{CheckpointStore, LoadError, StoreError, StoreErrorKind};
use berth_core::{ContainerId, Status};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::{DEFAULT_WALL_BASE, SimClock};
use crate::config::DiskConfig;
use crate::faults::{DiskFaults, FaultCounts, FaultEvent, FaultKind, FaultPlan};

/// Name of the checkpoint file in a container's directory.
pub const STATUS_FILE: &str = "status";
/// Prefix of the temp files a write renames over [`STATUS_FILE`].
pub const TEMP_PREFIX: &str = ".tmp-status-";
/// The directory holding one directory per container.
pub const CONTAINERS_DIR: &str = "containers";

/// Stream constant: the disk's draws are independent of the backend's.
const DISK_STREAM: u64 = 0xD15C_0002_5EED_0002;

type DirId = u64;
type Ino = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum RootOp {
    Mkdir(String, DirId),
    Rmdir(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DirOp {
    Link(String, Ino),
    Unlink(String),
    Rename(String, String),
}

#[derive(Debug, Default)]
struct Dir {
    cached: BTreeMap<String, Ino>,
    durable: BTreeMap<String, Ino>,
    pending: Vec<DirOp>,
}

#[derive(Debug, Default)]
struct Inode {
    cached: Vec<u8>,
    durable: Vec<u8>,
    dirty: bool,
}

/// Two operations on one container's record in flight at once ([`SimDisk::overlaps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The container.
    pub id: String,
    /// The operation in flight (`write`, `delete` or `remove_orphan`).
    pub first: &'static str,
    /// When it began (unix ns).
    pub first_at: i64,
    /// The operation that began meanwhile.
    pub second: &'static str,
    /// When that began (unix ns).
    pub second_at: i64,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "checkpoint {} of container {} began at {} while its {} begun at {} was in flight",
            self.second, self.id, self.second_at, self.first, self.first_at
        )
    }
}

/// A directory recovery's orphan sweep removed ([`SimDisk::swept`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The directory's name (a container id).
    pub id: String,
    /// When its removal began (unix ns).
    pub at: i64,
}

/// A container record berth made durable (an acknowledged write) or found (a load by
/// recovery) ([`SimDisk::records`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The container.
    pub id: String,
    /// When the write was acknowledged or the load answered (unix ns).
    pub at: i64,
    /// The record.
    pub status: Status,
    /// Found by a load (else written).
    pub loaded: bool,
}

/// What a crash did to the disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// It was a power loss (else a process crash, which changes nothing on disk).
    pub power_loss: bool,
    /// Unsynced directory changes lost.
    pub lost_dir_changes: u32,
    /// Unsynced file writes lost (the old bytes remain).
    pub lost_writes: u32,
    /// Paths of files torn (a strict prefix of the new bytes remains).
    pub torn: Vec<String>,
}

#[derive(Debug)]
struct DiskState {
    clock: SimClock,
    cfg: DiskConfig,
    rng: SmallRng,
    faults: DiskFaults,
    counts: FaultCounts,
    log: Vec<FaultEvent>,
    root_cached: BTreeMap<String, DirId>,
    root_durable: BTreeMap<String, DirId>,
    root_pending: Vec<RootOp>,
    dirs: BTreeMap<DirId, Dir>,
    inodes: BTreeMap<Ino, Inode>,
    in_flight: BTreeSet<(DirId, String)>,
    /// The write or delete of each container's record in flight: its token, what it is
    /// and when it began (unix ns).
    busy: BTreeMap<String, (u64, &'static str, i64)>,
    next_busy: u64,
    /// Every operation that began while another one of the same record was in flight.
    overlaps: Vec<Overlap>,
    /// Every `remove_orphan` that began, in order.
    swept: Vec<Swept>,
    /// Every record acknowledged as written or loaded, in order.
    records: Vec<Recorded>,
    /// What the store (berth's process, not the disk) knows: container directories whose
    /// entry in `containers/` it made durable. Gone with the process at a crash.
    durable_dirs: BTreeSet<String>,
    next_dir: DirId,
    next_ino: Ino,
    next_temp: u64,
}

/// A simulated checkpoint disk with a page cache, power loss and storage faults,
/// implementing [`CheckpointStore`] (see the module docs for the model). Cheap to clone;
/// clones share everything. Decisions come from a `SmallRng` seeded with `seed`.
#[derive(Debug, Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<DiskState>>,
}

fn path_of(id: &str, file: Option<&str>) -> String {
    match file {
        None => format!("{CONTAINERS_DIR}/{id}"),
        Some(f) => format!("{CONTAINERS_DIR}/{id}/{f}"),
    }
}

fn store_error(kind: StoreErrorKind, what: &'static str, path: String, step: &str) -> StoreError {
    let os = match kind {
        StoreErrorKind::NoSpace => "No space left on device (os error 28)",
        StoreErrorKind::ReadOnly => "Read-only file system (os error 30)",
        StoreErrorKind::Sync | StoreErrorKind::Io => "Input/output error (os error 5)",
    };
    StoreError {
        kind,
        what,
        path,
        message: format!("{step}: {os}"),
    }
}

impl DiskState {
    fn record(&mut self, kind: FaultKind, what: &'static str, target: String) {
        self.counts.add(kind);
        let at = self.clock.now_wall();
        self.log.push(FaultEvent {
            at,
            what,
            target,
            kind,
        });
    }

    fn draw(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.gen_bool(rate.min(1.0))
    }

    /// Draws an fsync failure.
    fn fsync_fails(&mut self, what: &'static str, path: &str) -> bool {
        let rate = self.faults.sync_failure;
        if self.draw(rate) {
            self.record(FaultKind::SyncFailure, what, path.to_owned());
            true
        } else {
            false
        }
    }

    fn dir(&mut self, dir: DirId) -> &mut Dir {
        self.dirs.entry(dir).or_default()
    }

    /// The container's directory, created (unsynced) if missing; true if created.
    fn ensure_dir(&mut self, id: &str) -> (DirId, bool) {
        if let Some(d) = self.root_cached.get(id) {
            return (*d, false);
        }
        let d = self.next_dir;
        self.next_dir += 1;
        self.dirs.insert(d, Dir::default());
        self.root_cached.insert(id.to_owned(), d);
        self.root_pending.push(RootOp::Mkdir(id.to_owned(), d));
        (d, true)
    }

    fn rmdir(&mut self, id: &str) {
        if let Some(d) = self.root_cached.remove(id) {
            let names: Vec<String> = self.dir(d).cached.keys().cloned().collect();
            for name in names {
                self.unlink(d, &name);
            }
            self.root_pending.push(RootOp::Rmdir(id.to_owned()));
        }
    }

    fn create_file(&mut self, dir: DirId, name: &str) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        let d = self.dir(dir);
        d.cached.insert(name.to_owned(), ino);
        d.pending.push(DirOp::Link(name.to_owned(), ino));
        ino
    }

    fn unlink(&mut self, dir: DirId, name: &str) {
        let d = self.dir(dir);
        if d.cached.remove(name).is_some() {
            d.pending.push(DirOp::Unlink(name.to_owned()));
        }
    }

    fn rename(&mut self, dir: DirId, from: &str, to: &str) -> bool {
        let d = self.dir(dir);
        match d.cached.remove(from) {
            Some(ino) => {
                d.cached.insert(to.to_owned(), ino);
                d.pending
                    .push(DirOp::Rename(from.to_owned(), to.to_owned()));
                true
            }
            None => false,
        }
    }

    fn fsync_file(&mut self, ino: Ino) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.durable = i.cached.clone();
            i.dirty = false;
        }
    }

    fn fsync_dir(&mut self, dir: DirId) {
        let d = self.dir(dir);
        let ops = std::mem::take(&mut d.pending);
        for op in ops {
            apply_dir_op(&mut d.durable, op);
        }
    }

    fn fsync_root(&mut self) {
        for op in std::mem::take(&mut self.root_pending) {
            apply_root_op(&mut self.root_durable, op);
        }
    }

    /// A failed write's clean-up: the temp file, and the directory if this write made it.
    fn undo_write(&mut self, id: &str, dir: DirId, temp: &str, created: bool) {
        self.unlink(dir, temp);
        if created && self.dir(dir).cached.is_empty() {
            self.rmdir(id);
        }
    }

    fn remove_stale_temps(&mut self, dir: DirId) {
        let stale: Vec<String> = self
            .dirs
            .get(&dir)
            .map(|d| &d.cached)
            .into_iter()
            .flat_map(|c| c.keys())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .filter(|n| !self.in_flight.contains(&(dir, (*n).clone())))
            .cloned()
            .collect();
        for name in stale {
            self.unlink(dir, &name);
        }
    }

    fn cached_status(&self, id: &str) -> Option<Vec<u8>> {
        let d = self.root_cached.get(id)?;
        let ino = self.dirs.get(d)?.cached.get(STATUS_FILE)?;
        self.inodes.get(ino).map(|i| i.cached.clone())
    }

    /// How many of `n` unsynced changes of one directory survive a power loss.
    fn surviving(&mut self, n: usize, what: &str) -> usize {
        if n == 0 {
            return 0;
        }
        let rate = self.faults.lost_rename;
        if self.draw(rate) {
            let keep = self.rng.gen_range(0..n);
            for _ in keep..n {
                self.record(FaultKind::LostRename, "power loss", what.to_owned());
            }
            keep
        } else {
            n
        }
    }

    fn power_loss(&mut self) -> CrashReport {
        let mut report = CrashReport {
            power_loss: true,
            ..CrashReport::default()
        };
        let ops = std::mem::take(&mut self.root_pending);
        let keep = self.surviving(ops.len(), CONTAINERS_DIR);
        report.lost_dir_changes += (ops.len() - keep) as u32;
        for op in ops.into_iter().take(keep) {
            apply_root_op(&mut self.root_durable, op);
        }
        let dir_ids: Vec<DirId> = self.dirs.keys().copied().collect();
        let names = self.dir_names();
        for d in dir_ids {
            let ops = std::mem::take(&mut self.dir(d).pending);
            let what = names.get(&d).cloned().unwrap_or_default();
            let keep = self.surviving(ops.len(), &path_of(&what, None));
            report.lost_dir_changes += (ops.len() - keep) as u32;
            let dir = self.dir(d);
            for op in ops.into_iter().take(keep) {
                apply_dir_op(&mut dir.durable, op);
            }
        }
        let paths = self.inode_paths();
        let dirty: Vec<Ino> = self
            .inodes
            .iter()
            .filter(|(_, i)| i.dirty)
            .map(|(n, _)| *n)
            .collect();
        let (lost, torn) = (self.faults.lost_write, self.faults.torn_write);
        for ino in dirty {
            let path = paths
                .get(&ino)
                .cloned()
                .unwrap_or_else(|| format!("inode {ino}"));
            let u: f64 = self.rng.gen_range(0.0..1.0);
            let len = self.inodes.get(&ino).map_or(0, |i| i.cached.len());
            if u < lost.max(0.0) {
                report.lost_writes += 1;
                self.record(FaultKind::LostWrite, "power loss", path);
            } else if u < lost.max(0.0) + torn.max(0.0) && len > 0 {
                let cut = self.rng.gen_range(0..len);
                if let Some(i) = self.inodes.get_mut(&ino) {
                    i.durable = i.cached[..cut].to_vec();
                }
                self.record(FaultKind::TornWrite, "power loss", path.clone());
                report.torn.push(path);
            } else {
                self.fsync_file(ino);
            }
        }
        // The page cache is gone: what is cached now is what the disk holds.
        self.root_cached = self.root_durable.clone();
        for dir in self.dirs.values_mut() {
            dir.cached = dir.durable.clone();
        }
        for inode in self.inodes.values_mut() {
            inode.cached = inode.durable.clone();
            inode.dirty = false;
        }
        self.in_flight.clear();
        report
    }

    /// The name each directory had last (cached, else durable), for messages.
    fn dir_names(&self) -> BTreeMap<DirId, String> {
        let mut names = BTreeMap::new();
        for (name, d) in self.root_durable.iter().chain(self.root_cached.iter()) {
            names.insert(*d, name.clone());
        }
        names
    }

    /// A path for each inode (cached entries win), for messages.
    fn inode_paths(&self) -> BTreeMap<Ino, String> {
        let names = self.dir_names();
        let mut paths = BTreeMap::new();
        for (d, dir) in &self.dirs {
            let dname = names.get(d).cloned().unwrap_or_default();
            for (name, ino) in dir.durable.iter().chain(dir.cached.iter()) {
                paths.insert(*ino, path_of(&dname, Some(name)));
            }
        }
        paths
    }

    fn view(&self, durable: bool) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        let root = if durable {
            &self.root_durable
        } else {
            &self.root_cached
        };
        root.iter()
            .map(|(name, d)| {
                let files = self
                    .dirs
                    .get(d)
                    .map(|dir| if durable { &dir.durable } else { &dir.cached })
                    .into_iter()
                    .flatten()
                    .map(|(f, ino)| {
                        let bytes = self.inodes.get(ino).map_or_else(Vec::new, |i| {
                            if durable {
                                i.durable.clone()
                            } else {
                                i.cached.clone()
                            }
                        });
                        (f.clone(), bytes)
                    })
                    .collect();
                (name.clone(), files)
            })
            .collect()
    }
}

fn apply_root_op(root: &mut BTreeMap<String, DirId>, op: RootOp) {
    match op {
        RootOp::Mkdir(name, d) => {
            root.insert(name, d);
        }
        RootOp::Rmdir(name) => {
            root.remove(&name);
        }
    }
}

fn apply_dir_op(entries: &mut BTreeMap<String, Ino>, op: DirOp) {
    match op {
        DirOp::Link(name, ino) => {
            entries.insert(name, ino);
        }
        DirOp::Unlink(name) => {
            entries.remove(&name);
        }
        DirOp::Rename(from, to) => {
            if let Some(ino) = entries.remove(&from) {
                entries.insert(to, ino);
            }
        }
    }
}

/// Marks one operation on a container's record in flight until it ends, however it ends
/// (a crash clears every mark; the token keeps a late drop from clearing a newer one).
struct Busy<'a> {
    disk: &'a SimDisk,
    id: String,
    token: u64,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut s = self.disk.state();
        if s.busy
            .get(&self.id)
            .is_some_and(|(t, _, _)| *t == self.token)
        {
            s.busy.remove(&self.id);
        }
    }
}

/// Unregisters a temp file from the in-flight set when its write ends, however it ends.
struct InFlight<'a> {
    disk: &'a SimDisk,
    key: (DirId, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.disk.state().in_flight.remove(&self.key);
    }
}

async fn sleep_for(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

impl SimDisk {
    /// An empty disk with the default latencies and no faults.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk::with_config(seed, DiskConfig::default())
    }

    /// An empty disk with `config` and no faults.
    pub fn with_config(seed: u64, config: DiskConfig) -> SimDisk {
        SimDisk {
            inner: Arc::new(Mutex::new(DiskState {
                clock: SimClock::new(DEFAULT_WALL_BASE),
                cfg: config,
                rng: SmallRng::seed_from_u64(seed ^ DISK_STREAM),
                faults: DiskFaults::none(),
                counts: FaultCounts::default(),
                log: Vec::new(),
                root_cached: BTreeMap::new(),
                root_durable: BTreeMap::new(),
                root_pending: Vec::new(),
                dirs: BTreeMap::new(),
                inodes: BTreeMap::new(),
                in_flight: BTreeSet::new(),
                busy: BTreeMap::new(),
                next_busy: 1,
                overlaps: Vec::new(),
                swept: Vec::new(),
                records: Vec::new(),
                durable_dirs: BTreeSet::new(),
                next_dir: 1,
                next_ino: 1,
                next_temp: 1,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uses `clock` for the times of the fault log (e.g. [`crate::SimBackend::clock`], so
    /// both logs share one time line).
    pub fn set_clock(&self, clock: SimClock) {
        self.state().clock = clock;
    }

    /// Replaces the fault plan; only [`FaultPlan::disk`] matters here.
    pub fn set_faults(&self, plan: &FaultPlan) {
        self.state().faults = plan.disk.clone();
    }

    /// The disk faults in force.
    pub fn faults(&self) -> DiskFaults {
        self.state().faults.clone()
    }

    /// Replaces the settings (latencies and the planted-bug hooks).
    pub fn set_config(&self, config: DiskConfig) {
        self.state().cfg = config;
    }

    /// The settings in force.
    pub fn config(&self) -> DiskConfig {
        self.state().cfg.clone()
    }

    /// The berth process crashed (`power_loss = false`: the page cache survives, nothing
    /// changes) or the machine lost power (unsynced data and directory changes are kept,
    /// lost or torn as [`DiskFaults`] says, then the cache is rebuilt from the disk). Call
    /// it at the moment the harness kills the berth node.
    pub fn crash(&self, power_loss: bool) -> CrashReport {
        let mut s = self.state();
        s.durable_dirs.clear();
        // The process is gone, and its operations with it.
        s.busy.clear();
        if power_loss {
            s.record(FaultKind::PowerLoss, "crash", CONTAINERS_DIR.to_owned());
            s.power_loss()
        } else {
            s.record(FaultKind::ProcessCrash, "crash", CONTAINERS_DIR.to_owned());
            s.in_flight.clear();
            CrashReport::default()
        }
    }

    /// Plants `bytes` as the durable checkpoint of `id` (e.g. garbage, to test recovery).
    /// Makes `containers/` durable on the way, as the directory creation needs it.
    pub fn write_raw(&self, id: &str, bytes: &[u8]) {
        let mut s = self.state();
        let (dir, _) = s.ensure_dir(id);
        s.fsync_root();
        s.unlink(dir, STATUS_FILE);
        let ino = s.create_file(dir, STATUS_FILE);
        if let Some(i) = s.inodes.get_mut(&ino) {
            i.cached = bytes.to_vec();
        }
        s.fsync_file(ino);
        s.fsync_dir(dir);
    }

    /// What a reader sees now (the page cache): directory name → file name → bytes.
    pub fn cached(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        self.state().view(false)
    }

    /// What is on the disk now (what survives a power loss that keeps no unsynced change).
    pub fn durable(&self) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
        self.state().view(true)
    }

    /// Files other than `status` in the page cache (temp files a crash left), as paths.
    pub fn stray_files(&self) -> Vec<String> {
        self.cached()
            .into_iter()
            .flat_map(|(d, files)| {
                files
                    .into_keys()
                    .filter(|f| f != STATUS_FILE)
                    .map(move |f| path_of(&d, Some(&f)))
            })
            .collect()
    }

    /// True if some write, rename or unlink is not durable yet.
    pub fn has_unsynced(&self) -> bool {
        let s = self.state();
        !s.root_pending.is_empty()
            || s.dirs.values().any(|d| !d.pending.is_empty())
            || s.inodes.values().any(|i| i.dirty)
    }

    /// Faults injected so far, by kind (power losses and process crashes included).
    pub fn fault_counts(&self) -> FaultCounts {
        self.state().counts.clone()
    }

    /// Every fault injected so far, in order.
    pub fn fault_log(&self) -> Vec<FaultEvent> {
        self.state().log.clone()
    }

    /// Every operation on a container's record that began while another one of the same
    /// record was still in flight, in order.
    pub fn overlaps(&self) -> Vec<Overlap> {
        self.state().overlaps.clone()
    }

    /// Every directory recovery's orphan sweep began to remove
    /// ([`CheckpointStore::remove_orphan`]), in order, over the whole run (crashes included).
    pub fn swept(&self) -> Vec<Swept> {
        self.state().swept.clone()
    }

    /// How many directories the orphan sweep began to remove (cheap; see [`SimDisk::swept`]).
    pub fn swept_count(&self) -> usize {
        self.state().swept.len()
    }

    /// The records berth made durable (acknowledged writes) or found (loads) from the
    /// `from`-th on, in order, over the whole run (crashes included).
    pub fn records_from(&self, from: usize) -> Vec<Recorded> {
        self.state()
            .records
            .get(from..)
            .unwrap_or_default()
            .to_vec()
    }

    fn note(&self, id: &ContainerId, status: &Status, loaded: bool) {
        let mut s = self.state();
        let at = s.clock.now_wall();
        s.records.push(Recorded {
            id: id.as_str().to_owned(),
            at,
            status: status.clone(),
            loaded,
        });
    }

    /// Marks `what` of `id`'s record in flight, noting an overlap if one already is.
    fn begin(&self, what: &'static str, id: &str) -> Busy<'_> {
        let mut s = self.state();
        let at = s.clock.now_wall();
        if let Some((_, first, first_at)) = s.busy.get(id).copied() {
            s.overlaps.push(Overlap {
                id: id.to_owned(),
                first,
                first_at,
                second: what,
                second_at: at,
            });
        }
        let token = s.next_busy;
        s.next_busy += 1;
        s.busy.insert(id.to_owned(), (token, what, at));
        Busy {
            disk: self,
            id: id.to_owned(),
            token,
        }
    }

    async fn write_bytes(&self, id: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        const W: &str = "write";
        let _busy = self.begin(W, id);
        let (dir, created, fsync_root, temp, ino, cfg) = {
            let mut s = self.state();
            let (dir, created) = s.ensure_dir(id);
            // As FsCheckpointStore: `containers/` is fsynced unless this store made the
            // directory's entry durable already (a failed write may have created it).
            let fsync_root = created || !s.durable_dirs.contains(id);
            let temp = format!("{TEMP_PREFIX}{}", s.next_temp);
            s.next_temp += 1;
            let ino = s.create_file(dir, &temp);
            s.in_flight.insert((dir, temp.clone()));
            (dir, created, fsync_root, temp, ino, s.cfg.clone())
        };
        let _in_flight = InFlight {
            disk: self,
            key: (dir, temp.clone()),
        };
        let temp_path = path_of(id, Some(&temp));
        sleep_for(cfg.write_latency).await;
        {
            let mut s = self.state();
            let rate = s.faults.no_space;
            if s.draw(rate) {
                s.record(FaultKind::NoSpace, W, temp_path.clone());
                s.undo_write(id, dir, &temp, created);
                return Err(store_error(StoreErrorKind::NoSpace, W, temp_path, "write"));
            }
            if let Some(i) = s.inodes.get_mut(&ino) {
                i.cached = bytes;
                i.dirty = true;
            }
        }
        if !cfg.skip_file_fsync {
            sleep_for(cfg.fsync_latency).await;
            let mut s = self.state();
            if s.fsync_fails(W, &temp_path) {
                s.undo_write(id, dir, &temp, created);
                return Err(store_error(StoreErrorKind::Sync, W, temp_path, "fsync"));
            }
            s.fsync_file(ino);
        }
        let status_path = path_of(id, Some(STATUS_FILE));
        if !self.state().rename(dir, &temp, STATUS_FILE) {
            return Err(store_error(StoreErrorKind::Io, W, status_path, "rename"));
        }
        if !cfg.skip_dir_fsync {
            let dir_path = path_of(id, None);
            sleep_for(cfg.fsync_latency).await;
            {
                let mut s = self.state();
                if s.fsync_fails(W, &dir_path) {
                    return Err(store_error(
                        StoreErrorKind::Sync,
                        W,
                        dir_path,
                        "fsync directory",
                    ));
                }
                s.fsync_dir(dir);
            }
            if fsync_root {
                sleep_for(cfg.fsync_latency).await;
                let mut s = self.state();
                if s.fsync_fails(W, CONTAINERS_DIR) {
                    return Err(store_error(
                        StoreErrorKind::Sync,
                        W,
                        CONTAINERS_DIR.to_owned(),
                        "fsync directory",
                    ));
                }
                s.fsync_root();
                s.durable_dirs.insert(id.to_owned());
            }
        }
        self.state().remove_stale_temps(dir);
        Ok(())
    }

    /// Removes a container's directory and everything in it, then fsyncs `containers/`.
    async fn remove_dir(&self, what: &'static str, id: &str) -> Result<(), StoreError> {
        let _busy = self.begin(what, id);
        let cfg = {
            let mut s = self.state();
            s.durable_dirs.remove(id);
            // Gone already, possibly by an earlier attempt whose fsync failed: the removal
            // is durable only once `containers/` is fsynced, so fsync it anyway.
            s.rmdir(id);
            s.cfg.clone()
        };
        if cfg.skip_dir_fsync {
            return Ok(());
        }
        sleep_for(cfg.fsync_latency).await;
        let mut s = self.state();
        if s.fsync_fails(what, CONTAINERS_DIR) {
            return Err(store_error(
                StoreErrorKind::Sync,
                what,
                CONTAINERS_DIR.to_owned(),
                "fsync directory",
            ));
        }
        s.fsync_root();
        Ok(())
    }
}

#[async_trait]
impl CheckpointStore for SimDisk {
    async fn write(&self, id: &ContainerId, status: &Status) -> Result<(), StoreError> {
        self.write_bytes(id.as_str(), berth_core::encode_checkpoint(status))
            .await?;
        self.note(id, status, false);
        Ok(())
    }

    async fn delete(&self, id: &ContainerId) -> Result<(), StoreError> {
        self.remove_dir("delete", id.as_str()).await
    }

    async fn load(&self, id: &ContainerId) -> Result<Status, LoadError> {
        let bytes = self.state().cached_status(id.as_str());
        match bytes {
            None => Err(LoadError::Missing { id: id.clone() }),
            Some(bytes) => {
                let status =
                    berth_core::decode_checkpoint(&bytes).map_err(|error| LoadError::Corrupt {
                        id: id.clone(),
                        error,
                    })?;
                self.note(id, &status, true);
                Ok(status)
            }
        }
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .state()
            .root_cached
            .keys()
            .filter(|n| !n.starts_with(".tmp-"))
            .cloned()
            .collect())
    }

    async fn remove_orphan(&self, name: &str) -> Result<(), StoreError> {
        if let Err(e) = berth_core::validate_id("container", name) {
            return Err(StoreError {
                kind: StoreErrorKind::Io,
                what: "remove_orphan",
                path: path_of(name, None),
                message: format!("refused: {e}"),
            });
        }
        {
            let mut s = self.state();
            let at = s.clock.now_wall();
            s.swept.push(Swept {
                id: name.to_owned(),
                at,
            });
        }
        self.remove_dir("remove_orphan", name).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let latency = self.state().cfg.fsync_latency;
        sleep_for(latency).await;
        let mut s = self.state();
        if s.fsync_fails("sync", CONTAINERS_DIR) {
            return Err(store_error(
                StoreErrorKind::Sync,
                "sync",
                CONTAINERS_DIR.to_owned(),
                "fsync",
            ));
        }
        s.fsync_root();
        let dirs: Vec<DirId> = s.dirs.keys().copied().collect();
        for d in dirs {
            s.fsync_dir(d);
        }
        let inos: Vec<Ino> = s.inodes.keys().copied().collect();
        for ino in inos {
            if s.inodes.get(&ino).is_some_and(|i| i.dirty) {
                s.fsync_file(ino);
            }
        }
        Ok(())
    }
}
