//! Transcripts of ExecSync (docs/containerd-behaviour.md §11, docs/architecture.md §3.9),
//! checked by insta: output and codes, the timeout (kill, then DeadlineExceeded), an exit
//! of the container during an exec, an exec of a container that does not run, failures of
//! each call, and a crash during an exec swept by recovery.

use std::time::Duration;

use berth_core::testing::{CallFault, FakeNode};
use berth_core::*;

fn cid(s: &str) -> ContainerId {
    ContainerId::new(s).unwrap()
}

fn xid(n: u32) -> ExecId {
    ExecId::new(format!("{EXEC_ID_PREFIX}{n}")).unwrap()
}

fn exec(n: u32, cmd: &[&str], timeout_s: u64) -> Command {
    Command::ExecSync {
        id: cid("c1"),
        exec_id: xid(n),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        timeout: Duration::from_secs(timeout_s),
    }
}

fn running_world() -> FakeNode {
    let mut w = FakeNode::new();
    w.run_pod("pod1", "web").unwrap();
    w.create("c1", "pod1", "app").unwrap();
    w.start("c1").unwrap();
    w.transcript.clear();
    w
}

fn check(w: &FakeNode) {
    w.machine.check_invariants().unwrap();
}

/// Nothing of the exec is left: no process alive, none undeleted, none in the core.
fn nothing_left(w: &FakeNode) {
    assert!(w.execs.is_empty(), "exec processes left: {:?}", w.execs);
    assert_eq!(w.machine.execs().count(), 0);
    check(w);
}

fn output(code: i32, stdout: &str) -> Result<Response, CommandError> {
    Ok(Response::ExecSync(ExecOutput {
        exit_code: code,
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
    }))
}

#[test]
fn exec_answers_output_and_any_exit_code() {
    let mut w = running_world();
    assert_eq!(w.run(exec(1, &["echo", "hi"], 0)), output(0, "hi\n"));
    nothing_left(&w);
    // A non-zero code is an answer, not an error.
    assert_eq!(w.run(exec(2, &["sh", "-c", "exit 3"], 5)), output(3, ""));
    nothing_left(&w);
    insta::assert_snapshot!(w.transcript_text());
}

#[test]
fn exec_output_is_capped() {
    let mut w = FakeNode::with_config(Config {
        exec_output_cap: 4,
        ..Config::default()
    });
    w.run_pod("pod1", "web").unwrap();
    w.create("c1", "pod1", "app").unwrap();
    w.start("c1").unwrap();
    assert_eq!(w.run(exec(1, &["echo", "hello"], 0)), output(0, "hell"));
    nothing_left(&w);
}

#[test]
fn exec_past_its_timeout_is_killed_then_deadline_exceeded() {
    let mut w = running_world();
    let req = w.command(exec(1, &["sleep", "4321"], 1));
    w.settle();
    assert!(!w.replies.contains_key(&req), "answered before the timeout");
    assert_eq!(w.live_execs().len(), 1);
    w.advance(Duration::from_secs(1));
    w.settle();
    let reply = w.replies.get(&req).cloned().expect("answered");
    let e = reply.expect_err("a timeout is an error");
    assert_eq!(e.code(), ErrorCode::DeadlineExceeded);
    let msg = e.to_string();
    assert!(
        msg.contains("c1") && msg.contains("timeout 1s exceeded"),
        "{msg}"
    );
    assert!(w.live_execs().is_empty(), "the sleep survived its timeout");
    nothing_left(&w);
    insta::assert_snapshot!(w.transcript_text());
}

#[test]
fn container_exit_during_exec_ends_the_exec() {
    let mut w = running_world();
    let req = w.command(exec(1, &["sleep", "4321"], 0));
    w.settle();
    w.advance(Duration::from_millis(300));
    w.exit_task(&FakeNode::ct("c1"), 0);
    w.settle();
    // The exec process died with the container (pid namespace): SIGKILL's 137.
    assert_eq!(w.replies.get(&req).cloned(), Some(output(137, "")));
    assert_eq!(w.status("c1").unwrap().state(), ContainerState::Exited);
    nothing_left(&w);
    insta::assert_snapshot!(w.transcript_text());
}

#[test]
fn exec_of_a_container_that_does_not_run_is_refused() {
    let mut w = FakeNode::new();
    w.run_pod("pod1", "web").unwrap();
    w.create("c1", "pod1", "app").unwrap();
    w.transcript.clear();
    let created = w.run(exec(1, &["echo", "hi"], 0)).unwrap_err();
    assert_eq!(created.code(), ErrorCode::FailedPrecondition);
    assert!(
        created.to_string().contains("CONTAINER_CREATED"),
        "{created}"
    );
    w.start("c1").unwrap();
    w.exit_task(&FakeNode::ct("c1"), 0);
    w.settle();
    let exited = w.run(exec(2, &["echo", "hi"], 0)).unwrap_err();
    assert_eq!(exited.code(), ErrorCode::FailedPrecondition);
    assert!(
        exited
            .to_string()
            .contains("container c1: cannot exec in state CONTAINER_EXITED"),
        "{exited}"
    );
    let unknown = w
        .run(Command::ExecSync {
            id: cid("nope"),
            exec_id: xid(3),
            cmd: vec!["true".into()],
            timeout: Duration::ZERO,
        })
        .unwrap_err();
    assert_eq!(unknown.code(), ErrorCode::NotFound);
    let empty = w.run(exec(4, &[], 0)).unwrap_err();
    assert_eq!(empty.code(), ErrorCode::InvalidArgument);
    nothing_left(&w);
    insta::assert_snapshot!(w.transcript_text());
}

