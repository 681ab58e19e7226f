//! Readable transcripts of the lifecycle, checked by insta: StartContainer succeeding and
//! failing at each step (docs/containerd-behaviour.md §4.2), Stop racing Start, exits around
//! recovery, and the
//! whole recovery decision table (docs/containerd-behaviour.md §6.4).

use std::time::Duration;

use berth_core::testing::{CallFault, FakeNode, FakeTask};
use berth_core::*;

fn cid(s: &str) -> ContainerId {
    ContainerId::new(s).unwrap()
}

fn running_world() -> FakeNode {
    let mut w = FakeNode::new();
    w.run_pod("pod1", "web").unwrap();
    w.create("c1", "pod1", "app").unwrap();
    w.transcript.clear();
    w
}

fn check(w: &FakeNode) {
    w.machine.check_invariants().unwrap();
}

#[test]
fn start_succeeds_then_exits_and_is_removed() {
    let mut w = running_world();
    assert_eq!(w.start("c1"), Ok(Response::Done));
    w.advance(Duration::from_millis(1500));
    w.exit_task(&FakeNode::ct("c1"), 42);
    w.settle();
    let s = w.status("c1").unwrap();
    assert_eq!((s.state(), s.exit_code), (ContainerState::Exited, 42));
    assert_eq!(
        w.run(Command::RemoveContainer(cid("c1"))),
        Ok(Response::Done)
    );
    assert!(w.status("c1").is_none());
    assert!(w.tasks.is_empty() || !w.tasks.contains_key(&FakeNode::ct("c1")));
    check(&w);
    insta::assert_snapshot!(w.transcript_text());
}

