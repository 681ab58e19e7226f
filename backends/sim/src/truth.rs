//! What really happened in the simulated containerd, for the harness's checkers: records,
//! tasks, shims, every real exit and every shim death. Plain data, snapshotted by
//! [`crate::SimBackend::truth`].

use std::collections::BTreeMap;
use std::time::Duration;

use berth_backend::{ContainerMeta, Resources, SandboxMeta, TaskState};
use berth_core::{SandboxId, Target};

/// What a simulated process does once started. Set by the harness per container (or
/// sandbox) id with [`crate::SimBackend::plan`]; read when the task starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessPlan {
    /// Exit on its own this long after `Tasks.Start`; `None` runs until killed.
    pub exit_after: Option<Duration>,
    /// The exit code of that exit.
    pub code: i32,
    /// Ignore SIGTERM (and every other catchable signal), like a handler-less PID 1 such as
    /// `sleep`: only SIGKILL ends it.
    pub ignores_term: bool,
    /// Handle SIGTERM (and every other catchable terminating signal): exit with this code
    /// this long after the first one arrives (unless it exits earlier anyway). `None`: die
    /// of the signal at once (128 + signal).
    pub handles_term: Option<(Duration, i32)>,
    /// The memory it uses, in MiB (0: too little to matter). A `Tasks.Update` whose memory
    /// limit is below it has the kernel OOM-kill the process as the limit takes effect
    /// (exit 137, [`ExitCause::OomKilled`]): a limit lowered under a running workload.
    pub memory_mib: u16,
}

impl Default for ProcessPlan {
    fn default() -> Self {
        ProcessPlan::forever()
    }
}

impl ProcessPlan {
    /// Runs until killed; exits 143 on SIGTERM.
    pub fn forever() -> ProcessPlan {
        ProcessPlan {
            exit_after: None,
            code: 0,
            ignores_term: false,
            handles_term: None,
            memory_mib: 0,
        }
    }

    /// Exits with `code` `after` its start.
    pub fn exit(after: Duration, code: i32) -> ProcessPlan {
        ProcessPlan {
            exit_after: Some(after),
            code,
            ignores_term: false,
            handles_term: None,
            memory_mib: 0,
        }
    }

    /// The same plan, ignoring SIGTERM.
    pub fn ignoring_term(self) -> ProcessPlan {
        ProcessPlan {
            ignores_term: true,
            handles_term: None,
            ..self
        }
    }

    /// The same plan, using `mib` MiB of memory ([`ProcessPlan::memory_mib`]).
    pub fn using_memory(self, mib: u16) -> ProcessPlan {
        ProcessPlan {
            memory_mib: mib,
            ..self
        }
    }

    /// The same plan, exiting with `code` `after` the first SIGTERM (a graceful shutdown).
    pub fn handling_term(self, after: Duration, code: i32) -> ProcessPlan {
        ProcessPlan {
            ignores_term: false,
            handles_term: Some((after, code)),
            ..self
        }
    }
}

/// A signal that reached a task's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalTruth {
    /// Whose.
    pub target: Target,
    /// Its pod.
    pub pod: SandboxId,
    /// Which task ([`TaskTruth::task`]).
    pub task: u64,
    /// Its pid.
    pub pid: u32,
    /// When the task started (unix ns; 0 if it had not).
    pub started_at: i64,
    /// The signal.
    pub signal: i32,
    /// When it arrived (unix ns).
    pub at: i64,
    /// The SIGKILL of `Tasks.Delete` with kill (else `Tasks.Kill`).
    pub by_delete: bool,
}

/// The metadata a record carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordMeta {
    /// A CRI container's.
    Container(Box<ContainerMeta>),
    /// A sandbox's pause container's.
    Sandbox(Box<SandboxMeta>),
}

/// A containerd container record (it persists across containerd restarts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTruth {
    /// The object.
    pub target: Target,
    /// Its pod (a sandbox's is itself).
    pub pod: SandboxId,
    /// Labels as berth's real backend writes them (`io.berth.managed`, `io.berth.kind`,
    /// `io.berth.sandbox`).
    pub labels: BTreeMap<String, String>,
    /// When containerd created it (unix ns).
    pub created_at: i64,
    /// berth's metadata.
    pub meta: RecordMeta,
    /// Set by [`crate::SimBackend::set_record_meta_error`]: `list` reports the metadata as
    /// unreadable with this message.
    pub meta_error: Option<String>,
    /// The limits in its OCI spec: the container config's at creation, then those of every
    /// `Containers.Update` (a task created later gets them). None for a pause container
    /// or a container created without limits.
    pub resources: Option<Resources>,
}

