//! No exit lost: every process exit that really happened (on its own, by a signal, or at
//! the harness's order) is recorded with its real code and time, unless its shim died
//! before berth could read it (then berth may record the lost exit: 255 "Unknown"), or the
//! start that ran it failed (then berth records the failed start: 128 "StartError"), or the
//! exit is berth's own kill of a task it was deleting.

use berth_core::{ContainerState, START_ERROR_REASON, UNKNOWN_REASON};
use berth_service::ContainerView;
use berth_simbackend::{ExitCause, Truth};

use super::describe;
use super::truth::finish_matches;

/// Every lost or misrecorded exit. `start_acked` says whether a start of a container was
/// acknowledged (an exit of a process whose start failed need not be recorded).
pub fn no_exit_lost(
    containers: &[ContainerView],
    truth: &Truth,
    start_acked: impl Fn(&berth_core::ContainerId) -> bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    for v in containers {
        let id = v.meta.id.as_str();
        let Some(last) = truth
            .exits_of(id)
            .filter(|e| {
                e.started
                    && matches!(
                        e.cause,
                        ExitCause::Planned | ExitCause::ExitNow | ExitCause::Signal(_)
                    )
            })
            .last()
        else {
            continue;
        };
        let s = &v.status;
        if s.reason == START_ERROR_REASON {
            continue;
        }
        let what = describe(v.state, s);
        let real = format!(
            "its process (pid {}) exited {} at {} ({:?}{})",
            last.pid,
            last.code,
            last.exited_at,
            last.cause,
            if last.shim_died {
                ", then its shim died"
            } else {
                ""
            }
        );
        match v.state {
            ContainerState::Exited if s.reason.is_empty() => {
                if s.exit_code != last.code || !finish_matches(v, last) {
                    bad.push(format!("container {id} recorded {what} but {real}"));
                }
            }
            ContainerState::Exited if s.reason == UNKNOWN_REASON => {
                if !last.shim_died {
                    bad.push(format!(
                        "exit lost: container {id} recorded {what} but {real} and its shim lived"
                    ));
                }
            }
            ContainerState::Created if !start_acked(&v.meta.id) => {}
            _ => bad.push(format!(
                "exit not recorded: container {id} is {what} but {real}"
            )),
        }
    }
    bad
}
