//! Fuzz targets for berth-core, as a library so that the stable replay test, the replay
//! binaries and the libFuzzer entry points all run the same code.
//!
//! - [`decode`]: `checkpoint_decode`, bytes into the checkpoint and metadata codecs.
//! - [`ops`]: `ops`, a list of operations on [`berth_core::testing::FakeNode`], invariants
//!   checked after each.
//! - [`seeds`]: the seed corpus, generated from readable scenarios.
//!
//! [`run`] is the one entry point by target name; see `fuzz/README.md` for how to fuzz.

pub mod decode;
pub mod ops;
pub mod replay;
pub mod seeds;

use std::fmt;

/// The fuzz targets, by the name of their `fuzz_targets/` binary and corpus directory.
pub const TARGETS: [&str; 2] = ["checkpoint_decode", "ops"];

/// What one input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A `checkpoint_decode` input: which decoders accepted it.
    Decode(decode::Accepted),
    /// An `ops` input: what it reached.
    Ops(ops::Reached),
}

/// A finding: the target's property does not hold for an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A decoded value did not survive encode → decode.
    RoundTrip(String),
    /// An invariant broke after an operation.
    Invariant(Box<ops::Violation>),
    /// No target of that name.
    UnknownTarget(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::RoundTrip(m) => write!(f, "round trip failed: {m}"),
            Finding::Invariant(v) => write!(f, "invariant violated {v}"),
            Finding::UnknownTarget(t) => write!(f, "no fuzz target {t:?} (known: {TARGETS:?})"),
        }
    }
}

/// Runs one input through a target. A panic inside berth-core propagates. `logging` keeps
/// the `ops` world's transcript for the finding (slower; for reproducing).
pub fn run(target: &str, data: &[u8], logging: bool) -> Result<Outcome, Finding> {
    match target {
        "checkpoint_decode" => decode::run(data)
            .map(Outcome::Decode)
            .map_err(Finding::RoundTrip),
        "ops" => ops::run(data, logging)
            .map(Outcome::Ops)
            .map_err(|v| Finding::Invariant(Box::new(v))),
        other => Err(Finding::UnknownTarget(other.to_owned())),
    }
}

/// The body of a libFuzzer target: runs the input and panics on a finding.
pub fn fuzz(target: &str, data: &[u8]) {
    if let Err(finding) = run(target, data, false) {
        panic!("{finding}");
    }
}
