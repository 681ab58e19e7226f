//! berth-core (contract to be written with the machine).
mod checkpoint;
mod error;
mod ids;
mod io;
mod meta;
mod registry;
mod status;

pub use checkpoint::{
    CHECKPOINT_VERSION, CheckpointError, MAX_CHECKPOINT_BYTES, decode as decode_checkpoint,
    encode as encode_checkpoint,
};
pub use error::{CommandError, ErrorCode, Guard};
pub use ids::{ContainerId, IdError, MAX_ID_LEN, OpId, RequestId, SandboxId, validate_id};
pub use io::*;
pub use meta::*;
pub use registry::{NameError, NameRegistry};
pub use status::*;
