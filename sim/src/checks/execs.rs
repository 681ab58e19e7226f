//! ExecSync (docs/architecture.md §3.9): no exec process of berth's runs once its request
//! was answered, an answer agrees with the exec's plan, DeadlineExceeded only past the
//! timeout (and, with faults off, only for a plan that outlives it), and once the run has
//! settled no exec process of berth's is left, alive or undeleted (an exec whose request
//! died with a berth incarnation included: recovery's sweep must have taken it).

use std::time::Duration;

use berth_core::{CommandError, ErrorCode, ExecOutput};
use berth_service::ServiceError;
use berth_simbackend::{ExecPlan, ExecTruth, Truth};

/// Leeway between the timeout and a plan's end for the fault-free checks: the exec's
/// process starts a call latency before berth's timer is armed.
const MARGIN: Duration = Duration::from_millis(500);

/// One ExecSync as the client saw it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The container.
    pub container: &'a str,
    /// The plan its command carries.
    pub plan: ExecPlan,
    /// Its timeout (zero: none).
    pub timeout: Duration,
    /// berth's output cap.
    pub cap: usize,
    /// The simulated containerd's drain bound.
    pub drain_bound: Duration,
    /// Sent and answered (unix ns).
    pub sent: i64,
    /// Answered (unix ns).
    pub answered: i64,
    /// No fault could touch it (faults were off from its sending to its answer).
    pub faults_off: bool,
}

/// The exec processes of `req` in the truth: its container's, with its plan (tags make
/// plans unique per request).
fn processes_of<'a>(req: &Request<'_>, execs: &'a [ExecTruth]) -> Vec<&'a ExecTruth> {
    execs
        .iter()
        .filter(|e| e.container == req.container && e.plan == req.plan && e.is_berths())
        .collect()
}

/// Checks one answered ExecSync against its plan and the truth at the moment of the answer.
pub fn answer(
    req: &Request<'_>,
    result: &Result<ExecOutput, ServiceError>,
    execs: &[ExecTruth],
) -> Result<(), String> {
    let c = req.container;
    let tag = req.plan.tag;
    if matches!(result, Err(ServiceError::Stopped)) {
        // berth died under the request: its exec is recovery's to sweep (`none_left`).
        return Ok(());
    }
    for e in processes_of(req, execs) {
        if e.alive() {
            return Err(format!(
                "exec {} (tag {tag}) of container {c} still runs after its ExecSync was answered {}",
                e.exec_id,
                show(result)
            ));
        }
    }
    let lasts = req.plan.answered_after(req.drain_bound);
    let outlives = !req.timeout.is_zero() && lasts.is_none_or(|d| d > req.timeout + MARGIN);
    let ends_in_time = req.timeout.is_zero() || lasts.is_some_and(|d| d + MARGIN < req.timeout);
    match result {
        Ok(out) => {
            if out.exit_code == 137 {
                // Killed: its container's init died meanwhile (or a delete of a broken
                // wait); the output it wrote at once is there all the same.
            } else if out.exit_code != req.plan.code || req.plan.exit_after.is_none() {
                return Err(format!(
                    "exec (tag {tag}) of container {c} answered code {} but its plan exits {:?}",
                    out.exit_code,
                    req.plan.exit_after.map(|_| req.plan.code)
                ));
            }
            let mut stdout = req.plan.stdout();
            let mut stderr = req.plan.stderr();
            stdout.truncate(req.cap);
            stderr.truncate(req.cap);
            if out.stdout != stdout || out.stderr != stderr {
                return Err(format!(
                    "exec (tag {tag}) of container {c} answered {}+{} bytes of output, its plan writes {}+{} (cap {})",
                    out.stdout.len(),
                    out.stderr.len(),
                    stdout.len(),
                    stderr.len(),
                    req.cap
                ));
            }
            if req.faults_off && outlives && out.exit_code != 137 {
                return Err(format!(
                    "exec (tag {tag}) of container {c} answered code {} although its plan outlives its timeout {:?}",
                    out.exit_code, req.timeout
                ));
            }
        }
        Err(ServiceError::Command(e)) if e.code() == ErrorCode::DeadlineExceeded => {
            let took = Duration::from_nanos(u64::try_from(req.answered - req.sent).unwrap_or(0));
            if let CommandError::ExecTimeout { .. } = e {
                if req.timeout.is_zero() || took < req.timeout {
                    return Err(format!(
                        "exec (tag {tag}) of container {c} answered DeadlineExceeded after {took:?}, before its timeout {:?}",
                        req.timeout
                    ));
                }
                if req.faults_off && ends_in_time {
                    return Err(format!(
                        "exec (tag {tag}) of container {c} answered DeadlineExceeded although its plan is answered within {lasts:?} < timeout {:?}",
                        req.timeout
                    ));
                }
            }
        }
        Err(_) => {}
    }
    Ok(())
}

