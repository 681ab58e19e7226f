//! The container status record (docs/containerd-behaviour.md §1.1), its derived state (§1.2) and
//! its CRI projection
//! (§1.4).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Exit code recorded when StartContainer fails (`errorStartExitCode`).
pub const START_ERROR_EXIT_CODE: i32 = 128;
/// Reason recorded when StartContainer fails.
pub const START_ERROR_REASON: &str = "StartError";
/// Exit code recorded when the real exit status cannot be known (`unknownExitCode`).
pub const UNKNOWN_EXIT_CODE: i32 = 255;
/// Reason recorded when the real exit status cannot be known.
pub const UNKNOWN_REASON: &str = "Unknown";
/// Reason recorded for an out-of-memory kill.
pub const OOM_REASON: &str = "OOMKilled";

/// Linux resource limits of a container (the subset of CRI `LinuxContainerResources` that
/// berth records; set at create, changed by UpdateContainerResources).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CFS period in microseconds; 0 = unset.
    pub cpu_period: i64,
    /// CFS quota in microseconds; 0 = unset.
    pub cpu_quota: i64,
    /// CPU shares; 0 = unset.
    pub cpu_shares: i64,
    /// Memory limit in bytes; 0 = unset.
    pub memory_limit_in_bytes: i64,
    /// OOM score adjustment.
    pub oom_score_adj: i64,
    /// Cpuset CPUs, e.g. "0-1"; empty = unset.
    pub cpuset_cpus: String,
    /// Cpuset memory nodes; empty = unset.
    pub cpuset_mems: String,
}

/// CRI container state, derived from a [`Status`] (docs/containerd-behaviour.md §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Started and not known to have exited.
    Running,
    /// Exited; terminal until removal.
    Exited,
    /// The truth could not be established (unreadable checkpoint, failed observation).
    Unknown,
}

impl ContainerState {
    /// Position on the one-way path CREATED → RUNNING → EXITED (0, 1, 2): a container's rank
    /// never goes down. None for UNKNOWN, which is off that path.
    pub fn lifecycle_rank(self) -> Option<u8> {
        match self {
            ContainerState::Created => Some(0),
            ContainerState::Running => Some(1),
            ContainerState::Exited => Some(2),
            ContainerState::Unknown => None,
        }
    }

    /// The CRI enum name, as it appears in crictl and in error messages.
    pub fn cri_name(self) -> &'static str {
        match self {
            ContainerState::Created => "CONTAINER_CREATED",
            ContainerState::Running => "CONTAINER_RUNNING",
            ContainerState::Exited => "CONTAINER_EXITED",
            ContainerState::Unknown => "CONTAINER_UNKNOWN",
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cri_name())
    }
}

/// The persisted part of a container's status (docs/containerd-behaviour.md §1.1), plus `unknown`,
/// which berth
/// persists and containerd does not (docs/architecture.md §3.3).
///
/// Timestamps are wall-clock unix nanoseconds; 0 means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Pid of the init process while running; 0 otherwise.
    pub pid: u32,
    /// When CreateContainer recorded the container.
    pub created_at: i64,
    /// When the task was started (or when recovery found it running without a record).
    pub started_at: i64,
    /// When the process exited; first recorded exit wins.
    pub finished_at: i64,
    /// Exit status; 128 for a failed start, 255 when unknown.
    pub exit_code: i32,
    /// CamelCase reason: "", "StartError", "OOMKilled", "Unknown".
    pub reason: String,
    /// Human-readable text; the error of a failed start.
    pub message: String,
    /// The status could not be fully established; persisted so a second restart cannot turn
    /// an UNKNOWN container into a RUNNING one.
    pub unknown: bool,
    /// Resource limits.
    pub resources: Option<Resources>,
}

impl Status {
    /// A freshly created container.
    pub fn created(now: i64, resources: Option<Resources>) -> Self {
        Status {
            created_at: now,
            resources,
            ..Status::default()
        }
    }

    /// The record used when a checkpoint cannot be read (docs/containerd-behaviour.md §6.3), with
    /// berth's
    /// improvement: `created_at` is taken from the containerd record when known, so an
    /// UNKNOWN container never reports "created 56 years ago".
    pub fn unknown(created_at: i64) -> Self {
        Status {
            created_at,
            exit_code: UNKNOWN_EXIT_CODE,
            reason: UNKNOWN_REASON.to_owned(),
            unknown: true,
            ..Status::default()
        }
    }

    /// Derived state, exactly as docs/containerd-behaviour.md §1.2, in that order.
    pub fn state(&self) -> ContainerState {
        if self.unknown {
            ContainerState::Unknown
        } else if self.finished_at != 0 {
            ContainerState::Exited
        } else if self.started_at != 0 {
            ContainerState::Running
        } else if self.created_at != 0 {
            ContainerState::Created
        } else {
            ContainerState::Unknown
        }
    }

    /// The record with an exit applied (docs/containerd-behaviour.md §5.2 step 4): first recorded
    /// exit wins; the
    /// unknown flag is cleared either way; a synthetic "Unknown" reason gives way to a real
    /// exit (berth: containerd keeps it forever, docs/containerd-behaviour.md §6.6).
    pub fn with_exit(&self, exit: ExitStatus) -> Status {
        let mut next = self.clone();
        if next.finished_at == 0 {
            next.pid = 0;
            next.finished_at = exit.exited_at.max(next.started_at).max(1);
            next.exit_code = exit.code;
            if next.reason == UNKNOWN_REASON && !exit.synthetic {
                next.reason.clear();
            }
            if exit.synthetic {
                next.reason = UNKNOWN_REASON.to_owned();
            } else if exit.oom_killed {
                next.reason = OOM_REASON.to_owned();
            }
        }
        next.unknown = false;
        next
    }

