//! The `checkpoint_decode` target: the same bytes go to the checkpoint codec and to both
//! metadata codecs. None may panic; whatever decodes must survive encode → decode
//! unchanged.

use berth_core::{ContainerMeta, SandboxMeta, decode_checkpoint, encode_checkpoint};

/// Which decoders accepted the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// [`decode_checkpoint`] returned a status.
    pub checkpoint: bool,
    /// [`ContainerMeta::decode`] returned metadata.
    pub container_meta: bool,
    /// [`SandboxMeta::decode`] returned metadata.
    pub sandbox_meta: bool,
}

/// Runs the three decoders on `data`. `Err` describes a failed round trip; a panic in a
/// decoder propagates (that is what the fuzzer looks for).
pub fn run(data: &[u8]) -> Result<Accepted, String> {
    let mut accepted = Accepted::default();
    if let Ok(status) = decode_checkpoint(data) {
        accepted.checkpoint = true;
        let again = decode_checkpoint(&encode_checkpoint(&status));
        if again.as_ref() != Ok(&status) {
            return Err(format!(
                "checkpoint round trip changed the status: {status:?} became {again:?}"
            ));
        }
    }
    if let Ok(meta) = ContainerMeta::decode(data) {
        accepted.container_meta = true;
        let again = ContainerMeta::decode(&meta.encode());
        if again.as_ref() != Ok(&meta) {
            return Err(format!(
                "container metadata round trip changed it: {meta:?} became {again:?}"
            ));
        }
    }
    if let Ok(meta) = SandboxMeta::decode(data) {
        accepted.sandbox_meta = true;
        let again = SandboxMeta::decode(&meta.encode());
        if again.as_ref() != Ok(&meta) {
            return Err(format!(
                "sandbox metadata round trip changed it: {meta:?} became {again:?}"
            ));
        }
    }
    Ok(accepted)
}
