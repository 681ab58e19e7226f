//! Planted bugs: deliberate faults in berth that the simulator must catch, switched on one at
//! a time (`SIM_BUG=<name>`). Fourteen are switched through berth-core's config (feature
//! `planted-bugs`, most modelled on containerd bugs; `UnreadableMetaSwept` lives in
//! berth-service's recovery); the others are configurations of the disk and the service that
//! reproduce known durability and liveness bugs.

use std::fmt;

use crate::shape::ShapeError;

/// A planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// A bug of berth-core (`berth_core::PlantedBug`, by index in `PlantedBug::ALL`).
    Core(CoreBug),
    /// The checkpoint's temp file is not fsynced before the rename
    /// (`DiskConfig::skip_file_fsync`): a power loss tears or empties an acknowledged
    /// checkpoint.
    NoFileFsync,
    /// The checkpoint directory is not fsynced after a rename or unlink
    /// (`DiskConfig::skip_dir_fsync`): a power loss undoes an acknowledged write or removal.
    NoDirFsync,
    /// Recovery observes tasks without a per-container deadline (`recovery_timeout` of a day)
    /// against a containerd whose `Tasks.Get` has no deadline of its own: one hung shim
    /// holds the whole recovery (containerd before `loadContainerTimeout`).
    RecoveryNoDeadline,
}

/// The core's planted bugs, named as `berth_core::PlantedBug`'s variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoreBug {
    /// `DeleteTaskBeforeExitPersisted`.
    DeleteTaskBeforeExitPersisted,
    /// `UnknownNotPersisted`.
    UnknownNotPersisted,
    /// `BrokenWaitIsExit`.
    BrokenWaitIsExit,
    /// `StopDuringStartIgnored`.
    StopDuringStartIgnored,
    /// `WatchArmedBeforeRecorded`.
    WatchArmedBeforeRecorded,
    /// `RecoveryWriteFailureSkips`.
    RecoveryWriteFailureSkips,
    /// `StopKillsAtOnce`.
    StopKillsAtOnce,
    /// `ExitNotHeldBehindUpdate`.
    ExitNotHeldBehindUpdate,
    /// `StopPodRepliesBeforeExits`.
    StopPodRepliesBeforeExits,
    /// `RecoveryWatchesExitedTask`.
    RecoveryWatchesExitedTask,
    /// `UnreadableMetaSwept` (in berth-service's recovery, switched through the core's
    /// config).
    UnreadableMetaSwept,
    /// `GoneTaskOverwritesExit`.
    GoneTaskOverwritesExit,
    /// `ExecTimeoutNotKilled`.
    ExecTimeoutNotKilled,
    /// `RecoveryKeepsExecs`.
    RecoveryKeepsExecs,
}

impl CoreBug {
    /// Every core bug, in `berth_core::PlantedBug::ALL` order.
    pub const ALL: [CoreBug; 14] = [
        CoreBug::DeleteTaskBeforeExitPersisted,
        CoreBug::UnknownNotPersisted,
        CoreBug::BrokenWaitIsExit,
        CoreBug::StopDuringStartIgnored,
        CoreBug::WatchArmedBeforeRecorded,
        CoreBug::RecoveryWriteFailureSkips,
        CoreBug::StopKillsAtOnce,
        CoreBug::ExitNotHeldBehindUpdate,
        CoreBug::ExecTimeoutNotKilled,
        CoreBug::GoneTaskOverwritesExit,
        CoreBug::RecoveryKeepsExecs,
        CoreBug::RecoveryWatchesExitedTask,
        CoreBug::StopPodRepliesBeforeExits,
        CoreBug::UnreadableMetaSwept,
    ];