/// Each call of an exec failing: the answer comes only once the process is known dead, and
/// nothing is left behind.
#[test]
fn exec_calls_fail_at_each_step() {
    let mut out = String::new();
    type Setup = Box<dyn Fn(&mut FakeNode)>;
    let cases: Vec<(&str, Setup)> = vec![
        (
            "Tasks.Exec fails",
            Box::new(|w: &mut FakeNode| {
                w.fail_next("Tasks.Exec", CallFault::Before(BackendErrorKind::Other))
            }),
        ),
        (
            "Tasks.Exec reply lost (the process runs)",
            Box::new(|w: &mut FakeNode| w.fail_next("Tasks.Exec", CallFault::ReplyLost)),
        ),
        (
            "Tasks.Wait breaks (containerd restarting)",
            Box::new(|w: &mut FakeNode| {
                w.fail_next(
                    "Tasks.Wait",
                    CallFault::Before(BackendErrorKind::Unavailable),
                )
            }),
        ),
        (
            "Tasks.DeleteProcess unavailable twice",
            Box::new(|w: &mut FakeNode| {
                w.fail_next(
                    "Tasks.DeleteProcess",
                    CallFault::Before(BackendErrorKind::Unavailable),
                );
                w.fail_next("Tasks.DeleteProcess", CallFault::ReplyLost);
            }),
        ),
        (
            "Tasks.Kill of the timed-out exec unavailable",
            Box::new(|w: &mut FakeNode| {
                w.fail_next(
                    "Tasks.Kill",
                    CallFault::Before(BackendErrorKind::Unavailable),
                )
            }),
        ),
    ];
    for (name, setup) in cases {
        let mut w = running_world();
        setup(&mut w);
        let req = w.command(exec(1, &["sleep", "4321"], 2));
        let mut answered_with_live_exec = false;
        for _ in 0..30 {
            w.settle();
            if w.replies.contains_key(&req) {
                answered_with_live_exec |= !w.live_execs().is_empty();
            }
            if w.machine.execs().count() == 0 || !w.advance_to_next_timer() {
                break;
            }
        }
        assert!(
            !answered_with_live_exec,
            "{name}: answered with its exec alive"
        );
        let reply = w.replies.get(&req).cloned();
        assert!(
            matches!(&reply, Some(Err(_))),
            "{name}: expected an error, got {reply:?}"
        );
        nothing_left(&w);
        out.push_str(&format!("## {name}\n{}\n", w.transcript_text()));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn crash_during_exec_then_recovery_sweeps_it() {
    let mut w = running_world();
    let req = w.command(exec(1, &["sleep", "4321"], 0));
    w.settle();
    assert_eq!(w.live_execs().len(), 1);
    w.crash_and_recover(|_| None);
    // Recovery is not held up by the sweep.
    assert!(!w.machine.is_recovering());
    assert_eq!(w.machine.exec_sweeps_pending().count(), 1);
    // An exec that arrives meanwhile waits for the sweep, which would kill it.
    let late = w.command(exec(2, &["echo", "after"], 0));
    assert_eq!(
        w.machine.exec(&xid(2)).map(Exec::state),
        Some(ExecState::Queued)
    );
    w.settle();
    assert!(
        w.live_execs().is_empty(),
        "the crashed berth's exec lives on"
    );
    assert!(
        !w.replies.contains_key(&req),
        "a request of the dead berth got an answer"
    );
    assert_eq!(w.replies.get(&late).cloned(), Some(output(0, "after\n")));
    assert_eq!(w.machine.exec_sweeps_pending().count(), 0);
    nothing_left(&w);
    insta::assert_snapshot!(w.transcript_text());
}

#[test]
fn failed_sweep_is_retried() {
    let mut w = running_world();
    w.command(exec(1, &["sleep", "4321"], 0));
    w.settle();
    w.fail_next(
        "Tasks.ListPids",
        CallFault::Before(BackendErrorKind::Unavailable),
    );
    w.crash_and_recover(|_| None);
    w.settle();
    assert_eq!(w.live_execs().len(), 1);
    assert_eq!(w.machine.exec_sweeps_pending().count(), 1);
    check(&w);
    assert!(w.advance_to_next_timer());
    w.settle();
    assert!(w.live_execs().is_empty());
    nothing_left(&w);
}

#[test]
fn several_execs_run_at_once_and_a_stop_ends_them() {
    let mut w = running_world();
    let a = w.command(exec(1, &["sleep", "10"], 0));
    let b = w.command(exec(2, &["sleep", "10"], 0));
    w.settle();
    assert_eq!(w.live_execs().len(), 2);
    let stop = w.command(Command::StopContainer {
        id: cid("c1"),
        timeout: Duration::ZERO,
    });
    w.settle();
    assert_eq!(w.replies.get(&stop).cloned(), Some(Ok(Response::Done)));
    assert_eq!(w.replies.get(&a).cloned(), Some(output(137, "")));
    assert_eq!(w.replies.get(&b).cloned(), Some(output(137, "")));
    nothing_left(&w);
}
