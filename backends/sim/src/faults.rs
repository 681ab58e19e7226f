//! The fault plan (swarm testing: every kind on or off per seed, each with its own rate),
//! the per-kind counters for the soak report, and the log of injected faults.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Faults injected into containerd calls. Rates are per call, in `[0, 1]`; 0 turns a kind
/// off. At most one fault hits a call (the rates are tried in field order).
#[derive(Debug, Clone, PartialEq)]
pub struct CallFaults {
    /// Fail before the call takes effect with `Unavailable` (containerd not reachable).
    pub unavailable: f64,
    /// Fail with `DeadlineExceeded`; the effect happened or not (a fair coin), as with a
    /// real client-side deadline.
    pub deadline_exceeded: f64,
    /// Fail before the call takes effect with `Other` (a runc or shim error).
    pub other: f64,
    /// Fail before the call takes effect with `FailedPrecondition`.
    pub failed_precondition: f64,
    /// The call takes effect but its reply is lost: the caller gets `Unavailable`.
    pub reply_lost: f64,
    /// The call is slow: up to [`CallFaults::max_delay`] before or after it takes effect.
    pub slow: f64,
    /// The call never answers (`std::future::pending`), before or after taking effect: the
    /// caller's deadline must cut it.
    pub hang: f64,
    /// Apply [`CallFaults::hang`] to `Tasks.Wait` as well. Such a wait stalls until the next
    /// containerd restart, like a stream whose connection silently stopped moving; off by
    /// default because a stalled wait looks exactly like a task that keeps running.
    pub hang_waits: bool,
    /// A wait in progress breaks with `Unavailable` (connection reset) at a random moment
    /// within [`CallFaults::max_delay`] of its start, the task still running.
    pub wait_broken: f64,
    /// A wait's exit reaches the caller late: up to [`CallFaults::max_delay`] after the
    /// process exited (a slow shim or a congested connection holding the exit back), while
    /// the caller goes on stopping, killing or deleting the task.
    pub late_exit: f64,
    /// `Containers.List` reports a container record's metadata as unreadable (a transient
    /// read error, drawn anew per record and per listing: the next listing may read it). The
    /// listing and these reads are what recovery starts from.
    pub meta_read: f64,
    /// Longest delay of a slow call, latest break of a broken wait, longest delay of a late
    /// exit.
    pub max_delay: Duration,
}

impl CallFaults {
    /// Nothing injected.
    pub fn none() -> CallFaults {
        CallFaults {
            unavailable: 0.0,
            deadline_exceeded: 0.0,
            other: 0.0,
            failed_precondition: 0.0,
            reply_lost: 0.0,
            slow: 0.0,
            hang: 0.0,
            hang_waits: false,
            wait_broken: 0.0,
            late_exit: 0.0,
            meta_read: 0.0,
            max_delay: Duration::from_secs(3),
        }
    }

    /// True if no call fault can be injected.
    pub fn is_none(&self) -> bool {
        [
            self.unavailable,
            self.deadline_exceeded,
            self.other,
            self.failed_precondition,
            self.reply_lost,
            self.slow,
            self.hang,
            self.wait_broken,
            self.late_exit,
            self.meta_read,
        ]
        .iter()
        .all(|r| *r <= 0.0)
    }
}

/// Faults of the checkpoint disk.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskFaults {
    /// An fsync (file, directory, or [`berth_backend::CheckpointStore::sync`]) fails with
    /// EIO: `StoreErrorKind::Sync`.
    pub sync_failure: f64,
    /// Writing a checkpoint's bytes fails with ENOSPC: `StoreErrorKind::NoSpace`.
    pub no_space: f64,
    /// At power loss, a file whose data was not synced is torn (a random strict prefix of
    /// what was written survives).
    pub torn_write: f64,
    /// At power loss, a file whose data was not synced keeps its old durable content
    /// (empty for a new file).
    pub lost_write: f64,
    /// At power loss, a directory whose changes (create, rename, unlink) were not followed
    /// by a directory fsync keeps only a random prefix of them.
    pub lost_rename: f64,
}

impl DiskFaults {
    /// Nothing injected: unsynced data and directory changes all reach the disk at power loss.
    pub fn none() -> DiskFaults {
        DiskFaults {
            sync_failure: 0.0,
            no_space: 0.0,
            torn_write: 0.0,
            lost_write: 0.0,
            lost_rename: 0.0,
        }
    }
}

/// Rates of the chaos the harness draws through [`crate::SimBackend::maybe_chaos`], per draw.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosRates {
    /// containerd restarts (down for up to [`ChaosRates::max_down`]).
    pub containerd_restart: f64,
    /// A live shim dies, taking every task of its pod.
    pub shim_death: f64,
    /// A running process exits on its own, now.
    pub exit_now: f64,
    /// Per exit berth begins to record (a checkpoint write carrying an exit,
    /// [`crate::SimBackend::exit_race`]): the shim of that container dies right then, so
    /// whatever looks at the task next (the task delete after the exit, a re-sync, recovery)
    /// finds it gone, a conflicting observation of an exit already being recorded.
    pub exit_race: f64,
    /// Longest containerd outage.
    pub max_down: Duration,
}