/// One transcript per failing step; each ends with the container EXITED 128 StartError
/// (or CREATED if even that record could not be written) and no task left behind.
#[test]
fn start_fails_at_each_step() {
    let mut out = String::new();
    type Setup = Box<dyn Fn(&mut FakeNode)>;
    let cases: Vec<(&str, Setup)> = vec![
        (
            "Tasks.Create fails",
            Box::new(|w: &mut FakeNode| {
                w.fail_next("Tasks.Create", CallFault::Before(BackendErrorKind::Other))
            }),
        ),
        (
            "Tasks.Create reply lost (task exists)",
            Box::new(|w: &mut FakeNode| w.fail_next("Tasks.Create", CallFault::ReplyLost)),
        ),
        (
            "Tasks.Start fails",
            Box::new(|w: &mut FakeNode| {
                w.fail_next("Tasks.Start", CallFault::Before(BackendErrorKind::Other))
            }),
        ),
        (
            "Tasks.Start times out after starting",
            Box::new(|w: &mut FakeNode| w.fail_next("Tasks.Start", CallFault::ReplyLost)),
        ),
        (
            "persist of the start fails",
            Box::new(|w: &mut FakeNode| w.fail_persists(1)),
        ),
        (
            "persist fails and the rollback record too",
            Box::new(|w: &mut FakeNode| w.fail_persists(2)),
        ),
        (
            "Tasks.Start fails and R2's delete fails (task cleaned up later)",
            Box::new(|w: &mut FakeNode| {
                w.fail_next("Tasks.Start", CallFault::ReplyLost);
                w.fail_next(
                    "Tasks.Delete",
                    CallFault::Before(BackendErrorKind::DeadlineExceeded),
                );
            }),
        ),
    ];
    for (name, setup) in cases {
        let mut w = running_world();
        setup(&mut w);
        let r = w.start("c1");
        assert!(r.is_err(), "{name}: start must fail");
        // Let background retries run out.
        for _ in 0..5 {
            if !w.advance_to_next_timer() {
                break;
            }
            w.settle();
        }
        let s = w.status("c1").unwrap();
        assert!(
            matches!(s.state(), ContainerState::Exited | ContainerState::Created),
            "{name}: {s:?}"
        );
        if s.state() == ContainerState::Exited {
            assert_eq!(
                (s.exit_code, s.reason.as_str()),
                (128, "StartError"),
                "{name}"
            );
        }
        assert!(
            !matches!(
                w.tasks.get(&FakeNode::ct("c1")),
                Some(FakeTask::Running(_) | FakeTask::Created(_))
            ),
            "{name}: a task survived the failed start"
        );
        assert_eq!(
            w.disk.get(&cid("c1")),
            Some(&s),
            "{name}: memory follows the disk"
        );
        check(&w);
        out.push_str(&format!("## {name}\n{}\n", w.transcript_text()));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn stop_racing_start_ends_stopped() {
    let mut w = running_world();
    let start = w.command(Command::StartContainer(cid("c1")));
    // The stop arrives while Tasks.Create is in flight.
    let stop = w.command(Command::StopContainer {
        id: cid("c1"),
        timeout: Duration::from_secs(10),
    });
    assert!(
        !w.replies.contains_key(&stop),
        "stop must wait for the start"
    );
    w.settle();
    assert_eq!(w.replies.get(&start), Some(&Ok(Response::Done)));
    assert_eq!(w.replies.get(&stop), Some(&Ok(Response::Done)));
    let s = w.status("c1").unwrap();
    assert_eq!(s.state(), ContainerState::Exited);
    assert_eq!(s.exit_code, 143, "stopped by SIGTERM");
    check(&w);
    insta::assert_snapshot!(w.transcript_text());
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let mut w = running_world();
    w.start("c1").unwrap();
    w.ignores_term.insert(FakeNode::ct("c1"));
    let stop = w.command(Command::StopContainer {
        id: cid("c1"),
        timeout: Duration::from_secs(30),
    });
    w.settle();
    assert!(!w.replies.contains_key(&stop));
    // A second stop does not send the signal again.
    let again = w.command(Command::StopContainer {
        id: cid("c1"),
        timeout: Duration::from_secs(30),
    });
    w.settle();
    w.advance(Duration::from_secs(30));
    w.settle();
    assert_eq!(w.replies.get(&stop), Some(&Ok(Response::Done)));
    assert_eq!(w.replies.get(&again), Some(&Ok(Response::Done)));
    assert_eq!(w.status("c1").unwrap().exit_code, 137);
    let kills = w
        .transcript
        .iter()
        .filter(|l| l.contains("Tasks.Kill"))
        .count();
    assert_eq!(
        kills,
        2,
        "one SIGTERM, one SIGKILL:\n{}",
        w.transcript_text()
    );
    check(&w);
    insta::assert_snapshot!(w.transcript_text());
}

fn mem(mb: i64) -> Resources {
    Resources {
        memory_limit_in_bytes: mb << 20,
        ..Resources::default()
    }
}

fn update(id: &str, mb: i64) -> Command {
    Command::UpdateContainerResources {
        id: cid(id),
        resources: mem(mb),
    }
}

/// Takes the pending call with `verb` out of the world: it is in flight until
/// [`answer_held`] gives its result.
fn hold_call(w: &mut FakeNode, verb: &str) -> (OpId, Call) {
    let i = w
        .pending
        .iter()
        .position(|e| matches!(e, Effect::Call { call, .. } if call.verb() == verb))
        .unwrap_or_else(|| panic!("no {verb} pending:\n{}", w.transcript_text()));
    match w.pending.remove(i) {
        Effect::Call { op, call } => {
            w.transcript.push(format!(
                "  call {op} {verb} {} -> (in flight)",
                call.target()
            ));
            (op, call)
        }
        _ => unreachable!("position() matched a call"),
    }
}

/// Delivers the result of a call taken out by [`hold_call`], whose effect on the fake
/// containerd `apply` stands for.
fn answer_held(
    w: &mut FakeNode,
    (op, call): (OpId, Call),
    result: Result<CallResult, BackendError>,
) {
    let shown = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("error {}: {}", e.kind, e.message),
    };
    w.transcript.push(format!(
        "  call {op} {} {} -> {shown} (its reply arrives now)",
        call.verb(),
        call.target()
    ));
    w.machine.handle_call(op, result, w.now);
    w.collect();
}

#[test]
fn update_resources_goes_to_the_record_or_the_task() {
    let mut w = running_world();
    // CREATED: Containers.Update of the record's spec, then the write, then the reply.
    assert_eq!(w.run(update("c1", 64)), Ok(Response::Done));
    assert_eq!(w.record_resources.get(&FakeNode::ct("c1")), Some(&mem(64)));
    w.start("c1").unwrap();
    // RUNNING: Tasks.Update of the task's cgroup.
    assert_eq!(w.run(update("c1", 32)), Ok(Response::Done));
    assert_eq!(w.task_resources.get(&FakeNode::ct("c1")), Some(&mem(32)));
    // A failing call: nothing is written, the guard is released, a retry goes through.
    w.fail_next("Tasks.Update", CallFault::Before(BackendErrorKind::Other));
    let e = w.run(update("c1", 16)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Internal);
    assert_eq!(w.disk[&cid("c1")].resources, Some(mem(32)));
    // A lost reply: containerd has the limits, berth records nothing; the retry does.
    w.fail_next("Tasks.Update", CallFault::ReplyLost);
    let e = w.run(update("c1", 16)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert_eq!(w.task_resources.get(&FakeNode::ct("c1")), Some(&mem(16)));
    assert_eq!(w.status("c1").unwrap().resources, Some(mem(32)));
    assert_eq!(w.run(update("c1", 16)), Ok(Response::Done));
    assert_eq!(w.disk[&cid("c1")].resources, Some(mem(16)));
    check(&w);
    insta::assert_snapshot!(w.transcript_text());
}

/// With the exit not held behind the update (a planted bug), the exit's write and the update's
/// are in flight at once: the invariants name it (the simulator and the property test rely on
/// this to catch the bug; the driver's queue alone would hide it).
#[cfg(feature = "planted-bugs")]
#[test]
fn overlapping_writes_of_one_record_break_the_invariants() {
    let mut w = FakeNode::with_config(Config {
        planted_bug: Some(PlantedBug::ExitNotHeldBehindUpdate),
        ..Config::default()
    });
    w.run_pod("pod1", "web").unwrap();
    w.create("c1", "pod1", "app").unwrap();
    w.start("c1").unwrap();
    w.command(update("c1", 8));
    let held = hold_call(&mut w, "Tasks.Update");
    w.task_resources.insert(FakeNode::ct("c1"), mem(8));
    w.exit_task(&FakeNode::ct("c1"), 3);
    // Run until the exit's write is handed out, and keep it in flight.
    while !w
        .pending
        .iter()
        .any(|e| matches!(e, Effect::Persist { .. }))
    {
        assert!(!w.pending.is_empty(), "the exit was never written");
        w.execute(0);
    }
    check(&w);
    answer_held(&mut w, held, Ok(CallResult::Done));
    let violation = w.machine.check_invariants().unwrap_err().to_string();
    assert!(
        violation.contains("two checkpoint writes of container c1 in flight"),
        "{violation}"
    );
}

/// The container's process exits while Tasks.Update is in flight: the exit waits for the
/// update (one write of a record at a time), whether the call then fails (the task has
/// exited) or succeeds (it took effect before the exit, its reply comes after).
#[test]
fn exit_while_tasks_update_is_in_flight() {
    let mut out = String::new();
    for late_reply in [false, true] {
        let mut w = running_world();
        w.start("c1").unwrap();
        w.transcript.clear();
        let req = w.command(update("c1", 8));
        let held = hold_call(&mut w, "Tasks.Update");
        if late_reply {
            // Applied before the exit; only the reply is late.
            w.task_resources.insert(FakeNode::ct("c1"), mem(8));
        }
        w.exit_task(&FakeNode::ct("c1"), 3);
        w.settle();
        assert!(
            !w.pending
                .iter()
                .any(|e| matches!(e, Effect::Persist { .. })),
            "the exit's write waits for the update"
        );
        assert_eq!(w.status("c1").unwrap().state(), ContainerState::Running);
        let result = if late_reply {
            Ok(CallResult::Done)
        } else {
            Err(BackendError::new(
                BackendErrorKind::NotFound,
                "Tasks.Update",
                "c1",
                "process already finished",
            ))
        };
        answer_held(&mut w, held, result);
        w.settle();
        let s = w.status("c1").unwrap();
        assert_eq!((s.state(), s.exit_code), (ContainerState::Exited, 3));
        if late_reply {
            assert_eq!(w.replies[&req], Ok(Response::Done));
            assert_eq!(s.resources, Some(mem(8)));
        } else {
            assert!(w.replies[&req].is_err());
            assert_eq!(s.resources, None);
        }
        assert_eq!(w.disk[&cid("c1")], s);
        check(&w);
        let name = if late_reply {
            "Tasks.Update took effect, its reply comes after the exit"
        } else {
            "Tasks.Update finds the task exited"
        };
        out.push_str(&format!("## {name}\n{}\n", w.transcript_text()));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn reopen_container_log_only_while_running() {
    let mut w = running_world();
    let e = w.run(Command::ReopenContainerLog(cid("c1"))).unwrap_err();
    assert_eq!(e.code(), ErrorCode::FailedPrecondition);
    w.start("c1").unwrap();
    assert_eq!(
        w.run(Command::ReopenContainerLog(cid("c1"))),
        Ok(Response::Done)
    );
    // The backend refuses (no log is being written): the reply says so.
    w.fail_next(
        "Logs.Reopen",
        CallFault::Before(BackendErrorKind::FailedPrecondition),
    );
    let e = w.run(Command::ReopenContainerLog(cid("c1"))).unwrap_err();
    assert_eq!(e.code(), ErrorCode::FailedPrecondition);
    w.exit_task(&FakeNode::ct("c1"), 0);
    w.settle();
    let e = w.run(Command::ReopenContainerLog(cid("c1"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container c1: cannot reopen its log in state CONTAINER_EXITED"
    );
    assert_eq!(w.log_reopens.get(&FakeNode::ct("c1")), Some(&1));
    check(&w);
    insta::assert_snapshot!(w.transcript_text());
}

#[test]
fn exit_arriving_during_recovery_is_recorded() {
    let mut w = running_world();
    // The start runs up to Tasks.Start; berth crashes before its persist.
    w.command(Command::StartContainer(cid("c1")));
    while !w
        .pending
        .iter()
        .any(|e| matches!(e, Effect::Persist { .. }))
    {
        w.execute(0);
    }
    w.crash_and_recover(|_| None);
    // Recovery found CREATED + a running task: it records RUNNING (persist pending) and
    // arms the watch only after that; the process exits in between.
    assert!(w.machine.is_recovering());
    let c1 = FakeNode::ct("c1");
    assert!(
        !w.pending
            .iter()
            .any(|e| matches!(e, Effect::Call { call: Call::WaitTask(t), .. } if *t == c1))
    );
    w.exit_task(&FakeNode::ct("c1"), 7);
    w.settle();
    let s = w.status("c1").unwrap();
    assert_eq!((s.state(), s.exit_code), (ContainerState::Exited, 7));
    assert!(!w.machine.is_recovering());
    check(&w);
    insta::assert_snapshot!(w.transcript_text());
}

#[test]
fn broken_wait_is_not_an_exit() {
    let mut w = running_world();
    w.start("c1").unwrap();
    w.restart_containerd();
    w.settle();
    assert_eq!(w.status("c1").unwrap().state(), ContainerState::Running);
    w.exit_task(&FakeNode::ct("c1"), 3);
    w.settle();
    assert_eq!(w.status("c1").unwrap().exit_code, 3);
    check(&w);
    insta::assert_snapshot!(w.transcript_text());
}

#[test]
fn exit_persisted_before_task_deleted_survives_a_crash_between() {
    let mut w = running_world();
    w.start("c1").unwrap();
    w.exit_task(&FakeNode::ct("c1"), 9);
    // Carry out only the exit's persist, then crash before the task delete.
    let i = w
        .pending
        .iter()
        .position(|e| matches!(e, Effect::Persist { .. }))
        .expect("exit persist emitted first");
    w.execute(i);
    assert!(
        w.pending.iter().any(|e| matches!(
            e,
            Effect::Call {
                call: Call::DeleteTask { .. },
                ..
            }
        )),
        "the task is deleted only after the exit is durable"
    );
    w.crash_and_recover(|_| None);
    w.settle();
    let s = w.status("c1").unwrap();
    assert_eq!((s.state(), s.exit_code), (ContainerState::Exited, 9));
    assert!(
        !w.tasks.contains_key(&FakeNode::ct("c1")),
        "stray task cleaned up"
    );
    check(&w);
}

const CHECKPOINTS: &[&str] = &[
    "CREATED",
    "RUNNING",
    "EXITED",
    "UNKNOWN (persisted)",
    "missing",
    "unreadable",
];

fn observed() -> Vec<(&'static str, Result<TaskState, BackendError>)> {
    let err = |k| BackendError::new(k, "Tasks.Get", "c1", "injected");
    vec![
        ("not found", Ok(TaskState::NotFound)),
        ("Created", Ok(TaskState::Created { pid: 300 })),
        ("Running", Ok(TaskState::Running { pid: 300 })),
        (
            "Stopped(5)",
            Ok(TaskState::Stopped(ExitStatus::real(
                5,
                testing::WALL_BASE + 50_000_000_000,
            ))),
        ),
        ("Paused", Ok(TaskState::Paused)),
        ("error", Err(err(BackendErrorKind::Unavailable))),
        ("timeout", Err(err(BackendErrorKind::DeadlineExceeded))),
    ]
}

fn checkpoint(name: &str) -> Result<Status, CheckpointProblem> {
    let base = testing::WALL_BASE;
    let created = Status::created(base + 1_000_000_000, None);
    let mut running = created.clone();
    running.started_at = base + 2_000_000_000;
    running.pid = 200;
    match name {
        "CREATED" => Ok(created),
        "RUNNING" => Ok(running),
        "EXITED" => Ok(running.with_exit(ExitStatus::real(3, base + 3_000_000_000))),
        "UNKNOWN (persisted)" => {
            let mut u = Status::unknown(base);
            u.started_at = base + 2_000_000_000;
            u.pid = 200;
            Ok(u)
        }
        "missing" => Err(CheckpointProblem::Missing),
        _ => Err(CheckpointProblem::Unreadable(
            "checkpoint is truncated".into(),
        )),
    }
}

/// Every (checkpoint, observed task) cell: the decision, then the record after the
/// recovery's effects ran in a world whose containerd matches the observation, then the
/// record after a second restart (berth: UNKNOWN never turns RUNNING).
#[test]
fn recovery_decision_table() {
    let now = testing::WALL_BASE + 100_000_000_000;
    let mut table = String::from(
        "checkpoint | task | decision | after recovery | after a 2nd restart\n---|---|---|---|---\n",
    );
    for cp_name in CHECKPOINTS {
        for (task_name, task) in observed() {
            let cp = checkpoint(cp_name);
            let d = decide(&cp, testing::WALL_BASE, &task, now);
            let mut actions = Vec::new();
            if d.persist {
                actions.push("persist");
            }
            if d.delete_created_task {
                actions.push("delete created task");
            }
            if d.exit.is_some() {
                actions.push("record exit, then delete task");
            }
            if d.cleanup {
                actions.push("delete stray task");
            }
            if d.watch {
                actions.push("watch");
            }
            if d.observe_later {
                actions.push("observe again later");
            }
            let (first, second) = run_cell(cp_name, &task);
            table.push_str(&format!(
                "{cp_name} | {task_name} | {} | {first} | {second}\n",
                if actions.is_empty() {
                    "keep".to_owned()
                } else {
                    actions.join(", ")
                },
            ));
        }
    }
    insta::assert_snapshot!(table);
}

/// Runs one cell in a world: the container's checkpoint and task are set up, berth
/// recovers with the observation, effects run, then berth restarts once more.
fn run_cell(cp_name: &str, task: &Result<TaskState, BackendError>) -> (String, String) {
    let mut w = FakeNode::new();
    w.logging = false;
    w.run_pod("pod1", "web").unwrap();
    w.create("c1", "pod1", "app").unwrap();
    let id = cid("c1");
    let target = FakeNode::ct("c1");
    match checkpoint(cp_name) {
        Ok(s) => {
            w.disk.insert(id.clone(), s);
        }
        Err(_) => {
            w.disk.remove(&id);
        }
    }
    w.now = Now::at(testing::WALL_BASE, Duration::from_secs(100));
    match task {
        Ok(TaskState::Created { pid }) => {
            w.tasks.insert(target.clone(), FakeTask::Created(*pid));
        }
        Ok(TaskState::Running { pid }) => {
            w.tasks.insert(target.clone(), FakeTask::Running(*pid));
        }
        Err(_) => {
            w.tasks.insert(target.clone(), FakeTask::Running(300));
        }
        Ok(TaskState::Stopped(e)) => {
            w.tasks.insert(target.clone(), FakeTask::Stopped(*e));
        }
        Ok(TaskState::Paused) => {
            w.tasks.insert(target.clone(), FakeTask::Running(300));
        }
        Ok(TaskState::NotFound) => {
            w.tasks.remove(&target);
        }
    }
    let injected = task.clone();
    let paused = matches!(task, Ok(TaskState::Paused));
    w.crash_and_recover(move |t| {
        (t == &FakeNode::ct("c1") && (injected.is_err() || paused)).then(|| injected.clone())
    });
    w.settle();
    w.machine.check_invariants().unwrap();
    let first = describe(&w, &id);
    w.crash_and_recover(|_| None);
    w.settle();
    w.machine.check_invariants().unwrap();
    let second = describe(&w, &id);
    (first, second)
}

fn describe(w: &FakeNode, id: &ContainerId) -> String {
    let c = w
        .machine
        .container(id)
        .expect("recovery keeps every container");
    let s = c.status();
    let disk = w.disk.get(id);
    let mut out = w.render_status(s);
    if disk != Some(s) {
        out.push_str(" (not on disk)");
    }
    let task = match w.tasks.get(&FakeNode::ct(id.as_str())) {
        None => "no task",
        Some(FakeTask::Created(_)) => "task Created",
        Some(FakeTask::Running(_)) => "task Running",
        Some(FakeTask::Stopped(_)) => "task Stopped",
    };
    format!("{out}; {task}")
}
