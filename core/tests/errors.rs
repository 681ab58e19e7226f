//! One test per error condition of the CRI commands (docs/containerd-behaviour.md §4), each
//! checking the error's
//! kind, its gRPC code, that its message names the ids, and that nothing changed.

use std::time::Duration;

use berth_core::testing::{CallFault, FakeNode};
use berth_core::*;

fn cid(s: &str) -> ContainerId {
    ContainerId::new(s).unwrap()
}
fn sid(s: &str) -> SandboxId {
    SandboxId::new(s).unwrap()
}

fn world() -> FakeNode {
    let mut w = FakeNode::new();
    w.run_pod("pod1", "web").unwrap();
    w.create("c1", "pod1", "app").unwrap();
    w
}

fn unchanged(w: &FakeNode, before: &std::collections::BTreeMap<ContainerId, Status>) {
    assert_eq!(
        &w.disk, before,
        "a refused command must not change any checkpoint"
    );
    w.machine.check_invariants().unwrap();
}

#[test]
fn create_in_unknown_sandbox() {
    let mut w = world();
    let before = w.disk.clone();
    let e = w.create("c2", "nope", "x").unwrap_err();
    assert_eq!(e, CommandError::SandboxNotFound { id: sid("nope") });
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert!(e.to_string().contains("nope"));
    unchanged(&w, &before);
}