/// A task as containerd's shim holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTruth {
    /// The object it was created for.
    pub target: Target,
    /// Serial number of this task (unique over the whole run).
    pub task: u64,
    /// The pod whose shim runs it.
    pub pod: SandboxId,
    /// Serial number of that shim.
    pub shim: u64,
    /// Pid of `runc init`, then of the process.
    pub pid: u32,
    /// Created, Running or Stopped (never NotFound or Paused here).
    pub state: TaskState,
    /// When it started (unix ns; 0 if not started).
    pub started_at: i64,
    /// When it will exit on its own (unix ns), if it runs and plans to.
    pub exit_due: Option<i64>,
    /// Its record was deleted while it existed: nothing can reach it (a leak).
    pub orphaned: bool,
    /// The plan it started with.
    pub plan: ProcessPlan,
    /// The limits of its cgroup: its record's at `Tasks.Create`, then those of every
    /// `Tasks.Update`.
    pub resources: Option<Resources>,
}

/// Why a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// It exited on its own, as planned.
    Planned,
    /// A signal sent with `Tasks.Kill`.
    Signal(i32),
    /// The process handled this signal and exited with its own code
    /// ([`ProcessPlan::handles_term`]).
    Handled(i32),
    /// The SIGKILL of `Tasks.Delete` with kill.
    DeleteKill,
    /// [`crate::SimBackend::exit_now`].
    ExitNow,
    /// Its shim died and containerd killed it (code 137).
    ShimDied,
    /// A `Tasks.Update` set a memory limit below its use and the kernel killed it (code
    /// 137, [`ProcessPlan::memory_mib`]).
    OomKilled,
}

/// A process exit that really happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealExit {
    /// Whose.
    pub target: Target,
    /// Which task ([`TaskTruth::task`]).
    pub task: u64,
    /// Its pid.
    pub pid: u32,
    /// Exit status.
    pub code: i32,
    /// When (unix ns).
    pub exited_at: i64,
    /// Why.
    pub cause: ExitCause,
    /// False for a task killed before `Tasks.Start` (its `runc init` died; no user process
    /// ever ran).
    pub started: bool,
    /// Its shim died before the task was deleted, so containerd cannot report this exit
    /// any more: berth may record it as lost (255, "Unknown").
    pub shim_died: bool,
}

/// A shim's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimState {
    /// Serving its pod's tasks.
    Alive,
    /// Exited cleanly after its last task was deleted (unix ns).
    Exited {
        /// When.
        at: i64,
    },
    /// Killed (unix ns).
    Died {
        /// When.
        at: i64,
    },
}

/// The current (or last) shim of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimTruth {
    /// Serial number (unique over the run).
    pub shim: u64,
    /// When it started (unix ns).
    pub started_at: i64,
    /// Alive, exited or dead.
    pub state: ShimState,
    /// The ids of the tasks it holds now.
    pub tasks: Vec<String>,
}

/// A shim death and what it took with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimDeath {
    /// The pod.
    pub pod: SandboxId,
    /// The shim's serial number.
    pub shim: u64,
    /// When (unix ns).
    pub at: i64,
    /// Live tasks it killed (exit 137, [`ExitCause::ShimDied`]).
    pub killed: Vec<Target>,
    /// Stopped tasks whose exit status died with it.
    pub lost: Vec<Target>,
}

/// A containerd restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// When containerd went down (unix ns).
    pub at: i64,
    /// When it serves again (unix ns).
    pub up_at: i64,
}

/// What is true of one containerd id ([`crate::SimBackend::truth_of`]): a cheap per-object
/// slice of [`Truth`] for checks that run after every step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectTruth {
    /// containerd holds a record with this id.
    pub record: bool,
    /// The limits in that record's OCI spec ([`RecordTruth::resources`]; None without a
    /// record).
    pub record_resources: Option<Resources>,
    /// Its task, if one exists (orphaned if `record` is false).
    pub task: Option<TaskTruth>,
    /// Every real exit of a task with this id, oldest first.
    pub exits: Vec<RealExit>,
    /// Every signal that reached a task with this id, oldest first.
    pub signals: Vec<SignalTruth>,
}