    /// The core's own value (only in a build with the `planted-bugs` feature).
    #[cfg(feature = "planted-bugs")]
    pub fn to_core(self) -> berth_core::PlantedBug {
        use berth_core::PlantedBug as P;
        match self {
            CoreBug::DeleteTaskBeforeExitPersisted => P::DeleteTaskBeforeExitPersisted,
            CoreBug::UnknownNotPersisted => P::UnknownNotPersisted,
            CoreBug::BrokenWaitIsExit => P::BrokenWaitIsExit,
            CoreBug::StopDuringStartIgnored => P::StopDuringStartIgnored,
            CoreBug::WatchArmedBeforeRecorded => P::WatchArmedBeforeRecorded,
            CoreBug::RecoveryWriteFailureSkips => P::RecoveryWriteFailureSkips,
            CoreBug::StopKillsAtOnce => P::StopKillsAtOnce,
            CoreBug::ExitNotHeldBehindUpdate => P::ExitNotHeldBehindUpdate,
            CoreBug::StopPodRepliesBeforeExits => P::StopPodRepliesBeforeExits,
            CoreBug::RecoveryWatchesExitedTask => P::RecoveryWatchesExitedTask,
            CoreBug::UnreadableMetaSwept => P::UnreadableMetaSwept,
            CoreBug::GoneTaskOverwritesExit => P::GoneTaskOverwritesExit,
            CoreBug::ExecTimeoutNotKilled => P::ExecTimeoutNotKilled,
            CoreBug::RecoveryKeepsExecs => P::RecoveryKeepsExecs,
        }
    }
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 17] = [
        Bug::Core(CoreBug::DeleteTaskBeforeExitPersisted),
        Bug::Core(CoreBug::UnknownNotPersisted),
        Bug::Core(CoreBug::BrokenWaitIsExit),
        Bug::Core(CoreBug::StopDuringStartIgnored),
        Bug::Core(CoreBug::WatchArmedBeforeRecorded),
        Bug::Core(CoreBug::RecoveryWriteFailureSkips),
        Bug::Core(CoreBug::StopKillsAtOnce),
        Bug::Core(CoreBug::ExitNotHeldBehindUpdate),
        Bug::Core(CoreBug::StopPodRepliesBeforeExits),
        Bug::Core(CoreBug::RecoveryWatchesExitedTask),
        Bug::Core(CoreBug::UnreadableMetaSwept),
        Bug::Core(CoreBug::GoneTaskOverwritesExit),
        Bug::Core(CoreBug::ExecTimeoutNotKilled),
        Bug::Core(CoreBug::RecoveryKeepsExecs),
        Bug::NoFileFsync,
        Bug::NoDirFsync,
        Bug::RecoveryNoDeadline,
    ];

    /// The name `SIM_BUG` takes.
    pub fn name(self) -> &'static str {
        match self {
            Bug::Core(CoreBug::DeleteTaskBeforeExitPersisted) => {
                "delete_task_before_exit_persisted"
            }
            Bug::Core(CoreBug::UnknownNotPersisted) => "unknown_not_persisted",
            Bug::Core(CoreBug::BrokenWaitIsExit) => "broken_wait_is_exit",
            Bug::Core(CoreBug::StopDuringStartIgnored) => "stop_during_start_ignored",
            Bug::Core(CoreBug::WatchArmedBeforeRecorded) => "watch_armed_before_recorded",
            Bug::Core(CoreBug::RecoveryWriteFailureSkips) => "recovery_write_failure_skips",
            Bug::Core(CoreBug::StopKillsAtOnce) => "stop_kills_at_once",
            Bug::Core(CoreBug::ExitNotHeldBehindUpdate) => "exit_not_held_behind_update",
            Bug::Core(CoreBug::StopPodRepliesBeforeExits) => "stop_pod_replies_before_exits",
            Bug::Core(CoreBug::RecoveryWatchesExitedTask) => "recovery_watches_exited_task",
            Bug::Core(CoreBug::UnreadableMetaSwept) => "unreadable_meta_swept",
            Bug::Core(CoreBug::GoneTaskOverwritesExit) => "gone_task_overwrites_exit",
            Bug::Core(CoreBug::ExecTimeoutNotKilled) => "exec_timeout_not_killed",
            Bug::Core(CoreBug::RecoveryKeepsExecs) => "recovery_keeps_execs",
            Bug::NoFileFsync => "no_file_fsync",
            Bug::NoDirFsync => "no_dir_fsync",
            Bug::RecoveryNoDeadline => "recovery_no_deadline",
        }
    }

    /// True for the core's bugs, which need the `planted-bugs` feature.
    pub fn needs_feature(self) -> bool {
        matches!(self, Bug::Core(_))
    }

    /// True if this build can switch the bug on.
    pub fn available(self) -> bool {
        !self.needs_feature() || cfg!(feature = "planted-bugs")
    }

    /// Parses a `SIM_BUG` value.
    pub fn parse(name: &str) -> Result<Bug, ShapeError> {
        let bug = Bug::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| ShapeError::Bug {
                name: name.to_owned(),
                why: format!("unknown; one of {}", Bug::ALL.map(Bug::name).join(", ")),
            })?;
        if !bug.available() {
            return Err(ShapeError::Bug {
                name: name.to_owned(),
                why: "a bug of berth-core: build with --features planted-bugs".to_owned(),
            });
        }
        Ok(bug)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A real berth bug the simulator found that is not fixed yet. Its failing seeds stay in
