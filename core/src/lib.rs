//! berth-core: the pure container lifecycle state machine of berth.
//!
//! # Contract (sans-IO)
//!
//! The core owns every lifecycle decision and performs no effect itself: no async, no I/O,
//! no clock, no randomness. A driver (berth-service in production, the simulator, tests)
//! feeds it inputs and carries out the effects it emits.
//!
//! - **Inputs** (each takes [`Now`]; time is an input):
//!   [`Machine::handle_command`] (a CRI command with a [`RequestId`]),
//!   [`Machine::handle_call`] (the result of a [`Call`] the core asked for),
//!   [`Machine::handle_persisted`] (the outcome of a checkpoint write or delete),
//!   [`Machine::handle_task_exit`] (an exit learned outside a wait: events, duplicates),
//!   [`Machine::handle_timeout`] (timers). [`Machine::recover`] builds a machine from what
//!   survived a restart ([`RecoveryInput`]).
//! - **Outputs**: [`Machine::poll_effect`] returns, in order, [`Effect::Call`] (run this
//!   backend call, feed back its result with the same [`OpId`]), [`Effect::Persist`]
//!   (write or delete a checkpoint, feed back the outcome) and [`Effect::Reply`] (answer a
//!   request). [`Machine::poll_timeout`] gives the next timer deadline,
//!   [`Machine::poll_event`] the CRI event stream.
//! - **Getters** (`container`, `containers`, `sandbox`, `sandboxes`, `is_recovering`,
//!   `serving`, and `container_id` / `sandbox_id` for id prefixes) read the state; CRI status
//!   and list requests are answered from them. While recovery runs, commands are answered
//!   [`CommandError::Recovering`] and reads must answer it too ([`Machine::serving`]).
//!
//! Driving rules: after every input, drain `poll_effect` and run the effects; calls may run
//! concurrently and complete in any order; [`Call::WaitTask`] is long-lived, every other
//! call needs a deadline whose expiry is reported as a `DeadlineExceeded` error. The core
//! never emits an effect that depends on a persist before that persist's outcome arrived,
//! so a driver that runs persists one at a time per container gets "durable before any
//! later effect of that container and before its reply" for free.
//!
//! Ordering that reaches effects is deterministic (ids are kept in `BTreeMap`s), so the same
//! inputs give the same effects: the simulator depends on it.
//!
//! [`Machine::check_invariants`] checks the whole state; tests call it after every step.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use berth_core::*;
//!
//! let now = Now::at(1_700_000_000_000_000_000, Duration::ZERO);
//! let mut m = Machine::new(Config::default(), now);
//! let config = SandboxConfig { name: "web".into(), uid: "u1".into(), namespace: "default".into(), ..Default::default() };
//! m.handle_command(RequestId(1), Command::RunPodSandbox { id: SandboxId::new("pod1").unwrap(), config: Box::new(config) }, now);
//! // The core asks for the pause container's record first.
//! match m.poll_effect() {
//!     Some(Effect::Call { op, call: Call::CreateSandbox(meta) }) => {
//!         assert_eq!(meta.name, "web_default_u1_0");
//!         m.handle_call(op, Ok(CallResult::Done), now);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert!(matches!(m.poll_effect(), Some(Effect::Call { call: Call::CreateTask(_), .. })));
//! m.check_invariants().unwrap();
//! ```

mod checkpoint;
mod config;
mod create;
mod error;
mod execsync;
mod exit;
mod ids;
mod image;
mod invariants;
mod io;
mod machine;
mod meta;
mod prefix;
mod record;
mod recovery;
mod registry;
mod remove;
mod reopen;
mod sandbox;
mod signal;
mod start;
mod status;
mod stop;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod update;
mod validate;

pub use checkpoint::{
    CHECKPOINT_VERSION, CheckpointError, MAX_CHECKPOINT_BYTES, decode as decode_checkpoint,
    encode as encode_checkpoint,
};
#[cfg(feature = "planted-bugs")]
pub use config::PlantedBug;
pub use config::{Config, EXEC_OUTPUT_CAP};
pub use error::{CommandError, ErrorCode, Guard, Operation};
pub use execsync::{Exec, ExecState};
pub use ids::{
    ContainerId, EXEC_ID_PREFIX, ExecId, IdError, MAX_ID_LEN, OpId, RequestId, SandboxId,
    validate_id,
};
pub use image::{
    ImageError, ImageQuery, ImageRecord, ImageRef, normalize_reference, parse_image, resolve_image,
};
pub use invariants::InvariantViolation;
pub use io::{
    BackendError, BackendErrorKind, Call, CallResult, Command, Effect, Event, EventKind,
    ExecOutput, ExecSpec, Now, PersistAction, PersistError, ResourcesOf, Response, Target,
    TaskState,
};
pub use machine::Machine;
pub use meta::{
    ContainerConfig, ContainerMeta, META_VERSION, MetaError, NamespaceMode, SandboxConfig,
    SandboxMeta,
};
pub use prefix::resolve_prefix;
pub use record::{Container, Sandbox, SandboxState};
pub use recovery::{
    CheckpointProblem, Decision, RecoveredContainer, RecoveredSandbox, RecoveryInput, decide,
    decide_sandbox,
};
pub use registry::{NameError, NameRegistry};
pub use signal::{SIGKILL, SIGTERM, parse_signal};
pub use status::{
    ContainerState, ExitStatus, OOM_REASON, Resources, START_ERROR_EXIT_CODE, START_ERROR_REASON,
    Status, UNKNOWN_EXIT_CODE, UNKNOWN_REASON,
};
pub use validate::{
    MAX_CONFIG_BYTES, MAX_NAME_LEN, join_log_path, validate_container_config,
    validate_sandbox_config,
};
