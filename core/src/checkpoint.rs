//! The versioned status checkpoint format (docs/containerd-behaviour.md §2).
//!
//! One JSON object per container, containerd's keys (`"Version":"v1"`, `Pid`, `CreatedAt`,
//! ...) plus berth's `Unknown`. Decoding is forward compatible (unknown keys are ignored,
//! missing ones take their zero value) and never panics: every malformed input maps to a
//! [`CheckpointError`].

use serde::{Deserialize, Serialize};

use crate::status::{Resources, Status};

/// The only version berth writes and reads.
pub const CHECKPOINT_VERSION: &str = "v1";

/// Largest checkpoint berth decodes; a larger file is corrupt by definition (a record is a
/// few hundred bytes) and must not make the daemon allocate without bound.
pub const MAX_CHECKPOINT_BYTES: usize = 1 << 20;

/// Why a checkpoint could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The file is empty (a crash between create and write, or a lost write).
    #[error("checkpoint is empty")]
    Empty,
    /// The JSON ends early (a torn write).
    #[error("checkpoint is truncated: {detail}")]
    Truncated {
        /// The decoder's description.
        detail: String,
    },
    /// Not a checkpoint at all: bad syntax, wrong types, or not an object.
    #[error("checkpoint is not valid: {detail}")]
    Garbage {
        /// The decoder's description.
        detail: String,
    },
    /// Larger than [`MAX_CHECKPOINT_BYTES`].
    #[error("checkpoint is {len} bytes, more than the {MAX_CHECKPOINT_BYTES} allowed")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The object has no `Version` key.
    #[error("checkpoint has no version")]
    MissingVersion,
    /// The `Version` is not one berth knows.
    #[error("checkpoint version {version:?} is not supported (only {CHECKPOINT_VERSION:?})")]
    UnknownVersion {
        /// The version found, cut to a printable length.
        version: String,
    },
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Wire {
    #[serde(rename = "Version", skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(rename = "Pid")]
    pid: u32,
    #[serde(rename = "CreatedAt")]
    created_at: i64,
    #[serde(rename = "StartedAt")]
    started_at: i64,
    #[serde(rename = "FinishedAt")]
    finished_at: i64,
    #[serde(rename = "ExitCode")]
    exit_code: i32,
    #[serde(rename = "Reason")]
    reason: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "Unknown")]
    unknown: bool,
    #[serde(rename = "Resources")]
    resources: Option<Resources>,
}

/// Encodes a status record as a v1 checkpoint.
pub fn encode(status: &Status) -> Vec<u8> {
    let wire = Wire {
        version: Some(CHECKPOINT_VERSION.to_owned()),
        pid: status.pid,
        created_at: status.created_at,
        started_at: status.started_at,
        finished_at: status.finished_at,
        exit_code: status.exit_code,
        reason: status.reason.clone(),
        message: status.message.clone(),
        unknown: status.unknown,
        resources: status.resources.clone(),
    };
    // Serialising a struct of plain fields into a Vec cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Decodes a checkpoint. Never panics; see [`CheckpointError`] for every rejection.
pub fn decode(bytes: &[u8]) -> Result<Status, CheckpointError> {
    if bytes.len() > MAX_CHECKPOINT_BYTES {
        return Err(CheckpointError::TooLarge { len: bytes.len() });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(CheckpointError::Empty);
    }
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| {
        let detail = crate::ids::shorten(&e.to_string());
        if e.is_eof() {
            CheckpointError::Truncated { detail }
        } else {
            CheckpointError::Garbage { detail }
        }
    })?;
    match wire.version.as_deref() {
        None => return Err(CheckpointError::MissingVersion),
        Some(CHECKPOINT_VERSION) => {}
        Some(other) => {
            return Err(CheckpointError::UnknownVersion {
                version: crate::ids::shorten(other),
            });
        }
    }
    Ok(Status {
        pid: wire.pid,
        created_at: wire.created_at,
        started_at: wire.started_at,
        finished_at: wire.finished_at,
        exit_code: wire.exit_code,
        reason: wire.reason,
        message: wire.message,
        unknown: wire.unknown,
        resources: wire.resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            pid: 27130,
            created_at: 1795407741827751552,
            started_at: 1795407742192091964,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            unknown: false,
            resources: Some(Resources {
                memory_limit_in_bytes: 1 << 20,
                ..Resources::default()
            }),
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(decode(&encode(&s)), Ok(s));
        let u = Status::unknown(3);
        assert_eq!(decode(&encode(&u)), Ok(u));
    }

    #[test]
    fn reads_containerd_written_record() {
        // Written by containerd 1.6.20 (docs/containerd-behaviour.md §2).
        let raw = br#"{"Version":"v1","Pid":27130,"CreatedAt":1795407741827751552,"StartedAt":1795407742192091964,"FinishedAt":0,"ExitCode":0,"Reason":"","Message":"","Resources":{"linux":{}}}"#;
        let s = decode(raw).unwrap();
        assert_eq!(s.pid, 27130);
        assert_eq!(s.started_at, 1795407742192091964);
        assert!(!s.unknown);
    }

    #[test]
    fn ignores_unknown_fields() {
        let raw = br#"{"Version":"v1","CreatedAt":5,"FutureField":{"a":[1,2]},"Unknown":true}"#;
        let s = decode(raw).unwrap();
        assert_eq!((s.created_at, s.unknown), (5, true));
    }

    #[test]
    fn typed_errors() {
        assert_eq!(decode(b""), Err(CheckpointError::Empty));
        assert_eq!(decode(b"  \n"), Err(CheckpointError::Empty));
        let full = encode(&sample());
        assert!(matches!(
            decode(&full[..full.len() / 2]),
            Err(CheckpointError::Truncated { .. })
        ));
        assert!(matches!(
            decode(b"\x00\xffgarbage"),
            Err(CheckpointError::Garbage { .. })
        ));
        assert!(matches!(
            decode(b"[1,2]"),
            Err(CheckpointError::Garbage { .. })
        ));
        assert!(matches!(
            decode(br#"{"Version":"v1","Pid":-1}"#),
            Err(CheckpointError::Garbage { .. })
        ));
        assert_eq!(
            decode(br#"{"Pid":1}"#),
            Err(CheckpointError::MissingVersion)
        );
        assert_eq!(
            decode(br#"{"Version":"v2"}"#),
            Err(CheckpointError::UnknownVersion {
                version: "v2".into()
            })
        );
        let big = vec![b' '; MAX_CHECKPOINT_BYTES + 1];
        assert_eq!(
            decode(&big),
            Err(CheckpointError::TooLarge {
                len: MAX_CHECKPOINT_BYTES + 1
            })
        );
    }

    #[test]
    fn every_prefix_decodes_or_errs() {
        let full = encode(&sample());
        for end in 0..full.len() {
            assert!(
                decode(&full[..end]).is_err(),
                "prefix {end} must not decode"
            );
        }
    }
}