    /// CRI reason (docs/containerd-behaviour.md §1.4): an EXITED container with no stored reason
    /// is "Completed"
    /// (code 0) or "Error"; otherwise the stored reason.
    pub fn cri_reason(&self) -> String {
        if self.state() == ContainerState::Exited && self.reason.is_empty() {
            if self.exit_code == 0 {
                "Completed".to_owned()
            } else {
                "Error".to_owned()
            }
        } else {
            self.reason.clone()
        }
    }

    /// CRI `(started_at, finished_at)` (docs/containerd-behaviour.md §1.4): CREATED reports
    /// neither, RUNNING only
    /// the start, EXITED and UNKNOWN both stored values.
    pub fn cri_times(&self) -> (i64, i64) {
        match self.state() {
            ContainerState::Created => (0, 0),
            ContainerState::Running => (self.started_at, 0),
            ContainerState::Exited | ContainerState::Unknown => (self.started_at, self.finished_at),
        }
    }
}

/// How a task ended: its exit status and wall-clock exit time (unix nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    /// Exit status as reported by containerd (137 for SIGKILL).
    pub code: i32,
    /// When the process exited.
    pub exited_at: i64,
    /// True when berth made this exit up because the real one cannot be known (shim gone,
    /// unknown container stopped); recorded with reason "Unknown".
    pub synthetic: bool,
    /// The kernel OOM-killed a process of the task's cgroup (containerd's `TaskOOM`);
    /// recorded with reason [`OOM_REASON`], as containerd's CRI does.
    pub oom_killed: bool,
}

impl ExitStatus {
    /// A real exit observed from the backend.
    pub fn real(code: i32, exited_at: i64) -> Self {
        ExitStatus {
            code,
            exited_at,
            synthetic: false,
            oom_killed: false,
        }
    }

    /// The same exit, of a task the kernel OOM-killed a process of.
    pub fn oom_killed(self) -> Self {
        ExitStatus {
            oom_killed: true,
            ..self
        }
    }

    /// An exit berth records because the real one is lost: code 255, reason "Unknown".
    pub fn lost(now: i64) -> Self {
        ExitStatus {
            code: UNKNOWN_EXIT_CODE,
            exited_at: now,
            synthetic: true,
            oom_killed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oom_kill_is_recorded_as_oomkilled_and_only_a_first_exit_counts() {
        let running = Status {
            created_at: 1,
            started_at: 2,
            pid: 7,
            ..Status::default()
        };
        let oom = running.with_exit(ExitStatus::real(137, 30).oom_killed());
        assert_eq!(
            (oom.exit_code, oom.cri_reason().as_str()),
            (137, OOM_REASON)
        );
        // A later exit changes nothing, OOM or not.
        let again = oom.with_exit(ExitStatus::real(0, 40));
        assert_eq!(again, oom);
        let plain = running.with_exit(ExitStatus::real(137, 30));
        assert_eq!(plain.cri_reason(), "Error");
        assert_eq!(
            plain.with_exit(ExitStatus::real(137, 31).oom_killed()),
            plain
        );
    }

    #[test]
    fn derived_state_follows_spec_order() {
        let mut s = Status::default();
        assert_eq!(s.state(), ContainerState::Unknown, "all zero is UNKNOWN");
        s.created_at = 1;
        assert_eq!(s.state(), ContainerState::Created);
        s.started_at = 2;
        assert_eq!(s.state(), ContainerState::Running);
        s.finished_at = 3;
        assert_eq!(s.state(), ContainerState::Exited);
        s.unknown = true;
        assert_eq!(s.state(), ContainerState::Unknown, "the flag dominates");
    }

    #[test]
    fn cri_projection() {
        let mut s = Status::created(10, None);
        s.started_at = 20;
        assert_eq!(s.cri_times(), (20, 0));
        assert_eq!(s.cri_reason(), "");
        let exited = s.with_exit(ExitStatus::real(0, 30));
        assert_eq!(exited.cri_reason(), "Completed");
        assert_eq!(exited.cri_times(), (20, 30));
        assert_eq!(s.with_exit(ExitStatus::real(3, 30)).cri_reason(), "Error");
        assert_eq!(Status::created(10, None).cri_times(), (0, 0));
        let lost = s.with_exit(ExitStatus::lost(40));
        assert_eq!(
            (lost.exit_code, lost.cri_reason().as_str()),
            (255, "Unknown")
        );
    }

    #[test]
    fn first_exit_wins_and_clears_unknown() {
        let mut s = Status::created(10, None);
        s.started_at = 20;
        s.pid = 7;
        let first = s.with_exit(ExitStatus::real(42, 30));
        assert_eq!((first.exit_code, first.finished_at, first.pid), (42, 30, 0));
        let mut again = first.clone();
        again.unknown = true;
        let second = again.with_exit(ExitStatus::real(1, 99));
        assert_eq!((second.exit_code, second.finished_at), (42, 30));
        assert!(!second.unknown);
    }

    #[test]
    fn real_exit_replaces_synthetic_unknown_reason() {
        let mut s = Status::unknown(5);
        s.started_at = 6;
        s.pid = 9;
        let exited = s.with_exit(ExitStatus::real(5, 10));
        assert_eq!(exited.state(), ContainerState::Exited);
        assert_eq!(exited.cri_reason(), "Error");
        assert_eq!(exited.exit_code, 5);
    }

    #[test]
    fn exit_time_never_precedes_start() {
        let mut s = Status::created(10, None);
        s.started_at = 50;
        let exited = s.with_exit(ExitStatus::real(0, 40));
        assert_eq!(exited.finished_at, 50);
    }
}