impl ChaosRates {
    /// No chaos.
    pub fn none() -> ChaosRates {
        ChaosRates {
            containerd_restart: 0.0,
            shim_death: 0.0,
            exit_now: 0.0,
            exit_race: 0.0,
            max_down: Duration::from_secs(5),
        }
    }
}

/// Everything that can go wrong, drawn from a seed ([`FaultPlan::from_seed`]) or written by
/// hand; [`FaultPlan::none`] is the heal phase. Switch at run time with
/// [`crate::SimBackend::set_faults`] and [`crate::SimDisk::set_faults`].
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// containerd call faults.
    pub calls: CallFaults,
    /// Checkpoint disk faults.
    pub disk: DiskFaults,
    /// Chaos rates for the harness.
    pub chaos: ChaosRates,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::none()
    }
}

/// Stream constant so the plan's draws are independent of the backend's and disk's.
const PLAN_STREAM: u64 = 0x5741_524d_5f50_4c41;

impl FaultPlan {
    /// No faults at all.
    pub fn none() -> FaultPlan {
        FaultPlan {
            calls: CallFaults::none(),
            disk: DiskFaults::none(),
            chaos: ChaosRates::none(),
        }
    }

    /// A swarm plan: each kind is on with probability 1/2, and an enabled kind gets a rate
    /// drawn from a small menu. The same seed always gives the same plan.
    pub fn from_seed(seed: u64) -> FaultPlan {
        let mut rng = SmallRng::seed_from_u64(seed ^ PLAN_STREAM);
        let mut pick = |menu: &[f64]| -> f64 {
            if rng.gen_bool(0.5) {
                menu[rng.gen_range(0..menu.len())]
            } else {
                0.0
            }
        };
        const CALL: &[f64] = &[0.005, 0.02, 0.05];
        const RARE: &[f64] = &[0.002, 0.01];
        const DISK: &[f64] = &[0.01, 0.05, 0.2];
        const CRASH: &[f64] = &[0.25, 0.5, 1.0];
        const CHAOS: &[f64] = &[0.01, 0.03, 0.1];
        let calls = CallFaults {
            unavailable: pick(CALL),
            deadline_exceeded: pick(CALL),
            other: pick(CALL),
            failed_precondition: pick(CALL),
            reply_lost: pick(CALL),
            slow: pick(CALL),
            hang: pick(RARE),
            hang_waits: false,
            wait_broken: pick(CALL),
            late_exit: 0.0,
            meta_read: 0.0,
            max_delay: Duration::from_millis([100, 1000, 3000][rng.gen_range(0..3)]),
        };
        let mut pick = |menu: &[f64]| -> f64 {
            if rng.gen_bool(0.5) {
                menu[rng.gen_range(0..menu.len())]
            } else {
                0.0
            }
        };
        let disk = DiskFaults {
            sync_failure: pick(DISK),
            no_space: pick(DISK),
            torn_write: pick(CRASH),
            lost_write: pick(CRASH),
            lost_rename: pick(CRASH),
        };
        let chaos = ChaosRates {
            containerd_restart: pick(CHAOS),
            shim_death: pick(CHAOS),
            exit_now: pick(CHAOS),
            exit_race: 0.0,
            max_down: Duration::from_millis([500, 5000, 20_000][rng.gen_range(0..3)]),
        };
        let mut calls = calls;
        // Kinds added later draw from streams of their own, so that the plans of older seeds
        // (and the regressions kept with them) stay as they were.
        let mut late = SmallRng::seed_from_u64(seed ^ LATE_EXIT_STREAM);
        if late.gen_bool(0.5) {
            calls.late_exit = [0.05, 0.2, 0.5][late.gen_range(0..3)];
        }
        let mut meta = SmallRng::seed_from_u64(seed ^ META_READ_STREAM);
        if meta.gen_bool(0.5) {
            calls.meta_read = [0.02, 0.1, 0.25][meta.gen_range(0..3)];
        }
        let mut chaos = chaos;
        let mut race = SmallRng::seed_from_u64(seed ^ EXIT_RACE_STREAM);
        if race.gen_bool(0.5) {
            chaos.exit_race = [0.02, 0.1][race.gen_range(0..2)];
        }
        FaultPlan { calls, disk, chaos }
    }
}

/// Stream constant of [`CallFaults::late_exit`]'s draw.
const LATE_EXIT_STREAM: u64 = 0x4c41_5445_5f45_5849;

/// Stream constant of [`CallFaults::meta_read`]'s draw.
const META_READ_STREAM: u64 = 0x4d45_5441_5f52_4541;

/// Stream constant of [`ChaosRates::exit_race`]'s draw.
const EXIT_RACE_STREAM: u64 = 0x4558_4954_5f52_4143;