#[test]
fn create_with_bad_config() {
    let mut w = world();
    let before = w.disk.clone();
    let mut config = testing::container_config("x");
    config.log_path = "../../etc/passwd".into();
    let e = w
        .run(Command::CreateContainer {
            id: cid("c2"),
            sandbox: sid("pod1"),
            config: Box::new(config),
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::InvalidArgument {
                field: "config.log_path",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(w.machine.container(&cid("c2")).is_none());
    assert!(
        !w.records.contains_key(&FakeNode::ct("c2")),
        "nothing created in containerd"
    );
    unchanged(&w, &before);
}

#[test]
fn run_pod_with_bad_config() {
    let mut w = world();
    let mut config = testing::sandbox_config("p");
    config.uid.clear();
    let e = w
        .run(Command::RunPodSandbox {
            id: sid("pod2"),
            config: Box::new(config),
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::InvalidArgument {
                field: "config.metadata.uid",
                ..
            }
        ),
        "{e}"
    );
    assert!(w.machine.sandbox(&sid("pod2")).is_none());
}

#[test]
fn id_in_use() {
    let mut w = world();
    let e = w.create("c1", "pod1", "other").unwrap_err();
    assert_eq!(e, CommandError::IdInUse { id: "c1".into() });
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    let e = w.run_pod("c1", "other").unwrap_err();
    assert_eq!(e, CommandError::IdInUse { id: "c1".into() });
}

#[test]
fn name_reserved() {
    let mut w = world();
    let before = w.disk.clone();
    let e = w.create("c2", "pod1", "app").unwrap_err();
    match &e {
        CommandError::NameReserved(NameError::NameTaken { owner, .. }) => assert_eq!(owner, "c1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.code(), ErrorCode::FailedPrecondition);
    assert!(e.to_string().contains("app_web_default_uid-web_0"), "{e}");
    unchanged(&w, &before);
    let e = w.run_pod("pod2", "web").unwrap_err();
    assert!(matches!(e, CommandError::NameReserved(_)), "{e}");
}

#[test]
fn create_in_stopped_sandbox() {
    let mut w = world();
    w.run(Command::StopPodSandbox(sid("pod1"))).unwrap();
    let e = w.create("c2", "pod1", "x").unwrap_err();
    assert_eq!(e, CommandError::SandboxNotReady { id: sid("pod1") });
}

#[test]
fn create_in_sandbox_being_removed() {
    let mut w = world();
    w.ignores_term.insert(FakeNode::sb("pod1"));
    w.fail_next(
        "Tasks.Kill",
        CallFault::Before(BackendErrorKind::DeadlineExceeded),
    );
    // RemovePodSandbox in flight (its kill has not run yet).
    w.command(Command::RemovePodSandbox(sid("pod1")));
    let req = w.command(Command::CreateContainer {
        id: cid("c2"),
        sandbox: sid("pod1"),
        config: Box::new(testing::container_config("x")),
    });
    assert_eq!(
        w.replies[&req],
        Err(CommandError::SandboxRemoving { id: sid("pod1") })
    );
}

#[test]
fn start_unknown_container() {
    let mut w = world();
    let e = w.start("nope").unwrap_err();
    assert_eq!(e, CommandError::ContainerNotFound { id: cid("nope") });
    assert_eq!(e.code(), ErrorCode::NotFound);
}

#[test]
fn start_twice() {
    let mut w = world();
    w.start("c1").unwrap();
    let before = w.disk.clone();
    let e = w.start("c1").unwrap_err();
    assert_eq!(
        e,
        CommandError::InvalidState {
            id: cid("c1"),
            op: Operation::StartContainer,
            state: ContainerState::Running
        }
    );
    assert_eq!(
        e.to_string(),
        "container c1: cannot start in state CONTAINER_RUNNING"
    );
    unchanged(&w, &before);
}

#[test]
fn start_while_starting() {
    let mut w = world();
    w.command(Command::StartContainer(cid("c1")));
    let req = w.command(Command::StartContainer(cid("c1")));
    assert_eq!(
        w.replies[&req],
        Err(CommandError::Busy {
            id: cid("c1"),
            op: Operation::StartContainer,
            guard: Guard::Starting
        })
    );
    w.settle();
    assert_eq!(w.status("c1").unwrap().state(), ContainerState::Running);
}

#[test]
fn start_in_stopped_sandbox_records_start_error() {
    let mut w = world();
    w.run(Command::StopPodSandbox(sid("pod1"))).unwrap();
    let e = w.start("c1").unwrap_err();
    assert_eq!(e, CommandError::SandboxNotReady { id: sid("pod1") });
    let s = w.status("c1").unwrap();
    assert_eq!(
        (s.state(), s.exit_code, s.reason.as_str()),
        (ContainerState::Exited, 128, "StartError")
    );
    assert!(s.message.contains("pod1"));
}

#[test]
fn remove_while_starting() {
    let mut w = world();
    w.command(Command::StartContainer(cid("c1")));
    let req = w.command(Command::RemoveContainer(cid("c1")));
    assert_eq!(
        w.replies[&req],
        Err(CommandError::Busy {
            id: cid("c1"),
            op: Operation::RemoveContainer,
            guard: Guard::Starting
        })
    );
}

#[test]
fn remove_while_removing() {
    let mut w = world();
    w.command(Command::RemoveContainer(cid("c1")));
    let req = w.command(Command::RemoveContainer(cid("c1")));
    assert_eq!(
        w.replies[&req],
        Err(CommandError::Busy {
            id: cid("c1"),
            op: Operation::RemoveContainer,
            guard: Guard::Removing
        })
    );
    w.settle();
    assert!(w.machine.container(&cid("c1")).is_none());
}

#[test]
fn remove_backend_failure_leaves_container_removable() {
    let mut w = world();
    w.fail_next(
        "Containers.Delete",
        CallFault::Before(BackendErrorKind::Unavailable),
    );
    let e = w.run(Command::RemoveContainer(cid("c1"))).unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::Backend {
                op: Operation::RemoveContainer,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert_eq!(w.machine.container(&cid("c1")).unwrap().guard(), None);
    assert_eq!(
        w.run(Command::RemoveContainer(cid("c1"))),
        Ok(Response::Done)
    );
}

#[test]
fn create_checkpoint_failure_rolls_back() {
    let mut w = FakeNode::new();
    w.run_pod("pod1", "web").unwrap();
    w.fail_persists(1);
    let e = w.create("c1", "pod1", "app").unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::Persist {
                op: Operation::CreateContainer,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::Internal);
    assert!(w.machine.container(&cid("c1")).is_none());
    assert!(
        !w.records.contains_key(&FakeNode::ct("c1")),
        "containerd record rolled back"
    );
    // The name is free again.
    w.create("c1", "pod1", "app").unwrap();
}

#[test]
fn stop_and_remove_of_unknown_ids_succeed() {
    let mut w = world();
    assert_eq!(
        w.run(Command::StopContainer {
            id: cid("nope"),
            timeout: Duration::from_secs(1)
        }),
        Ok(Response::Done)
    );
    assert_eq!(
        w.run(Command::RemoveContainer(cid("nope"))),
        Ok(Response::Done)
    );
    assert_eq!(
        w.run(Command::StopPodSandbox(sid("nope"))),
        Ok(Response::Done)
    );
    assert_eq!(
        w.run(Command::RemovePodSandbox(sid("nope"))),
        Ok(Response::Done)
    );
}

#[test]
fn stop_kill_failure_is_reported() {
    let mut w = world();
    w.start("c1").unwrap();
    w.fail_next(
        "Tasks.Kill",
        CallFault::Before(BackendErrorKind::DeadlineExceeded),
    );
    let e = w
        .run(Command::StopContainer {
            id: cid("c1"),
            timeout: Duration::ZERO,
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::Backend {
                op: Operation::StopContainer,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(w.status("c1").unwrap().state(), ContainerState::Running);
    assert_eq!(
        w.run(Command::StopContainer {
            id: cid("c1"),
            timeout: Duration::ZERO
        }),
        Ok(Response::Done)
    );
    assert_eq!(w.status("c1").unwrap().exit_code, 137);
}

#[test]
fn remove_pod_removes_everything() {
    let mut w = world();
    w.create("c2", "pod1", "two").unwrap();
    w.start("c1").unwrap();
    assert_eq!(
        w.run(Command::RemovePodSandbox(sid("pod1"))),
        Ok(Response::Done)
    );
    assert_eq!(w.machine.containers().count(), 0);
    assert!(w.machine.sandbox(&sid("pod1")).is_none());
    assert!(w.records.is_empty() && w.tasks.is_empty() && w.disk.is_empty());
    w.machine.check_invariants().unwrap();
}

fn mem(mb: i64) -> Resources {
    Resources {
        memory_limit_in_bytes: mb << 20,
        ..Resources::default()
    }
}

#[test]
fn update_resources_is_recorded_and_refused_when_exited() {
    let mut w = world();
    let e = w
        .run(Command::UpdateContainerResources {
            id: cid("nope"),
            resources: mem(1),
        })
        .unwrap_err();
    assert_eq!(e, CommandError::ContainerNotFound { id: cid("nope") });
    // CREATED: the limits go into the record's spec (its task starts with them).
    assert_eq!(
        w.run(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(64)
        }),
        Ok(Response::Done)
    );
    assert_eq!(w.disk[&cid("c1")].resources, Some(mem(64)));
    assert_eq!(w.status("c1").unwrap().resources, Some(mem(64)));
    assert_eq!(w.record_resources.get(&FakeNode::ct("c1")), Some(&mem(64)));
    w.start("c1").unwrap();
    assert_eq!(w.task_resources.get(&FakeNode::ct("c1")), Some(&mem(64)));
    // RUNNING: the limits go to the task (its cgroup); the record keeps its own.
    assert_eq!(
        w.run(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(32)
        }),
        Ok(Response::Done)
    );
    assert_eq!(w.task_resources.get(&FakeNode::ct("c1")), Some(&mem(32)));
    assert_eq!(w.record_resources.get(&FakeNode::ct("c1")), Some(&mem(64)));
    assert_eq!(w.disk[&cid("c1")].resources, Some(mem(32)));
    w.exit_task(&FakeNode::ct("c1"), 0);
    w.settle();
    let before = w.disk.clone();
    let calls = w.transcript.len();
    let e = w
        .run(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(1),
        })
        .unwrap_err();
    assert_eq!(
        e,
        CommandError::InvalidState {
            id: cid("c1"),
            op: Operation::UpdateContainerResources,
            state: ContainerState::Exited,
        }
    );
    assert_eq!(e.code(), ErrorCode::FailedPrecondition);
    assert_eq!(
        e.to_string(),
        "container c1: cannot update its resources in state CONTAINER_EXITED"
    );
    assert!(
        !w.transcript[calls..].iter().any(|l| l.contains("call")),
        "no call for a refused update"
    );
    unchanged(&w, &before);
}

#[test]
fn update_of_an_unknown_container_is_refused() {
    let mut w = world();
    w.start("c1").unwrap();
    // Recovery cannot observe the task: the container is UNKNOWN, neither task nor record
    // can be said to be the one to update.
    w.crash_and_recover(|t| {
        (*t == FakeNode::ct("c1")).then(|| {
            Err(BackendError::new(
                BackendErrorKind::Other,
                "Tasks.Get",
                "c1",
                "injected",
            ))
        })
    });
    w.settle();
    assert_eq!(w.status("c1").unwrap().state(), ContainerState::Unknown);
    let before = w.disk.clone();
    let e = w
        .run(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(8),
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::InvalidState {
                state: ContainerState::Unknown,
                op: Operation::UpdateContainerResources,
                ..
            }
        ),
        "{e}"
    );
    unchanged(&w, &before);
}

#[test]
fn update_call_failure_records_nothing_and_releases_the_guard() {
    let mut w = world();
    w.start("c1").unwrap();
    let before = w.disk.clone();
    w.fail_next(
        "Tasks.Update",
        CallFault::Before(BackendErrorKind::DeadlineExceeded),
    );
    let e = w
        .run(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(8),
        })
        .unwrap_err();
    assert!(
        matches!(
            &e,
            CommandError::Backend {
                op: Operation::UpdateContainerResources,
                target: Target::Container(id),
                error,
            } if id == &cid("c1") && error.verb == "Tasks.Update"
        ),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::DeadlineExceeded);
    assert!(
        e.to_string()
            .starts_with("container c1: cannot update its resources: Tasks.Update c1:"),
        "{e}"
    );
    assert_eq!(w.status("c1").unwrap().resources, None);
    assert_eq!(w.machine.container(&cid("c1")).unwrap().guard(), None);
    unchanged(&w, &before);
    // Retried, it goes through.
    assert_eq!(
        w.run(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(8),
        }),
        Ok(Response::Done)
    );
    assert_eq!(w.disk[&cid("c1")].resources, Some(mem(8)));
}

/// When the process exits during an update.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ExitDuring {
    /// Tasks.Update in flight; the call then finds the task exited and fails.
    CallFails,
    /// Tasks.Update took effect, but the exit is reported before its reply.
    CallReplyLate,
    /// Tasks.Update done, the write of the new limits pending.
    Write,
}

#[test]
fn exit_during_update_is_recorded_after_it() {
    for during in [
        ExitDuring::CallFails,
        ExitDuring::CallReplyLate,
        ExitDuring::Write,
    ] {
        let mut w = world();
        w.start("c1").unwrap();
        let req = w.command(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(8),
        });
        let writes = |w: &FakeNode| {
            w.pending
                .iter()
                .filter(|e| matches!(e, Effect::Persist { .. }))
                .count()
        };
        let update = w
            .pending
            .iter()
            .position(|e| {
                matches!(
                    e,
                    Effect::Call {
                        call: Call::UpdateResources { .. },
                        ..
                    }
                )
            })
            .expect("Tasks.Update emitted");
        let late_op = match during {
            ExitDuring::CallReplyLate => match w.pending.remove(update) {
                Effect::Call { op, .. } => Some(op),
                _ => None,
            },
            ExitDuring::Write => {
                w.execute(update);
                assert_eq!(writes(&w), 1);
                None
            }
            ExitDuring::CallFails => None,
        };
        // The process exits meanwhile: its write waits for the update.
        w.exit_task(&FakeNode::ct("c1"), 3);
        let want = usize::from(during == ExitDuring::Write);
        assert_eq!(
            writes(&w),
            want,
            "{during:?}: one write of the record at a time"
        );
        let start = w.command(Command::StartContainer(cid("c1")));
        assert!(matches!(
            w.replies[&start],
            Err(CommandError::InvalidState { .. } | CommandError::Busy { .. })
        ));
        if let Some(op) = late_op {
            w.machine.handle_call(op, Ok(CallResult::Done), w.now);
            w.collect();
        }
        w.settle();
        let s = w.status("c1").unwrap();
        assert_eq!(
            (s.state(), s.exit_code),
            (ContainerState::Exited, 3),
            "{during:?}"
        );
        if during == ExitDuring::CallFails {
            let e = w.replies[&req].clone().unwrap_err();
            assert_eq!(e.code(), ErrorCode::NotFound, "{during:?}: {e}");
            assert_eq!(
                s.resources, None,
                "{during:?}: a failed update records nothing"
            );
        } else {
            assert_eq!(w.replies[&req], Ok(Response::Done), "{during:?}");
            assert_eq!(s.resources, Some(mem(8)), "{during:?}");
        }
        assert_eq!(w.disk[&cid("c1")], s);
        w.machine.check_invariants().unwrap();
    }
}

#[test]
fn reopen_log_needs_a_running_container() {
    let mut w = world();
    let e = w.run(Command::ReopenContainerLog(cid("nope"))).unwrap_err();
    assert_eq!(e, CommandError::ContainerNotFound { id: cid("nope") });
    assert_eq!(e.code(), ErrorCode::NotFound);
    let e = w.run(Command::ReopenContainerLog(cid("c1"))).unwrap_err();
    assert_eq!(e.code(), ErrorCode::FailedPrecondition);
    assert_eq!(
        e.to_string(),
        "container c1: cannot reopen its log in state CONTAINER_CREATED"
    );
    w.start("c1").unwrap();
    assert_eq!(
        w.run(Command::ReopenContainerLog(cid("c1"))),
        Ok(Response::Done)
    );
    assert_eq!(w.log_reopens.get(&FakeNode::ct("c1")), Some(&1));
    // The backend refuses (no log is being written): its kind gives the code.
    w.fail_next(
        "Logs.Reopen",
        CallFault::Before(BackendErrorKind::FailedPrecondition),
    );
    let e = w.run(Command::ReopenContainerLog(cid("c1"))).unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::Backend {
                op: Operation::ReopenContainerLog,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::FailedPrecondition);
    w.exit_task(&FakeNode::ct("c1"), 0);
    w.settle();
    let before = w.disk.clone();
    let e = w.run(Command::ReopenContainerLog(cid("c1"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container c1: cannot reopen its log in state CONTAINER_EXITED"
    );
    assert_eq!(w.log_reopens.get(&FakeNode::ct("c1")), Some(&1));
    unchanged(&w, &before);
}

#[test]
fn commands_during_recovery_answer_unavailable() {
    let mut w = world();
    // A start cut short by a crash before its persist: recovery adopts the running task and
    // writes RUNNING, which keeps it recovering until that write's outcome.
    w.command(Command::StartContainer(cid("c1")));
    while !w
        .pending
        .iter()
        .any(|e| matches!(e, Effect::Persist { .. }))
    {
        w.execute(0);
    }
    w.crash_and_recover(|_| None);
    assert!(w.machine.is_recovering());
    let before = w.disk.clone();
    let pending = w.pending.len();
    for command in [
        Command::StartContainer(cid("c1")),
        Command::StopContainer {
            id: cid("c1"),
            timeout: Duration::ZERO,
        },
        Command::RemoveContainer(cid("c1")),
        Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(8),
        },
        Command::ReopenContainerLog(cid("c1")),
        Command::StopPodSandbox(sid("pod1")),
        Command::RemovePodSandbox(sid("nope")),
    ] {
        let req = w.command(command);
        let e = w.replies[&req].clone().unwrap_err();
        assert_eq!(e, CommandError::Recovering);
        assert_eq!(e.code(), ErrorCode::Unavailable);
    }
    assert_eq!(w.machine.serving(), Err(CommandError::Recovering));
    assert_eq!(w.pending.len(), pending, "a refused command emits nothing");
    unchanged(&w, &before);
    w.settle();
    assert_eq!(w.machine.serving(), Ok(()));
    assert_eq!(w.status("c1").unwrap().state(), ContainerState::Running);
}

#[test]
fn ids_and_unique_prefixes_resolve_ambiguous_ones_do_not() {
    let mut w = world();
    w.create("c12", "pod1", "other").unwrap();
    let m = &w.machine;
    assert_eq!(m.container_id("c1"), Ok(cid("c1")), "the exact id wins");
    assert_eq!(m.container_id("c12"), Ok(cid("c12")));
    assert_eq!(
        m.container_id("c"),
        Err(CommandError::AmbiguousPrefix {
            prefix: "c".into(),
            matches: 2
        })
    );
    assert_eq!(
        m.container_id("c").unwrap_err().code(),
        ErrorCode::InvalidArgument
    );
    // An id that matches nothing is passed through: the command decides.
    assert_eq!(m.container_id("ghost"), Ok(cid("ghost")));
    assert!(matches!(
        m.container_id("../etc"),
        Err(CommandError::InvalidId(_))
    ));
    assert_eq!(m.sandbox_id("pod"), Ok(sid("pod1")));
}

#[test]
fn backend_kinds_map_to_one_code() {
    use BackendErrorKind as K;
    let cases = [
        (K::NotFound, ErrorCode::NotFound),
        (K::AlreadyExists, ErrorCode::Internal),
        (K::FailedPrecondition, ErrorCode::FailedPrecondition),
        (K::Unavailable, ErrorCode::Unavailable),
        (K::DeadlineExceeded, ErrorCode::DeadlineExceeded),
        (K::InvalidArgument, ErrorCode::InvalidArgument),
        (K::Other, ErrorCode::Internal),
    ];
    for (kind, code) in cases {
        assert_eq!(kind.code(), code, "{kind}");
        let e = CommandError::Backend {
            op: Operation::StartContainer,
            target: Target::Container(cid("c1")),
            error: BackendError::new(kind, "Tasks.Start", "c1", "x"),
        };
        assert_eq!(e.code(), code, "{e}");
    }
}

fn create_with_image(w: &mut FakeNode, id: &str, image: &str) -> Result<Response, CommandError> {
    let mut config = testing::container_config(id);
    config.image = image.into();
    w.run(Command::CreateContainer {
        id: cid(id),
        sandbox: sid("pod1"),
        config: Box::new(config),
    })
}

#[test]
fn create_resolves_the_image_by_name_id_and_prefix() {
    let mut w = world();
    // world() created c1 from "busybox": normalised, its ID and repo digest recorded.
    let c1 = w
        .machine
        .container(&cid("c1"))
        .unwrap()
        .meta()
        .image
        .clone();
    assert_eq!(c1.id, testing::BUSYBOX_ID);
    assert_eq!(c1.name, "docker.io/library/busybox:latest");
    assert_eq!(c1.repo_tag, "docker.io/library/busybox:latest");
    assert!(
        c1.cri_image_ref()
            .starts_with("docker.io/library/busybox@sha256:")
    );
    let prefix = &testing::BUSYBOX_ID["sha256:".len()..][..12];
    for (id, image) in [
        ("c2", testing::BUSYBOX_ID),
        ("c3", prefix),
        ("c4", "docker.io/library/busybox"),
    ] {
        create_with_image(&mut w, id, image).unwrap();
        let meta = w.machine.container(&cid(id)).unwrap().meta().clone();
        assert_eq!(meta.image.id, testing::BUSYBOX_ID, "{image}");
        assert_eq!(meta.config.image, image, "the image as sent is kept");
        // What the containerd record stores is what the core decided.
        match w.records.get(&FakeNode::ct(id)) {
            Some(testing::RecordMeta::Container(m)) => assert_eq!(m.image, meta.image),
            other => panic!("{id}: {other:?}"),
        }
    }
    // The resolved image is durable: after a restart it is the same.
    w.crash_and_recover(|_| None);
    w.settle();
    let again = w
        .machine
        .container(&cid("c3"))
        .unwrap()
        .meta()
        .image
        .clone();
    assert_eq!(again.id, testing::BUSYBOX_ID);
    assert_eq!(again.cri_image_ref(), c1.cri_image_ref());
}

#[test]
fn create_with_a_missing_image_is_not_found_and_creates_nothing() {
    let mut w = world();
    let before = w.disk.clone();
    for image in ["busybox:9", "nginx", "beef"] {
        let e = create_with_image(&mut w, "c2", image).unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
        assert!(
            matches!(&e, CommandError::Backend { error, .. } if error.kind == BackendErrorKind::NotFound),
            "{e}"
        );
        assert!(e.to_string().contains(&format!("{image:?}")), "{e}");
        assert!(w.machine.container(&cid("c2")).is_none());
        assert!(!w.records.contains_key(&FakeNode::ct("c2")));
        unchanged(&w, &before);
    }
    // The name was released: the same container with an image that exists is created.
    create_with_image(&mut w, "c2", "busybox").unwrap();
}

#[test]
fn create_with_an_ambiguous_image_prefix_is_invalid_argument() {
    let mut w = world();
    let before = w.disk.clone();
    let twin = format!("{}0", &testing::BUSYBOX_ID[..testing::BUSYBOX_ID.len() - 1]);
    w.images
        .push(ImageRecord::new("docker.io/library/twin:1", twin.clone()));
    let prefix = &testing::BUSYBOX_ID["sha256:".len()..][..12];
    let e = create_with_image(&mut w, "c2", prefix).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let text = e.to_string();
    assert!(text.contains(prefix) && text.contains(&twin), "{text}");
    assert!(!w.records.contains_key(&FakeNode::ct("c2")));
    unchanged(&w, &before);
    // A failure to reach the image store creates nothing either, with the backend's code.
    w.fail_next(
        "Images.List",
        CallFault::Before(BackendErrorKind::Unavailable),
    );
    let e = create_with_image(&mut w, "c2", "busybox").unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(w.machine.container(&cid("c2")).is_none());
    create_with_image(&mut w, "c2", "busybox").unwrap();
}