/// `sim/tests/regressions.txt` (`expect=open:<id>`); soak and CI runs given `--allow-open`
/// report seeds that hit it separately instead of failing on them. Remove the entry once
/// berth is fixed (the regression test then says so).
#[derive(Debug, Clone, Copy)]
pub struct OpenBug {
    /// Short id (`expect=open:<id>`).
    pub id: &'static str,
    /// What goes wrong, and where in berth.
    pub summary: &'static str,
    /// True if a violation is this bug's symptom.
    pub matches: fn(&str) -> bool,
}

/// The open berth bugs (see [`OpenBug`]).
pub const OPEN_BUGS: &[OpenBug] = &[];

/// The open bug a violation is a symptom of, if any.
pub fn open_bug(violation: &str) -> Option<&'static OpenBug> {
    OPEN_BUGS.iter().find(|b| (b.matches)(violation))
}

/// A violation with its time, ids, pids, codes and times blanked out: two failures with the
/// same signature are taken to be the same bug (shrinking keeps the signature).
pub fn signature(violation: &str) -> String {
    let text = match violation.strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map_or(rest, |(_, t)| t),
        None => violation,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_hexdigit() {
            let mut run = String::from(c);
            while let Some(&d) = chars.peek() {
                if d.is_ascii_hexdigit() || d == '.' {
                    run.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            let numeric = run.chars().all(|d| d.is_ascii_digit() || d == '.');
            if run.len() >= 16 {
                out.push_str("<id>");
            } else if numeric {
                out.push('N');
            } else {
                out.push_str(&run);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Bug::ALL.len());
        assert!(Bug::ALL.len() >= 8);
        assert_eq!(Bug::parse("no_dir_fsync"), Ok(Bug::NoDirFsync));
        assert!(Bug::parse("nope").is_err());
        let core = Bug::parse("broken_wait_is_exit");
        assert_eq!(core.is_ok(), cfg!(feature = "planted-bugs"));
    }

    #[test]
    fn signatures_blank_ids_numbers_and_times() {
        let a = "[12.5s] stop of 4a13be252ba5bbcfb81b0d87a57cc8a2c70b9da064c7498dd50ed18d6b979b02 acknowledged but its process 1030 still runs";
        let b = "[3.0s] stop of 9f284a7d6bea438e6967fc6701ecd7639972208515b26b6e86117de7e5f81491 acknowledged but its process 7 still runs";
        assert_eq!(signature(a), signature(b));
        assert_eq!(
            signature(a),
            "stop of <id> acknowledged but its process N still runs"
        );
        assert_ne!(signature(a), signature("[1s] container <x> went back"));
        // Fixed bugs are no longer open: their symptoms fail a run again.
        assert!(open_bug(a).is_none());
        assert!(open_bug("berth lists container x but containerd has no record").is_none());
        // Fixed since (seeds 47831 and 7968 in regressions.txt): these symptoms fail a run.
        let torn = "[84.0s] container c is RUNNING pid 1002 started at 1, before containerd started that process at 2 (a start time of another task, or the clocks disagree)";
        assert!(open_bug(torn).is_none());
        let rolled_back = "[148.5s] exit not recorded: container d9 is RUNNING pid 1010 but its process (pid 1006) exited 137 at 5 (ExitNow)";
        assert!(open_bug(rolled_back).is_none());
    }
}
