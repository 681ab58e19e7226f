//! Graceful stop: a StopContainer with a grace period G sends the container's stop signal
//! first and SIGKILL only G after it (at once only for a zero grace period or an UNKNOWN
//! container). So a process that handles its stop signal within G ends with its own code,
//! never 137 (that berth then records that code is held by [`super::truth`]).
//!
//! Judged against the simulated containerd's log of the signals that reached each process
//! ([`berth_simbackend::SignalTruth`]) and the windows of the requests the clients sent:
//! every SIGKILL of `Tasks.Kill` that reached a container's process while a graceful stop
//! of it was in flight that berth went on to acknowledge must come at least G after a stop
//! signal reached that process, unless a request that kills at once was in flight too (a
//! stop with no grace period, a removal of the container, a stop or removal of its pod) or
//! the process started before the berth incarnation that killed it (recovery may have found
//! it UNKNOWN).

use std::time::Duration;

use berth_core::{SIGKILL, Target};
use berth_simbackend::SignalTruth;

/// A request that licenses a kill of a container's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// StopContainer with this grace period.
    Stop(Duration),
    /// RemoveContainer.
    Remove,
    /// StopPodSandbox (kills its containers at once).
    StopPod,
    /// RemovePodSandbox.
    RemovePod,
}

#[derive(Debug, Clone)]
struct Window {
    /// The container or pod id.
    object: String,
    request: Request,
    /// When it was sent (unix ns, the simulated containerd's clock).
    sent: i64,
    /// When it was answered, and whether OK.
    answered: Option<(i64, bool)>,
}

impl Window {
    fn in_flight(&self, at: i64) -> bool {
        self.sent <= at && self.answered.is_none_or(|(done, _)| at <= done)
    }
}

/// The requests that may kill a container's process, with the times they were in flight,
/// and when each berth incarnation started.
#[derive(Debug, Default)]
pub struct Requests {
    windows: Vec<Window>,
    incarnations: Vec<i64>,
}

/// One request in flight ([`Requests::sent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(usize);

impl Requests {
    /// `request` of `object` (a container id, or a pod id for the pod requests) is sent at
    /// `at`.
    pub fn sent(&mut self, object: &str, request: Request, at: i64) -> Token {
        self.windows.push(Window {
            object: object.to_owned(),
            request,
            sent: at,
            answered: None,
        });
        Token(self.windows.len() - 1)
    }

    /// The request's reply arrived at `at` (`ok`: it succeeded).
    pub fn answered(&mut self, token: Token, at: i64, ok: bool) {
        if let Some(w) = self.windows.get_mut(token.0) {
            w.answered = Some((at, ok));
        }
    }

    /// A berth incarnation started at `at`.
    pub fn berth_started(&mut self, at: i64) {
        self.incarnations.push(at);
    }

    /// True if a request that kills `id`'s process at once was in flight at `at`.
    fn forced(&self, id: &str, pod: &str, at: i64) -> bool {
        self.windows.iter().any(|w| {
            w.in_flight(at)
                && match w.request {
                    Request::Stop(g) => g.is_zero() && w.object == id,
                    Request::Remove => w.object == id,
                    Request::StopPod | Request::RemovePod => w.object == pod,
                }
        })
    }

    /// The shortest grace period of the stops of `id` in flight at `at` that berth
    /// acknowledged.
    fn acked_grace(&self, id: &str, at: i64) -> Option<Duration> {
        self.windows
            .iter()
            .filter(|w| w.object == id && w.in_flight(at))
            .filter(|w| w.answered.is_some_and(|(_, ok)| ok))
            .filter_map(|w| match w.request {
                Request::Stop(g) if !g.is_zero() => Some(g),
                _ => None,
            })
            .min()
    }

    /// When the incarnation serving at `at` started.
    fn incarnation_at(&self, at: i64) -> Option<i64> {
        self.incarnations.iter().copied().filter(|s| *s <= at).max()
    }
}

