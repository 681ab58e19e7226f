//! No exit lost: every process exit that really happened (on its own, by a signal, or at
//! the harness's order) is recorded with its real code and time, unless its shim died
//! before berth could read it (then berth may record the lost exit: 255 "Unknown"), or the
//! start that ran it failed (then berth records the failed start: 128 "StartError", or keeps
//! the container CREATED and may start it again), or the exit is berth's own kill of a task it
//! was deleting.

use berth_core::{ContainerState, START_ERROR_REASON, UNKNOWN_REASON};
use berth_service::ContainerView;
use berth_simbackend::{ExitCause, Truth};

use super::describe;
use super::truth::finish_matches;

/// Every lost or misrecorded exit. `promised` says whether berth promised that a process
/// of a container (by task serial and pid) ran: its start was acknowledged or berth listed it
/// RUNNING. The exit of a process berth never promised (its start failed or was never
/// answered) need not be recorded with its code: berth may keep the container CREATED and
/// start it again, hold it UNKNOWN, or, after a crash found the failed start's RUNNING
/// record with the task its rollback deleted, record the exit as lost. If berth records a
/// code, it must be the real one.
pub fn no_exit_lost(
    containers: &[ContainerView],
    truth: &Truth,
    promised: impl Fn(&berth_core::ContainerId, u64, u32) -> bool,
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
                        ExitCause::Planned
                            | ExitCause::ExitNow
                            | ExitCause::Signal(_)
                            | ExitCause::Handled(_)
                            | ExitCause::OomKilled
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
        let recorded_code = v.state == ContainerState::Exited
            && (s.reason.is_empty() || s.reason == berth_core::OOM_REASON);
        if !recorded_code && !promised(&v.meta.id, last.task, last.pid) {
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
            ContainerState::Exited if s.reason.is_empty() || s.reason == berth_core::OOM_REASON => {
                let oom = s.reason == berth_core::OOM_REASON;
                if s.exit_code != last.code
                    || !finish_matches(v, last)
                    || oom != (last.cause == ExitCause::OomKilled)
                {
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
            _ => bad.push(format!(
                "exit not recorded: container {id} is {what} but {real}"
            )),
        }
    }
    bad
}