/// A snapshot of everything the simulated containerd knows and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    /// When the snapshot was taken (unix ns).
    pub now: i64,
    /// containerd serves calls now.
    pub containerd_up: bool,
    /// Every restart so far.
    pub restarts: Vec<Restart>,
    /// Records by id.
    pub records: BTreeMap<String, RecordTruth>,
    /// Tasks by id (orphans included).
    pub tasks: BTreeMap<String, TaskTruth>,
    /// The current or last shim of each pod that ever had one.
    pub shims: BTreeMap<SandboxId, ShimTruth>,
    /// Every real exit, in time order.
    pub exits: Vec<RealExit>,
    /// Every shim death, in order.
    pub shim_deaths: Vec<ShimDeath>,
    /// Every signal that reached a process, in time order.
    pub signals: Vec<SignalTruth>,
    /// Every exec process ever started, in start order.
    pub execs: Vec<ExecTruth>,
}

impl Truth {
    /// Exec processes alive now, or exited and not yet deleted.
    pub fn execs_left(&self) -> impl Iterator<Item = &ExecTruth> + '_ {
        self.execs.iter().filter(|e| e.alive() || !e.deleted)
    }

    /// Tasks whose record was deleted while they existed (leaks).
    pub fn orphans(&self) -> impl Iterator<Item = &TaskTruth> + '_ {
        self.tasks.values().filter(|t| t.orphaned)
    }

    /// Real exits of one object, oldest first.
    pub fn exits_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a RealExit> + 'a {
        self.exits.iter().filter(move |e| e.target.as_str() == id)
    }

    /// The latest real exit of one object.
    pub fn last_exit(&self, id: &str) -> Option<&RealExit> {
        self.exits.iter().rev().find(|e| e.target.as_str() == id)
    }

    /// Shims alive now.
    pub fn live_shims(&self) -> impl Iterator<Item = (&SandboxId, &ShimTruth)> + '_ {
        self.shims
            .iter()
            .filter(|(_, s)| s.state == ShimState::Alive)
    }
}

/// The command word that makes an exec process follow an [`ExecPlan`]
/// ([`ExecPlan::to_cmd`]).
pub const SIM_EXEC_WORD: &str = "berth-sim-exec";

/// What a simulated exec process does (ExecSync). The harness encodes it in the exec's
/// command ([`ExecPlan::to_cmd`]), so that it travels with the request; a command that is no
/// plan exits 0 at once and prints nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecPlan {
    /// Exit on its own this long after its start; `None` runs until killed (or until its
    /// container's init dies).
    pub exit_after: Option<Duration>,
    /// The code of that exit.
    pub code: i32,
    /// Bytes it writes to stdout (at once; see [`ExecPlan::stdout`]).
    pub stdout_len: usize,
    /// Bytes it writes to stderr.
    pub stderr_len: usize,
    /// A background child keeps the output pipe open this long after the process exits
    /// (`Duration::MAX`: forever). A wait returns once the pipe is closed or the drain
    /// bound ([`crate::SimConfig::exec_drain_bound`]) has passed, whichever comes first.
    pub linger: Duration,
    /// A number that tells exec processes of one plan apart (the harness's, to find the
    /// process of one request in the truth); it changes nothing the process does.
    pub tag: u64,
}

impl Default for ExecPlan {
    fn default() -> Self {
        ExecPlan::exit(Duration::ZERO, 0)
    }
}

impl ExecPlan {
    /// Exits with `code` `after` its start, printing nothing.
    pub fn exit(after: Duration, code: i32) -> ExecPlan {
        ExecPlan {
            exit_after: Some(after),
            code,
            stdout_len: 0,
            stderr_len: 0,
            linger: Duration::ZERO,
            tag: 0,
        }
    }

    /// Runs until killed.
    pub fn forever() -> ExecPlan {
        ExecPlan {
            exit_after: None,
            ..ExecPlan::default()
        }
    }

    /// The same plan, writing `stdout` and `stderr` bytes.
    pub fn printing(self, stdout: usize, stderr: usize) -> ExecPlan {
        ExecPlan {
            stdout_len: stdout,
            stderr_len: stderr,
            ..self
        }
    }

