//! The regression list (`sim/tests/regressions.txt`): failing runs the simulator found,
//! shrunk, one per line:
//!
//! ```text
//! seed=4242 SIM_CLIENTS=1 SIM_CONTAINERS=3 ... expect=pass # what it was
//! seed=77 SIM_CLIENTS=2 ... expect=open:stop-acked-while-running # a berth bug not fixed yet
//! ```
//!
//! `expect=pass`: the run must pass (the bug was fixed). `expect=open:<id>`: a known open
//! berth bug ([`crate::bugs::OPEN_BUGS`]); the run must still fail with that bug's symptom
//! (so the entry keeps proving the bug), and once berth is fixed it passes and the test
//! asks for the entry to be flipped to `pass`. `SIM_STRICT=1` requires every entry to pass.

use std::collections::BTreeMap;

use crate::shape::{Shape, ShapeError};

/// What an entry must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Pass.
    Pass,
    /// Fail with the symptom of this open bug.
    Open(String),
}

/// One regression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Line number.
    pub line: usize,
    /// The seed.
    pub seed: u64,
    /// The shape.
    pub shape: Shape,
    /// What it must do.
    pub expect: Expect,
    /// The comment.
    pub note: String,
}

/// Why the list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// A line is malformed.
    #[error("regressions.txt:{line}: {why}")]
    Line {
        /// Line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A shape value is invalid.
    #[error("regressions.txt:{line}: {error}")]
    Shape {
        /// Line number.
        line: usize,
        /// The error.
        error: ShapeError,
    },
}

/// Parses the list. Shapes start from [`Shape::default`] and take the `SIM_*` pairs given.
pub fn parse(text: &str) -> Result<Vec<Entry>, ListError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (body, note) = raw.split_once('#').unwrap_or((raw, ""));
        let body = body.trim();
        if body.is_empty() {
            continue;
        }
        let mut pairs = BTreeMap::new();
        for word in body.split_whitespace() {
            let (k, v) = word.split_once('=').ok_or_else(|| ListError::Line {
                line,
                why: format!("{word:?} is not KEY=VALUE"),
            })?;
            pairs.insert(k.to_owned(), v.to_owned());
        }
        let seed = pairs
            .get("seed")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ListError::Line {
                line,
                why: "no seed=N".to_owned(),
            })?;
        let expect = match pairs.get("expect").map(String::as_str) {
            Some("pass") | None => Expect::Pass,
            Some(e) => match e.strip_prefix("open:") {
                Some(id) => Expect::Open(id.to_owned()),
                None => {
                    return Err(ListError::Line {
                        line,
                        why: format!("expect={e} is neither pass nor open:<id>"),
                    });
                }
            },
        };
        let shape = Shape::from_vars(Shape::default(), &|k| pairs.get(k).cloned())
            .map_err(|error| ListError::Shape { line, error })?;
        out.push(Entry {
            line,
            seed,
            shape,
            expect,
            note: note.trim().to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_comments() {
        let text = "# header\n\nseed=5 SIM_CLIENTS=1 SIM_CONTAINERS=2 expect=pass # fixed\nseed=6 expect=open:stop-acked-while-running\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].seed, 5);
        assert_eq!(e[0].shape.clients, 1);
        assert_eq!(e[0].shape.containers, 2);
        assert_eq!(e[0].shape.crashes, Shape::default().crashes);
        assert_eq!(e[0].note, "fixed");
        assert_eq!(e[1].expect, Expect::Open("stop-acked-while-running".into()));
        assert!(parse("seed=x").is_err());
        assert!(parse("seed=1 expect=maybe").is_err());
        assert!(parse("seed=1 SIM_CLIENTS=lots").is_err());
    }
}
