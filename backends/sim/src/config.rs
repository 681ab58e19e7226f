//! Settings of the simulated containerd that are not faults: clock base, latencies,
//! timeouts.

use std::time::Duration;

use crate::clock::DEFAULT_WALL_BASE;

/// How long each containerd call takes when nothing goes wrong. The effect lands at a
/// random point inside that time, so a caller killed mid-call may or may not have changed
/// containerd. Defaults are the medians measured on containerd 1.6.20
/// (docs/containerd-behaviour.md §9.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latencies {
    /// `Containers.Create` (snapshot + record).
    pub create_container: Duration,
    /// `Containers.Delete`.
    pub delete_container: Duration,
    /// `Tasks.Create` (shim + `runc create`).
    pub create_task: Duration,
    /// `Tasks.Start`.
    pub start_task: Duration,
    /// `Tasks.Wait`, until it is registered.
    pub wait_task: Duration,
    /// `Tasks.Kill`.
    pub kill_task: Duration,
    /// `Tasks.Delete`.
    pub delete_task: Duration,
    /// `Tasks.Get`.
    pub task_status: Duration,
    /// `Containers.List`.
    pub list: Duration,
    /// `Tasks.Update` (`runc update` of the cgroup; not measured, of the order of a
    /// `Tasks.Kill` plus a cgroup write).
    pub update_task: Duration,
    /// `Containers.Get` and `Containers.Update` of the record's spec (not measured: two
    /// metadata calls).
    pub update_record: Duration,
    /// Reopening a log file (berth's own copier, no containerd call).
    pub reopen_log: Duration,
    /// Each exec call: `Tasks.Exec` + `Tasks.Start`, `Tasks.Kill`, `Tasks.DeleteProcess`,
    /// a sweep (not measured: of the order of a `Tasks.Start`).
    pub exec: Duration,
}

impl Default for Latencies {
    fn default() -> Self {
        let ms = Duration::from_micros;
        Latencies {
            create_container: ms(1_900),
            delete_container: ms(3_200),
            create_task: ms(51_000),
            start_task: ms(9_300),
            wait_task: ms(300),
            kill_task: ms(300),
            delete_task: ms(25_000),
            task_status: ms(300),
            list: ms(900),
            update_task: ms(2_000),
            update_record: ms(1_200),
            reopen_log: ms(100),
            exec: ms(8_000),
        }
    }
}

impl Latencies {
    /// Every call answers at once (no await point inside a call).
    pub fn zero() -> Latencies {
        Latencies {
            create_container: Duration::ZERO,
            delete_container: Duration::ZERO,
            create_task: Duration::ZERO,
            start_task: Duration::ZERO,
            wait_task: Duration::ZERO,
            kill_task: Duration::ZERO,
            delete_task: Duration::ZERO,
            task_status: Duration::ZERO,
            list: Duration::ZERO,
            update_task: Duration::ZERO,
            update_record: Duration::ZERO,
            reopen_log: Duration::ZERO,
            exec: Duration::ZERO,
        }
    }
}

/// Settings of a [`crate::SimBackend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Wall clock (unix ns) at the moment the backend is built.
    pub wall_base: i64,
    /// Call latencies.
    pub latency: Latencies,
    /// How long after a shim death containerd still answers task calls of its tasks with
    /// `ttrpc: closed` (Unavailable) before they become NotFound (`Tasks.Get` says NotFound
    /// at once). Measured: up to about 2 s; cut short by a containerd restart.
    pub shim_cleanup: Duration,
    /// Like berth's real backend, fail every call but `Tasks.Wait` with `DeadlineExceeded`
    /// after this long (a hung call included). `None`: the caller's deadline must do it.
    pub call_timeout: Option<Duration>,
    /// The first pid handed out.
    pub first_pid: u32,
    /// One shim per task, as a client gets that does not set the
    /// `io.kubernetes.cri.sandbox-id` annotation (berth's real backend before it did),
    /// instead of one per pod as containerd's CRI plugin and berth's backend group them.
    /// Shim deaths and [`crate::SimBackend::kill_shim`] then take a single task; shim keys
    /// are task ids.
    pub shim_per_container: bool,
    /// How long a wait of an exec process drains its output after the process exited while
    /// a background child still holds the pipe open (berth's real backend bounds the drain
    /// the same way; containerd 1.6 could hang forever).
    pub exec_drain_bound: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            wall_base: DEFAULT_WALL_BASE,
            latency: Latencies::default(),
            shim_cleanup: Duration::from_secs(1),
            call_timeout: None,
            first_pid: 1000,
            shim_per_container: false,
            exec_drain_bound: Duration::from_secs(2),
        }
    }
}

impl SimConfig {
    /// The defaults with zero latencies and no shim clean-up delay: the fastest and most
    /// predictable model, for unit tests.
    pub fn instant() -> SimConfig {
        SimConfig {
            latency: Latencies::zero(),
            shim_cleanup: Duration::ZERO,
            ..SimConfig::default()
        }
    }
}

/// Settings of a [`crate::SimDisk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// Time to write a checkpoint's bytes into the page cache.
    pub write_latency: Duration,
    /// Time of one fsync (file or directory).
    pub fsync_latency: Duration,
    /// Planted-bug hook: `write` skips the fsync of the temp file before the rename, so a
    /// power loss can tear or empty an acknowledged checkpoint.
    pub skip_file_fsync: bool,
    /// Planted-bug hook: `write`, `delete` and `remove_orphan` skip the directory fsync, so
    /// a power loss can undo an acknowledged rename or unlink.
    pub skip_dir_fsync: bool,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            write_latency: Duration::from_micros(20),
            fsync_latency: Duration::from_millis(2),
            skip_file_fsync: false,
            skip_dir_fsync: false,
        }
    }
}