fn show(result: &Result<ExecOutput, ServiceError>) -> String {
    match result {
        Ok(out) => format!("with code {}", out.exit_code),
        Err(e) => format!("with an error: {e}"),
    }
}

/// How long after a berth incarnation finished recovering an exec process of a dead one
/// may still run: recovery's sweep runs in the background and is retried with back-off
/// (capped at 5 s in the simulator) through faults, hung calls (10 s deadlines) and
/// containerd outages.
pub const SWEEP_BOUND: Duration = Duration::from_secs(30);

/// One berth incarnation's start and readiness (unix ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incarnation {
    /// When it started (recovery began).
    pub started: i64,
    /// When it finished recovering, if it has.
    pub ready: Option<i64>,
}

/// No exec process that a dead berth incarnation started runs `bound` after the current
/// incarnation finished recovering (its sweep must have killed it). `incarnations` in start
/// order; `now` in unix ns.
pub fn swept_in_time(
    execs: &[ExecTruth],
    incarnations: &[Incarnation],
    now: i64,
    bound: Duration,
) -> Result<(), String> {
    let Some(current) = incarnations.last() else {
        return Ok(());
    };
    let Some(ready) = current.ready else {
        return Ok(());
    };
    let bound_ns = i64::try_from(bound.as_nanos()).unwrap_or(i64::MAX);
    if now < ready.saturating_add(bound_ns) {
        return Ok(());
    }
    match execs
        .iter()
        .find(|e| e.is_berths() && e.alive() && e.started_at < current.started)
    {
        Some(e) => Err(format!(
            "exec {} of container {} (started at {}, before berth incarnation {} began at {}) still runs {bound:?} after that incarnation finished recovering at {ready}",
            e.exec_id,
            e.container,
            e.started_at,
            incarnations.len(),
            current.started
        )),
        None => Ok(()),
    }
}

