//! Identifiers and their validation.
//!
//! Container and sandbox ids double as containerd object ids and as directory names under
//! berth's root, so they follow containerd's identifier rules (`identifiers.Validate`):
//! one or more letters or digits, optionally separated by single `.`, `_` or `-`, at most
//! 76 characters. That rules out `/`, `..`, empty ids and control characters, which is what
//! keeps a hostile id from escaping the state directory.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id containerd accepts (measured: 76 accepted, 77 rejected).
pub const MAX_ID_LEN: usize = 76;

/// Why an id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("{kind} id is empty")]
    Empty {
        /// What the id names ("container", "sandbox").
        kind: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("{kind} id {shown:?} is {len} characters long; at most {MAX_ID_LEN} are allowed")]
    TooLong {
        /// What the id names.
        kind: &'static str,
        /// The id, cut to a printable length.
        shown: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The id contains a character or a sequence containerd refuses.
    #[error(
        "{kind} id {shown:?} is invalid: {why} (allowed: letters and digits, separated by single '.', '_' or '-')"
    )]
    Invalid {
        /// What the id names.
        kind: &'static str,
        /// The id, cut and escaped.
        shown: String,
        /// The first rule it breaks.
        why: &'static str,
    },
}

/// Checks `id` against containerd's identifier rules. `kind` names the id in the error.
pub fn validate_id(kind: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            shown: shorten(id),
            len: id.len(),
        });
    }
    let invalid = |why| IdError::Invalid {
        kind,
        shown: shorten(id),
        why,
    };
    let bytes = id.as_bytes();
    let mut prev_sep = true; // the id must start with an alphanumeric
    for &b in bytes {
        if b.is_ascii_alphanumeric() {
            prev_sep = false;
        } else if matches!(b, b'.' | b'_' | b'-') {
            if prev_sep {
                return Err(invalid(if b == b'.' && bytes.starts_with(b"..") {
                    "'..' is not allowed"
                } else {
                    "a separator must follow a letter or digit"
                }));
            }
            prev_sep = true;
        } else if b == b'/' {
            return Err(invalid("'/' is not allowed"));
        } else if b.is_ascii_control() {
            return Err(invalid("control characters are not allowed"));
        } else {
            return Err(invalid(
                "only ASCII letters, digits, '.', '_' and '-' are allowed",
            ));
        }
    }
    if prev_sep {
        return Err(invalid("the id must end with a letter or digit"));
    }
    Ok(())
}

/// Cuts a string for an error message so a huge input cannot flood a log line.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl $name {
            /// Validates `id` and wraps it.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate_id($kind, &id)?;
                Ok(Self(id))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// A validated container id (also its containerd container id and directory name).
    ContainerId,
    "container"
);
id_type!(
    /// A validated pod sandbox id (also the id of its pause container in containerd).
    SandboxId,
    "sandbox"
);

id_type!(
    /// A validated exec process id (containerd's exec id within its container's task).
    /// berth's own start with [`EXEC_ID_PREFIX`], so that recovery sweeps only the exec
    /// processes berth started, never one an operator started with `ctr task exec`.
    ExecId,
    "exec"
);

/// The prefix of the ids of the exec processes berth starts.
pub const EXEC_ID_PREFIX: &str = "berth-exec-";

impl ExecId {
    /// True for an exec process berth started (its id has [`EXEC_ID_PREFIX`]).
    pub fn is_berths(&self) -> bool {
        self.0.starts_with(EXEC_ID_PREFIX)
    }
}

/// Identifies one backend call or checkpoint write the core asked for; its outcome comes
/// back with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// Identifies a CRI request; the driver chooses it and gets it back in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_containerd_ids() {
        for id in ["a", "Web1", "pod_a.web-1", &"f".repeat(64), &"x".repeat(76)] {
            assert_eq!(validate_id("container", id), Ok(()), "{id}");
        }
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(
            validate_id("container", ""),
            Err(IdError::Empty { kind: "container" })
        );
    }

    #[test]
    fn rejects_too_long() {
        let e = validate_id("sandbox", &"x".repeat(77)).unwrap_err();
        assert!(matches!(e, IdError::TooLong { len: 77, .. }), "{e}");
        let huge = "y".repeat(1 << 20);
        let msg = validate_id("sandbox", &huge).unwrap_err().to_string();
        assert!(
            msg.len() < 300,
            "error message must stay short: {}",
            msg.len()
        );
    }

    #[test]
    fn rejects_path_tricks_and_control_characters() {
        for (id, why) in [
            ("a/b", "'/' is not allowed"),
            ("..", "'..' is not allowed"),
            ("../etc", "'..' is not allowed"),
            ("a..b", "a separator must follow a letter or digit"),
            (".a", "a separator must follow a letter or digit"),
            ("-a", "a separator must follow a letter or digit"),
            ("a-", "the id must end with a letter or digit"),
            ("a\nb", "control characters are not allowed"),
            ("a\0b", "control characters are not allowed"),
            (
                "a b",
                "only ASCII letters, digits, '.', '_' and '-' are allowed",
            ),
            (
                "é",
                "only ASCII letters, digits, '.', '_' and '-' are allowed",
            ),
        ] {
            match validate_id("container", id) {
                Err(IdError::Invalid { why: got, .. }) => assert_eq!(got, why, "{id:?}"),
                other => panic!("{id:?}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn newtype_validates() {
        assert!(ContainerId::new("a/b").is_err());
        assert_eq!(ContainerId::new("abc").unwrap().as_str(), "abc");
        assert_eq!("abc".parse::<SandboxId>().unwrap().to_string(), "abc");
    }
}
