//! Readable transcripts of the lifecycle, checked by insta: StartContainer succeeding and
//! failing at each step (spec §4.2), Stop racing Start, exits around recovery, and the
//! whole recovery decision table (spec §6.4).

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