/// Once the run has settled: no exec process of berth's alive or undeleted.
pub fn none_left(truth: &Truth) -> Vec<String> {
    truth
        .execs_left()
        .filter(|e| e.is_berths())
        .map(|e| {
            format!(
                "exec {} of container {} (started at {}) left behind: {}",
                e.exec_id,
                e.container,
                e.started_at,
                if e.alive() {
                    "still running".to_owned()
                } else {
                    format!("exited {:?} but never deleted", e.code)
                }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(plan: ExecPlan, timeout_s: u64, took_s: i64, faults_off: bool) -> Request<'static> {
        Request {
            container: "c1",
            plan,
            timeout: Duration::from_secs(timeout_s),
            cap: 4,
            drain_bound: Duration::from_secs(2),
            sent: 0,
            answered: took_s * 1_000_000_000,
            faults_off,
        }
    }

    fn truth_of(plan: ExecPlan, alive: bool) -> ExecTruth {
        ExecTruth {
            container: "c1".into(),
            exec_id: format!("{}1", berth_core::EXEC_ID_PREFIX),
            task: 1,
            pid: 7,
            plan,
            started_at: 0,
            exited_at: (!alive).then_some(1),
            code: (!alive).then_some(137),
            end: None,
            deleted: !alive,
        }
    }

    fn timeout_error() -> Result<ExecOutput, ServiceError> {
        Err(ServiceError::Command(CommandError::ExecTimeout {
            id: berth_core::ContainerId::new("c1").unwrap(),
            exec_id: berth_core::ExecId::new(format!("{}1", berth_core::EXEC_ID_PREFIX)).unwrap(),
            timeout: Duration::from_secs(1),
        }))
    }

    #[test]
    fn an_exec_alive_after_its_answer_is_caught() {
        let plan = ExecPlan::forever().tagged(3);
        let r = req(plan, 1, 1, true);
        let v = answer(&r, &timeout_error(), &[truth_of(plan, true)]).unwrap_err();
        assert!(
            v.contains("still runs after its ExecSync was answered"),
            "{v}"
        );
        assert_eq!(
            answer(&r, &timeout_error(), &[truth_of(plan, false)]),
            Ok(())
        );
        // Another request's process (another tag) is not this one's.
        assert_eq!(
            answer(&r, &timeout_error(), &[truth_of(plan.tagged(4), true)]),
            Ok(())
        );
    }

    #[test]
    fn answers_must_follow_the_plan() {
        let plan = ExecPlan::exit(Duration::from_millis(10), 3).printing(6, 1);
        let r = req(plan, 5, 0, true);
        let good = ExecOutput {
            exit_code: 3,
            stdout: b"abcd".to_vec(),
            stderr: b"A".to_vec(),
        };
        assert_eq!(answer(&r, &Ok(good.clone()), &[]), Ok(()));
        let uncapped = ExecOutput {
            stdout: b"abcdef".to_vec(),
            ..good.clone()
        };
        assert!(answer(&r, &Ok(uncapped), &[]).is_err());
        let wrong = ExecOutput {
            exit_code: 0,
            ..good
        };
        assert!(answer(&r, &Ok(wrong), &[]).is_err());
        // DeadlineExceeded for a plan that ends well within its timeout, faults off.
        assert!(answer(&req(plan, 5, 5, true), &timeout_error(), &[]).is_err());
        assert_eq!(
            answer(&req(plan, 5, 5, false), &timeout_error(), &[]),
            Ok(())
        );
        // Never before the timeout.
        let forever = ExecPlan::forever();
        assert!(answer(&req(forever, 5, 2, false), &timeout_error(), &[]).is_err());
        assert_eq!(
            answer(&req(forever, 5, 5, true), &timeout_error(), &[]),
            Ok(())
        );
    }

    #[test]
    fn an_exec_of_a_dead_incarnation_must_be_swept_in_time() {
        let e = truth_of(ExecPlan::forever(), true);
        let incs = [
            Incarnation {
                started: 0,
                ready: Some(0),
            },
            Incarnation {
                started: 10,
                ready: Some(20),
            },
        ];
        let bound = Duration::from_nanos(100);
        assert!(swept_in_time(std::slice::from_ref(&e), &incs, 120, bound).is_err());
        // Within the bound, or not yet ready: nothing to say.
        assert_eq!(
            swept_in_time(std::slice::from_ref(&e), &incs, 119, bound),
            Ok(())
        );
        let recovering = [
            incs[0],
            Incarnation {
                started: 10,
                ready: None,
            },
        ];
        assert_eq!(
            swept_in_time(std::slice::from_ref(&e), &recovering, 500, bound),
            Ok(())
        );
        // Started by the current incarnation: its own request's business.
        let mine = ExecTruth {
            started_at: 15,
            ..e
        };
        assert_eq!(swept_in_time(&[mine], &incs, 500, bound), Ok(()));
    }

    #[test]
    fn leftovers_after_the_heal_are_caught() {
        let mut truth_plan = truth_of(ExecPlan::forever(), true);
        let truth = Truth {
            now: 0,
            containerd_up: true,
            restarts: Vec::new(),
            records: Default::default(),
            tasks: Default::default(),
            shims: Default::default(),
            exits: Vec::new(),
            shim_deaths: Vec::new(),
            signals: Vec::new(),
            execs: vec![truth_plan.clone()],
        };
        assert_eq!(none_left(&truth).len(), 1);
        truth_plan.exited_at = Some(1);
        let mut t = truth.clone();
        t.execs = vec![truth_plan.clone()];
        assert!(none_left(&t)[0].contains("never deleted"));
        truth_plan.deleted = true;
        t.execs = vec![truth_plan];
        assert!(none_left(&t).is_empty());
    }
}