/// Every SIGKILL that broke a graceful stop's promise (see the module docs), as violations.
pub fn stop_signal_first(signals: &[SignalTruth], requests: &Requests) -> Vec<String> {
    let mut bad = Vec::new();
    for kill in signals {
        let Target::Container(id) = &kill.target else {
            continue;
        };
        if kill.signal != SIGKILL || kill.by_delete {
            continue;
        }
        let (id, at) = (id.as_str(), kill.at);
        let Some(grace) = requests.acked_grace(id, at) else {
            continue;
        };
        if requests.forced(id, kill.pod.as_str(), at)
            || requests
                .incarnation_at(at)
                .is_none_or(|began| kill.started_at < began)
        {
            continue;
        }
        let first_stop_signal = signals
            .iter()
            .filter(|s| s.task == kill.task && !s.by_delete && s.signal != SIGKILL)
            .map(|s| s.at)
            .filter(|s| *s <= at)
            .min();
        let grace_ns = i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX);
        match first_stop_signal {
            None => bad.push(format!(
                "graceful stop ({grace:?}) of {id}: SIGKILL reached its process {} at {at} \
                 before any stop signal",
                kill.pid
            )),
            Some(s) if at - s < grace_ns => bad.push(format!(
                "graceful stop ({grace:?}) of {id}: SIGKILL reached its process {} at {at}, \
                 {:?} after its stop signal",
                kill.pid,
                Duration::from_nanos(u64::try_from(at - s).unwrap_or(0))
            )),
            Some(_) => {}
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{ContainerId, SandboxId};

    const MS: i64 = 1_000_000;

    fn signal(id: &str, signal: i32, at: i64) -> SignalTruth {
        SignalTruth {
            target: Target::Container(ContainerId::new(id).unwrap()),
            pod: SandboxId::new("pod").unwrap(),
            task: 1,
            pid: 1000,
            started_at: 10 * MS,
            signal,
            at,
            by_delete: false,
        }
    }

    fn stop(r: &mut Requests, id: &str, grace_ms: u64, sent: i64, done: i64) {
        let t = r.sent(id, Request::Stop(Duration::from_millis(grace_ms)), sent);
        r.answered(t, done, true);
    }

    #[test]
    fn sigkill_before_the_grace_period_is_a_violation() {
        let mut r = Requests::default();
        r.berth_started(0);
        stop(&mut r, "c1", 500, 100 * MS, 700 * MS);
        let ok = [signal("c1", 15, 100 * MS), signal("c1", 9, 600 * MS)];
        assert!(stop_signal_first(&ok, &r).is_empty());
        let early = [signal("c1", 15, 100 * MS), signal("c1", 9, 200 * MS)];
        let bad = stop_signal_first(&early, &r);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("100ms after its stop signal"), "{bad:?}");
        let first = [signal("c1", 9, 600 * MS)];
        assert!(stop_signal_first(&first, &r)[0].contains("before any stop signal"));
    }

    #[test]
    fn a_kill_at_once_is_licensed_by_its_own_request_or_recovery() {
        let early = [signal("c1", 15, 100 * MS), signal("c1", 9, 200 * MS)];
        // A zero-grace stop, a removal, a pod stop in flight: SIGKILL at once is asked for.
        for (object, request) in [
            ("c1", Request::Stop(Duration::ZERO)),
            ("c1", Request::Remove),
            ("pod", Request::StopPod),
            ("pod", Request::RemovePod),
        ] {
            let mut r = Requests::default();
            r.berth_started(0);
            stop(&mut r, "c1", 500, 100 * MS, 700 * MS);
            r.sent(object, request, 150 * MS);
            assert!(stop_signal_first(&early, &r).is_empty(), "{request:?}");
        }
        // A process started before the incarnation that killed it may be UNKNOWN to it.
        let mut r = Requests::default();
        r.berth_started(0);
        r.berth_started(50 * MS);
        stop(&mut r, "c1", 500, 100 * MS, 700 * MS);
        assert!(stop_signal_first(&early, &r).is_empty());
        // A stop that failed promised nothing; another container's requests license nothing.
        let mut r = Requests::default();
        r.berth_started(0);
        let t = r.sent("c1", Request::Stop(Duration::from_millis(500)), 100 * MS);
        r.answered(t, 700 * MS, false);
        assert!(stop_signal_first(&early, &r).is_empty());
        stop(&mut r, "c1", 500, 100 * MS, 700 * MS);
        r.sent("c2", Request::Remove, 150 * MS);
        assert_eq!(stop_signal_first(&early, &r).len(), 1);
    }
}
