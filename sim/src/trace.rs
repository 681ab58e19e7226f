//! The run's event trace: every client request and reply, backend call, checkpoint write,
//! crash, restart and chaos event, stamped with simulated time. Always hashed (FNV-1a,
//! stable across Rust versions, unlike `DefaultHasher`) so that the harness can check its
//! own determinism; kept as text only when asked (`SIM_TRACE=1`), since formatting costs
//! more than the rest of a run.

use std::fmt::Write as _;

/// 64-bit FNV-1a.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds a number (little endian).
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Feeds a string and a separator, so that ("ab","c") and ("a","bc") differ.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
        self.bytes(&[0xff]);
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a of a byte string.
pub fn fnv1a(b: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.bytes(b);
    h.finish()
}

/// The trace of one run.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    hash: Fnv,
    events: u64,
    text: Option<Vec<String>>,
}

/// Shortens a 64-hex-digit id to its first 8 digits for the readable trace.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl Trace {
    /// A trace that keeps its text (`keep_text`) or only hashes.
    pub fn new(keep_text: bool) -> Trace {
        Trace {
            text: keep_text.then(Vec::new),
            ..Trace::default()
        }
    }

    /// Records one event at `micros` of simulated time: who did it, what, to which object,
    /// and a numeric outcome. `detail` is formatted only when the text is kept.
    pub fn event(
        &mut self,
        micros: u64,
        actor: &str,
        what: &str,
        object: &str,
        outcome: i64,
        detail: impl FnOnce() -> String,
    ) {
        self.events += 1;
        let h = &mut self.hash;
        h.u64(micros);
        h.str(actor);
        h.str(what);
        h.str(object);
        h.u64(outcome as u64);
        if let Some(text) = &mut self.text {
            let mut line = String::new();
            let _ = write!(
                line,
                "{:>9.3}s {actor:<9} {what:<18} {:<8}",
                micros as f64 / 1e6,
                short(object)
            );
            let d = detail();
            if !d.is_empty() {
                line.push(' ');
                line.push_str(&d);
            }
            text.push(line);
        }
    }

    /// The FNV-1a hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// How many events.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The readable lines, if kept.
    pub fn lines(&self) -> Option<&[String]> {
        self.text.as_deref()
    }

    /// Takes the readable lines out.
    pub fn take_lines(&mut self) -> Vec<String> {
        self.text.take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_values() {
        // Test vectors of the FNV specification (64-bit FNV-1a).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_hash_depends_on_every_field_and_not_on_the_text() {
        let run = |keep: bool, code: i64| {
            let mut t = Trace::new(keep);
            t.event(5, "client0", "start", "abcdef0123456789", code, || {
                "ok".to_owned()
            });
            t
        };
        assert_eq!(run(true, 0).hash(), run(false, 0).hash());
        assert_ne!(run(false, 0).hash(), run(false, 1).hash());
        let t = run(true, 0);
        assert_eq!(t.len(), 1);
        let line = &t.lines().unwrap()[0];
        assert!(line.contains("abcdef01") && line.contains("ok"), "{line}");
        assert!(run(false, 0).lines().is_none());
    }
}
