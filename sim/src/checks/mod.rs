//! The checkers, one concern per file (as TigerBeetle's VOPR keeps them). Each is a pure
//! function of what berth answered and what the simulated containerd and disk hold, so it
//! runs after every step where that makes sense and at the end of a run, and it can be unit
//! tested without a simulation.
//!
//! - [`invariants`]: the core's invariants (asked of the running service) and names a
//!   bijection;
//! - [`replies`]: every CRI reply and observation against a reference model;
//! - [`truth`]: the CRI view against containerd's truth (state, pid, exit code and time),
//!   and a restart that changes nothing;
//! - [`exits`]: no exit lost;
//! - [`first_exit`]: the first exit berth made durable is a real one and is never replaced;
//! - [`leaks`]: no task, shim, record or checkpoint left behind;
//! - [`stuck`]: nothing stuck starting or removing, recovery and requests bounded;
//! - [`graceful`]: a graceful stop signals first and kills only after its grace period;
//! - [`write_order`]: one checkpoint write of a record at a time;
//! - [`exited`]: an EXITED container keeps no task and nothing waits on it;
//! - [`sweep`]: recovery's orphan sweep keeps the checkpoint of every container containerd
//!   knows;
//! - [`execs`]: no exec process outlives its ExecSync's answer, answers follow the plan,
//!   none is left after the heal.

pub mod execs;
pub mod exited;
pub mod exits;
pub mod first_exit;
pub mod graceful;
pub mod invariants;
pub mod leaks;
pub mod replies;
pub mod stuck;
pub mod sweep;
pub mod truth;
pub mod write_order;

use berth_core::{ContainerState, Status};

/// A short human description of a status, for violation messages.
pub fn describe(state: ContainerState, s: &Status) -> String {
    match state {
        ContainerState::Running => format!("RUNNING pid {}", s.pid),
        ContainerState::Exited => format!(
            "EXITED code {} at {} reason {:?}",
            s.exit_code, s.finished_at, s.reason
        ),
        ContainerState::Created => "CREATED".to_owned(),
        ContainerState::Unknown => format!("UNKNOWN pid {}", s.pid),
    }
}