    /// The same plan, with a background child holding the pipe open `linger` after the
    /// exit.
    pub fn lingering(self, linger: Duration) -> ExecPlan {
        ExecPlan { linger, ..self }
    }

    /// The same plan, tagged `tag` ([`ExecPlan::tag`]).
    pub fn tagged(self, tag: u64) -> ExecPlan {
        ExecPlan { tag, ..self }
    }

    /// How long after its start a wait of it returns, without kills: its exit plus the drain
    /// of a lingering pipe (at most `drain_bound`); `None` if it runs until killed.
    pub fn answered_after(&self, drain_bound: Duration) -> Option<Duration> {
        self.exit_after
            .map(|after| after.saturating_add(self.linger.min(drain_bound)))
    }

    /// The command that runs this plan.
    pub fn to_cmd(&self) -> Vec<String> {
        let ms = |d: Duration| {
            if d == Duration::MAX {
                "forever".to_owned()
            } else {
                d.as_millis().to_string()
            }
        };
        vec![
            SIM_EXEC_WORD.to_owned(),
            self.exit_after.map_or_else(|| "forever".to_owned(), ms),
            self.code.to_string(),
            self.stdout_len.to_string(),
            self.stderr_len.to_string(),
            ms(self.linger),
            self.tag.to_string(),
        ]
    }

    /// The plan a command runs ([`ExecPlan::to_cmd`]'s inverse); anything else is the
    /// default plan (exit 0 at once, silent).
    pub fn from_cmd(cmd: &[String]) -> ExecPlan {
        let parse = || -> Option<ExecPlan> {
            let [word, after, code, out, err, linger, tag] = cmd else {
                return None;
            };
            if word != SIM_EXEC_WORD {
                return None;
            }
            let ms = |s: &str| -> Option<Duration> {
                if s == "forever" {
                    Some(Duration::MAX)
                } else {
                    s.parse().ok().map(Duration::from_millis)
                }
            };
            let after = ms(after)?;
            Some(ExecPlan {
                exit_after: (after != Duration::MAX).then_some(after),
                code: code.parse().ok()?,
                stdout_len: out.parse().ok()?,
                stderr_len: err.parse().ok()?,
                linger: ms(linger)?,
                tag: tag.parse().ok()?,
            })
        };
        parse().unwrap_or_default()
    }

    /// What it writes to stdout: `stdout_len` bytes of `a`..`z` repeated.
    pub fn stdout(&self) -> Vec<u8> {
        (0..self.stdout_len)
            .map(|i| b'a' + (i % 26) as u8)
            .collect()
    }

    /// What it writes to stderr: `stderr_len` bytes of `A`..`Z` repeated.
    pub fn stderr(&self) -> Vec<u8> {
        (0..self.stderr_len)
            .map(|i| b'A' + (i % 26) as u8)
            .collect()
    }
}

/// How an exec process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecEnd {
    /// Its plan ran out.
    Planned,
    /// A signal (`Tasks.Kill`, or the SIGKILL of a delete or sweep).
    Signal(i32),
    /// Its container's init process died (one pid namespace: the kernel kills the rest).
    TaskDied,
    /// Its shim died.
    ShimDied,
}

/// One exec process, from its start on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTruth {
    /// Its container.
    pub container: String,
    /// Its exec id.
    pub exec_id: String,
    /// The task it ran in ([`TaskTruth::task`]).
    pub task: u64,
    /// Its pid.
    pub pid: u32,
    /// Its plan.
    pub plan: ExecPlan,
    /// When it started (unix ns).
    pub started_at: i64,
    /// When it exited (unix ns), if it has.
    pub exited_at: Option<i64>,
    /// Its exit code, if it has exited.
    pub code: Option<i32>,
    /// How it ended.
    pub end: Option<ExecEnd>,
    /// Gone from containerd: deleted, or gone with its task or shim.
    pub deleted: bool,
}

impl ExecTruth {
    /// Its process runs now.
    pub fn alive(&self) -> bool {
        self.exited_at.is_none()
    }

    /// It is of berth's ([`berth_core::EXEC_ID_PREFIX`]).
    pub fn is_berths(&self) -> bool {
        self.exec_id.starts_with(berth_core::EXEC_ID_PREFIX)
    }
}
