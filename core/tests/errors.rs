//! One test per error condition of the CRI commands (spec §4), each checking the error's
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
            op: "start",
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
            op: "start",
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
            op: "remove",
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
            op: "remove",
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
                op: "remove container",
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
                op: "create container",
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
                op: "stop container",
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
    assert_eq!(
        w.run(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(64)
        }),
        Ok(Response::Done)
    );
    assert_eq!(w.disk[&cid("c1")].resources, Some(mem(64)));
    assert_eq!(w.status("c1").unwrap().resources, Some(mem(64)));
    w.start("c1").unwrap();
    w.exit_task(&FakeNode::ct("c1"), 0);
    w.settle();
    let before = w.disk.clone();
    let e = w
        .run(Command::UpdateContainerResources {
            id: cid("c1"),
            resources: mem(1),
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            CommandError::InvalidState {
                state: ContainerState::Exited,
                ..
            }
        ),
        "{e}"
    );
    unchanged(&w, &before);
}

#[test]
fn exit_during_update_is_recorded_after_it() {
    let mut w = world();
    w.start("c1").unwrap();
    let req = w.command(Command::UpdateContainerResources {
        id: cid("c1"),
        resources: mem(8),
    });
    // The process exits while the update's write is pending: no second write starts.
    w.exit_task(&FakeNode::ct("c1"), 3);
    let persists = w
        .pending
        .iter()
        .filter(|e| matches!(e, Effect::Persist { .. }))
        .count();
    assert_eq!(persists, 1, "one write of the record at a time");
    let start = w.command(Command::StartContainer(cid("c1")));
    assert!(matches!(
        w.replies[&start],
        Err(CommandError::InvalidState { .. } | CommandError::Busy { .. })
    ));
    w.settle();
    assert_eq!(w.replies[&req], Ok(Response::Done));
    let s = w.status("c1").unwrap();
    assert_eq!(
        (s.state(), s.exit_code, s.resources.clone()),
        (ContainerState::Exited, 3, Some(mem(8)))
    );
    assert_eq!(w.disk[&cid("c1")], s);
    w.machine.check_invariants().unwrap();
}
