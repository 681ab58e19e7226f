//! The machine's tunables ([`Config`]) and, under feature `planted-bugs`, the deliberate
//! bugs a test can switch on to prove that the checks catch them (`PlantedBug`).

use std::time::Duration;

/// ExecSync's output cap per stream: 16 MiB, containerd's (`maxStreamSize`... its CRI
/// plugin caps each of stdout and stderr at 16 MiB).
pub const EXEC_OUTPUT_CAP: usize = 16 << 20;

/// Tunables of the machine. Plain data; the defaults are containerd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// First retry delay of exit handling, task cleanup and checkpoint writes
    /// (docs/containerd-behaviour.md §5.4: 1 s).
    pub backoff_initial: Duration,
    /// Cap of that delay (docs/containerd-behaviour.md §5.4: 5 min).
    pub backoff_max: Duration,
    /// Cap of the re-sync delay after a broken wait (containerd restarts take under a
    /// second; waiting 5 minutes to notice an exit would be wrong).
    pub resync_backoff_max: Duration,
    /// At most this many bytes of an exec process's stdout, and as many of its stderr, are
    /// kept (docs/containerd-behaviour.md §11: containerd keeps 16 MiB of each); the rest is
    /// dropped. The one place the cap is set ([`EXEC_OUTPUT_CAP`] by default).
    pub exec_output_cap: usize,
    /// A deliberate bug to switch on, to prove that the checks catch it (feature
    /// `planted-bugs`; never in a production build).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PlantedBug>,
}

/// Deliberate bugs modelled on real containerd bugs (feature `planted-bugs`).
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// The task is deleted before the exit is persisted (containerd's order,
    /// docs/containerd-behaviour.md §5.2):
    /// a crash in between turns a real exit code into 255.
    DeleteTaskBeforeExitPersisted,
    /// Unknown is not persisted (containerd, docs/containerd-behaviour.md §6.6).
    UnknownNotPersisted,
    /// A failed wait is taken as exit 255 (containerd's Go client, docs/containerd-behaviour.md
    /// §5.1).
    BrokenWaitIsExit,
    /// A StopContainer during a StartContainer is a no-op (containerd,
    /// docs/containerd-behaviour.md §4.3).
    StopDuringStartIgnored,
    /// Recovery arms the exit watch before the container's record is in place, and the
    /// exit handler drops exits for containers still being recovered (containerd#10390).
    WatchArmedBeforeRecorded,
    /// A checkpoint write that fails during recovery skips the container
    /// (containerd#7247).
    RecoveryWriteFailureSkips,
    /// StopContainer sends SIGKILL at once whatever its grace period: a process that would
    /// have handled its stop signal ends with 137 instead of its own exit code.
    StopKillsAtOnce,
    /// An exit observed while an UpdateContainerResources is in flight is written at once
    /// instead of after the update's write: two writes of one record in flight, and the
    /// later-landing one (the exit's, without the new limits) may undo the other.
    ExitNotHeldBehindUpdate,
    /// StopPodSandbox kills the pod's containers but answers once the pause task is dead,
    /// without waiting for their exits to be durable: the reply says the pod is stopped
    /// while berth still shows a container RUNNING, and a crash right after it can leave
    /// one running (docs/architecture.md §3.7).
    StopPodRepliesBeforeExits,
    /// Recovery of an EXITED record whose task still exists (a crash after the exit was
    /// persisted, before the task was deleted) watches the task, as for a running
    /// container, instead of deleting it: the task survives, and a wait stays armed on a
    /// container whose exit is already recorded (docs/recovery.md).
    RecoveryWatchesExitedTask,
    /// Recovery's orphan sweep (berth-service) takes a container whose metadata could not
    /// be read for one containerd does not know, and removes its checkpoint directory: a
    /// transient read error loses the container's record for good.
    UnreadableMetaSwept,
    /// The task delete that follows a durable exit finds the task gone (its shim died) and
    /// takes that for a lost exit: 255 "Unknown" replaces the exit berth already recorded.
    GoneTaskOverwritesExit,
    /// ExecSync past its timeout answers DeadlineExceeded at once without killing the exec
    /// process: it runs on after its request was answered.
    ExecTimeoutNotKilled,
    /// Recovery does not sweep the exec processes of the crashed berth: an exec whose request
    /// died with berth runs on (until it ends on its own, if ever).
    RecoveryKeepsExecs,
}

#[cfg(feature = "planted-bugs")]
impl PlantedBug {
    /// Every planted bug of the core.
    pub const ALL: [PlantedBug; 14] = [
        PlantedBug::DeleteTaskBeforeExitPersisted,
        PlantedBug::UnknownNotPersisted,
        PlantedBug::BrokenWaitIsExit,
        PlantedBug::StopDuringStartIgnored,
        PlantedBug::WatchArmedBeforeRecorded,
        PlantedBug::RecoveryWriteFailureSkips,
        PlantedBug::StopKillsAtOnce,
        PlantedBug::ExitNotHeldBehindUpdate,
        PlantedBug::ExecTimeoutNotKilled,
        PlantedBug::GoneTaskOverwritesExit,
        PlantedBug::RecoveryKeepsExecs,
        PlantedBug::RecoveryWatchesExitedTask,
        PlantedBug::StopPodRepliesBeforeExits,
        PlantedBug::UnreadableMetaSwept,
    ];
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            resync_backoff_max: Duration::from_secs(10),
            exec_output_cap: EXEC_OUTPUT_CAP,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

impl Config {
    /// True if `bug` is switched on.
    #[cfg(feature = "planted-bugs")]
    pub fn has_bug(&self, bug: PlantedBug) -> bool {
        self.planted_bug == Some(bug)
    }
}

impl Config {
    /// Delay before retry number `attempt` (0-based), doubling from the initial delay.
    pub fn backoff(&self, attempt: u32, cap: Duration) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX);
        self.backoff_initial.saturating_mul(factor).min(cap)
    }
}