/// A kind of injected fault or chaos event, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A call failed with Unavailable before taking effect.
    Unavailable,
    /// A call failed with DeadlineExceeded (applied or not).
    DeadlineExceeded,
    /// A call failed with Other before taking effect.
    Other,
    /// A call failed with FailedPrecondition before taking effect.
    FailedPrecondition,
    /// A call took effect and its reply was lost.
    ReplyLost,
    /// A call was slow.
    Slow,
    /// A call never answered.
    Hang,
    /// A wait in progress broke.
    WaitBroken,
    /// A wait's exit was delivered late.
    LateExit,
    /// containerd restarted.
    ContainerdRestart,
    /// A shim died.
    ShimDeath,
    /// A process exited on the harness's order.
    ExitNow,
    /// An fsync failed.
    SyncFailure,
    /// A write found the disk full.
    NoSpace,
    /// A file was torn at power loss.
    TornWrite,
    /// An unsynced file write was lost at power loss.
    LostWrite,
    /// An unsynced directory change (rename, create, unlink) was lost at power loss.
    LostRename,
    /// The machine lost power (the page cache is gone).
    PowerLoss,
    /// The berth process crashed (the page cache survives).
    ProcessCrash,
    /// A listing reported a container record's metadata as unreadable.
    MetaRead,
    /// A shim died while berth was recording an exit of one of its tasks.
    ExitRace,
}

impl FaultKind {
    /// Every kind, in order.
    pub const ALL: [FaultKind; 21] = [
        FaultKind::Unavailable,
        FaultKind::DeadlineExceeded,
        FaultKind::Other,
        FaultKind::FailedPrecondition,
        FaultKind::ReplyLost,
        FaultKind::Slow,
        FaultKind::Hang,
        FaultKind::WaitBroken,
        FaultKind::LateExit,
        FaultKind::ContainerdRestart,
        FaultKind::ShimDeath,
        FaultKind::ExitNow,
        FaultKind::SyncFailure,
        FaultKind::NoSpace,
        FaultKind::TornWrite,
        FaultKind::LostWrite,
        FaultKind::LostRename,
        FaultKind::PowerLoss,
        FaultKind::ProcessCrash,
        FaultKind::MetaRead,
        FaultKind::ExitRace,
    ];

    /// A short snake_case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Unavailable => "unavailable",
            FaultKind::DeadlineExceeded => "deadline_exceeded",
            FaultKind::Other => "other",
            FaultKind::FailedPrecondition => "failed_precondition",
            FaultKind::ReplyLost => "reply_lost",
            FaultKind::Slow => "slow",
            FaultKind::Hang => "hang",
            FaultKind::WaitBroken => "wait_broken",
            FaultKind::LateExit => "late_exit",
            FaultKind::ContainerdRestart => "containerd_restart",
            FaultKind::ShimDeath => "shim_death",
            FaultKind::ExitNow => "exit_now",
            FaultKind::SyncFailure => "sync_failure",
            FaultKind::NoSpace => "no_space",
            FaultKind::TornWrite => "torn_write",
            FaultKind::LostWrite => "lost_write",
            FaultKind::LostRename => "lost_rename",
            FaultKind::PowerLoss => "power_loss",
            FaultKind::ProcessCrash => "process_crash",
            FaultKind::MetaRead => "meta_read",
            FaultKind::ExitRace => "exit_race",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts(BTreeMap<FaultKind, u64>);

impl FaultCounts {
    /// Counts one more fault of `kind`.
    pub fn add(&mut self, kind: FaultKind) {
        *self.0.entry(kind).or_insert(0) += 1;
    }

    /// How many of `kind`.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.0.get(&kind).copied().unwrap_or(0)
    }

    /// Adds every count of `other` (e.g. the backend's and the disk's, or many seeds').
    pub fn merge(&mut self, other: &FaultCounts) {
        for (k, n) in &other.0 {
            *self.0.entry(*k).or_insert(0) += n;
        }
    }

    /// All faults injected.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The non-zero counts, in [`FaultKind`] order.
    pub fn iter(&self) -> impl Iterator<Item = (FaultKind, u64)> + '_ {
        self.0.iter().map(|(k, n)| (*k, *n))
    }
}

/// One injected fault, in order: the log that shows two runs made the same decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    /// Simulated wall time (unix ns).
    pub at: i64,
    /// What was hit: a containerd verb ("Tasks.Start"), a disk step ("fsync"), or "chaos".
    pub what: &'static str,
    /// The object: a containerd id, a checkpoint path, a pod.
    pub target: String,
    /// The fault.
    pub kind: FaultKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_merge_and_total() {
        let mut a = FaultCounts::default();
        a.add(FaultKind::Hang);
        a.add(FaultKind::Hang);
        let mut b = FaultCounts::default();
        b.add(FaultKind::TornWrite);
        b.merge(&a);
        assert_eq!(b.get(FaultKind::Hang), 2);
        assert_eq!(b.get(FaultKind::TornWrite), 1);
        assert_eq!(b.get(FaultKind::Slow), 0);
        assert_eq!(b.total(), 3);
        let listed: Vec<_> = b.iter().collect();
        assert_eq!(listed, [(FaultKind::Hang, 2), (FaultKind::TornWrite, 1)]);
    }

    #[test]
    fn kind_names_are_unique() {
        let mut names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FaultKind::ALL.len());
        assert_eq!(FaultKind::LostRename.to_string(), "lost_rename");
    }
}
