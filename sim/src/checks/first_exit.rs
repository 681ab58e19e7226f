//! The first exit berth made durable is the true one, and it stays: once a record of a
//! container that carries an exit is durable (a checkpoint write acknowledged, or found by
//! recovery's load), every later record of that container berth writes or finds carries
//! the same exit (code, finish time, reason), whatever conflicting observation came later
//! (a re-sync or a task delete that found the task gone, recovery's look at a task whose
//! shim died, a late exit). A real code (no reason) must be the code and time of one of the
//! container's real exits; a lost exit (255 `UNKNOWN_REASON`) and a failed start (128
//! `START_ERROR_REASON`) are judged where berth's final view is ([`super::exits`],
//! [`super::truth`]).
//!
//! The fault plan's `exit_race` kills a container's shim just as berth begins to record
//! its exit, so the conflicting "task gone" observation is likely.

use std::collections::BTreeMap;

use berth_core::Status;
use berth_simbackend::{RealExit, Recorded};

/// An exit as a record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exit {
    code: i32,
    finished_at: i64,
    reason: String,
}

impl Exit {
    fn of(s: &Status) -> Option<Exit> {
        (s.finished_at != 0).then(|| Exit {
            code: s.exit_code,
            finished_at: s.finished_at,
            reason: s.reason.clone(),
        })
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "code {} at {} reason {:?}",
            self.code, self.finished_at, self.reason
        )
    }
}

/// The first durable exit of each container, fed with the disk's records in order
/// ([`berth_simbackend::SimDisk::records_from`]).
#[derive(Debug, Default)]
pub struct FirstExits {
    first: BTreeMap<String, (Exit, i64)>,
    seen: usize,
}

fn how(r: &Recorded) -> &'static str {
    if r.loaded { "loaded" } else { "written" }
}

impl FirstExits {
    /// How many of the disk's records have been judged (the next `records_from` index).
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Judges the records made durable or found since the last call. `exits` gives a
    /// container's real exits (containerd's truth). Returns the violations.
    pub fn judge(
        &mut self,
        records: &[Recorded],
        exits: impl Fn(&str) -> Vec<RealExit>,
    ) -> Vec<String> {
        let mut bad = Vec::new();
        for r in records {
            self.seen += 1;
            let now = Exit::of(&r.status);
            match (self.first.get(&r.id), now) {
                (None, None) => {}
                (None, Some(e)) => {
                    if let Some(v) = untrue(&r.id, &r.status, &e, &exits(&r.id)) {
                        bad.push(v);
                    }
                    self.first.insert(r.id.clone(), (e, r.at));
                }
                (Some((first, _)), Some(e)) if *first == e => {}
                (Some((first, at)), later) => bad.push(format!(
                    "the first exit berth made durable for container {} ({first}, at {at}) \
                     was replaced: a record {} at {} says {}",
                    r.id,
                    how(r),
                    r.at,
                    later.map_or("no exit".to_owned(), |e| e.to_string())
                )),
            }
        }
        bad
    }
}

/// Why the first durable exit `e` of `id` is not one of its real exits, if it is not.
fn untrue(id: &str, s: &Status, e: &Exit, real: &[RealExit]) -> Option<String> {
    // A lost exit (UNKNOWN_REASON), a failed start (START_ERROR_REASON) or an OOM kill
    // carries a reason and no code of a process of its own to compare.
    if !e.reason.is_empty() {
        return None;
    }
    let matches = |x: &RealExit| {
        x.code == e.code
            && (x.exited_at == e.finished_at
                || (e.finished_at == s.started_at && x.exited_at <= s.started_at))
    };
    if real.iter().any(matches) {
        return None;
    }
    let real: Vec<(i32, i64)> = real.iter().map(|x| (x.code, x.exited_at)).collect();
    Some(format!(
        "the first exit berth made durable for container {id} ({e}) is none of its real \
         exits {real:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{ContainerId, ExitStatus, Target};
    use berth_simbackend::ExitCause;

    fn running() -> Status {
        let mut s = Status::created(10, None);
        s.started_at = 20;
        s.pid = 1000;
        s
    }

    fn rec(status: Status, at: i64, loaded: bool) -> Recorded {
        Recorded {
            id: "c1".to_owned(),
            at,
            status,
            loaded,
        }
    }

    fn real(code: i32, at: i64) -> Vec<RealExit> {
        vec![RealExit {
            target: Target::Container(ContainerId::new("c1").unwrap()),
            task: 1,
            pid: 1000,
            code,
            exited_at: at,
            cause: ExitCause::Planned,
            started: true,
            shim_died: true,
        }]
    }

    #[test]
    fn a_later_conflicting_exit_is_a_violation() {
        let exited = running().with_exit(ExitStatus::real(3, 30));
        let mut f = FirstExits::default();
        let records = [
            rec(running(), 25, false),
            rec(exited.clone(), 31, false),
            rec(exited.clone(), 40, true),
        ];
        assert!(f.judge(&records, |_| real(3, 30)).is_empty());
        assert_eq!(f.seen(), 3);
        // The task's shim died; a later observation says "gone": 255 replaces 3.
        let mut lost = running();
        lost = lost.with_exit(ExitStatus::lost(50));
        let bad = f.judge(&[rec(lost, 51, false)], |_| real(3, 30));
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("code 3 at 30"), "{bad:?}");
        assert!(bad[0].contains("code 255 at 50"), "{bad:?}");
        // A record without the exit (the durable exit went back) is a violation too.
        let bad = f.judge(&[rec(running(), 60, true)], |_| real(3, 30));
        assert!(bad[0].contains("loaded at 60 says no exit"), "{bad:?}");
    }

    #[test]
    fn the_first_real_code_must_be_a_real_exit() {
        let wrong = running().with_exit(ExitStatus::real(137, 30));
        let mut f = FirstExits::default();
        let bad = f.judge(&[rec(wrong.clone(), 31, false)], |_| real(3, 30));
        assert!(
            bad[0].contains("none of its real exits [(3, 30)]"),
            "{bad:?}"
        );
        // A lost exit is judged by the final checks, not here.
        let lost = running().with_exit(ExitStatus::lost(50));
        let mut f = FirstExits::default();
        assert!(f.judge(&[rec(lost, 51, false)], |_| Vec::new()).is_empty());
        let mut f = FirstExits::default();
        assert!(
            f.judge(&[rec(wrong, 31, false)], |_| real(137, 30))
                .is_empty()
        );
    }
}
