//! berth-simbackend: a simulated containerd (records, per-pod shims, tasks, processes) and
//! a simulated checkpoint disk (page cache, power loss), both injecting faults drawn from a
//! seed. Berth's deterministic simulator drives the real berth service against them.
//!
//! # Contract
//!
//! - [`SimBackend`] implements [`berth_backend::Backend`] and behaves as containerd 1.6
//!   was measured to (docs/containerd-behaviour.md §9.1–9.4, docs/containerd-behaviour.md §6.1):
//!   - records (metadata, labels, creation time) persist across a containerd restart;
//!     [`berth_backend::Backend::list`] returns them sorted by id;
//!   - tasks live as long as their shim, and shims are per pod: a container's shim is its
//!     sandbox's; [`SimBackend::kill_shim`] kills every task of the pod (NotFound
//!     afterwards; waits break with `Unavailable`, never an exit). With
//!     [`SimConfig::shim_per_container`] every task has its own shim instead, as a client
//!     that does not set the `io.kubernetes.cri.sandbox-id` annotation gets (berth's real
//!     backend before it set it); [`SimBackend::kill_shim_of`] kills the shim of one task
//!     either way;
//!   - `wait_task` returns a stored exit at once, blocks while the task lives (created or
//!     running), breaks with `Unavailable` on a containerd restart; while containerd is down
//!     every call fails fast with `Unavailable`;
//!   - exits carry real codes and times on the [`SimClock`]; a task that exits while
//!     containerd is down is Stopped with its real time afterwards;
//!   - `kill_task`: SIGKILL gives 137, SIGTERM 143 unless the [`ProcessPlan`] ignores it,
//!     a stopped task is NotFound ("process already finished"); `delete_task` of a running
//!     task without kill is FailedPrecondition; `delete_container` with a live task orphans
//!     it (visible in [`Truth::orphans`]); `create_task` without a record is NotFound, twice
//!     AlreadyExists; `task_status` of a missing task is `Ok(TaskState::NotFound)`.
//! - [`SimDisk`] implements [`berth_backend::CheckpointStore`] on a page-cache model where
//!   the temp + fsync + rename + directory fsync protocol matters (see [`disk`]).
//! - Faults come from a [`FaultPlan`] (swarm: [`FaultPlan::from_seed`]; [`FaultPlan::none`]
//!   for the heal phase), switchable at run time with [`SimBackend::set_faults`] and
//!   [`SimDisk::set_faults`]. Every injected fault is counted ([`FaultCounts`]) and logged
//!   ([`FaultEvent`]).
//! - Neither spawns a task, reads the OS clock or an unseeded RNG, or iterates a hash map:
//!   under `--cfg madsim` the same seed and the same calls give the same run, and both
//!   outlive a kill of the berth node (they play containerd and the disk).
//!
//! # Driving example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use berth_backend::{Backend, Target};
//! use berth_core::{ContainerId, SandboxId};
//! use berth_simbackend::{ProcessPlan, SimBackend, SimConfig};
//!
//! let sim = SimBackend::with_config(7, SimConfig::instant());
//! let pod = SandboxId::new("pod1").unwrap();
//! let ctr = Target::Container(ContainerId::new("c1").unwrap());
//! # let (sandbox_meta, container_meta) = berth_simbackend::examples::metas("pod1", "c1");
//! sim.create_sandbox(&sandbox_meta).await.unwrap();
//! sim.create_task(&Target::Sandbox(pod.clone())).await.unwrap();
//! sim.start_task(&Target::Sandbox(pod)).await.unwrap();
//! sim.create_container(&container_meta).await.unwrap();
//! sim.plan(&ctr, ProcessPlan::exit(Duration::ZERO, 42));
//! sim.create_task(&ctr).await.unwrap();
//! sim.start_task(&ctr).await.unwrap();
//! assert_eq!(sim.wait_task(&ctr).await.unwrap().code, 42);
//! assert_eq!(sim.truth().last_exit("c1").map(|e| e.code), Some(42));
//! # }
//! ```

pub mod backend;
pub mod clock;
pub mod config;
pub mod disk;
pub mod error;
pub mod examples;
pub mod faults;
mod model;
pub mod truth;

pub use backend::{Chaos, SimBackend};
pub use clock::{DEFAULT_WALL_BASE, SimClock};
pub use config::{DiskConfig, Latencies, SimConfig};
pub use disk::{CrashReport, Overlap, Recorded, SimDisk, Swept};
pub use error::HookError;
pub use faults::{
    CallFaults, ChaosRates, DiskFaults, FaultCounts, FaultEvent, FaultKind, FaultPlan,
};
pub use model::{BUSYBOX_ID, default_images};
pub use truth::{
    ExecEnd, ExecPlan, ExecTruth, ExitCause, ObjectTruth, ProcessPlan, RealExit, RecordMeta,
    RecordTruth, Restart, SIM_EXEC_WORD, ShimDeath, ShimState, ShimTruth, SignalTruth, TaskTruth,
    Truth,
};
