//! Invariants over the whole state, checked by every test, proptest, fuzz target and the
//! simulator after every step.

use crate::error::Guard;
use crate::machine::{Lane, Machine, SandboxState, Step};
use crate::status::ContainerState;

/// The first invariant found broken, with the ids involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated: {0}")]
pub struct InvariantViolation(pub String);

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(InvariantViolation(format!($($arg)+)));
        }
    };
}

impl Machine {
    /// Checks every invariant of the state; `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        for (id, c) in &self.containers {
            let s = &c.status;
            ensure!(
                &c.meta.id == id,
                "container {id} is stored under another id"
            );
            match s.state() {
                ContainerState::Running => {
                    ensure!(
                        s.started_at > 0,
                        "container {id} is RUNNING with started_at 0"
                    );
                    ensure!(s.pid > 0, "container {id} is RUNNING with pid 0");
                }
                ContainerState::Exited => {
                    ensure!(s.pid == 0, "container {id} is EXITED with pid {}", s.pid);
                }
                ContainerState::Created | ContainerState::Unknown => {}
            }
            if s.finished_at != 0 && s.started_at != 0 {
                ensure!(
                    s.finished_at >= s.started_at,
                    "container {id} finished at {} before it started at {}",
                    s.finished_at,
                    s.started_at
                );
            }
            if s.started_at != 0 && s.created_at != 0 {
                ensure!(
                    s.started_at >= s.created_at,
                    "container {id} started at {} before it was created at {}",
                    s.started_at,
                    s.created_at
                );
            }
            if c.guard == Some(Guard::Starting) {
                ensure!(
                    s.state() == ContainerState::Created,
                    "container {id} is starting in state {}",
                    s.state()
                );
                ensure!(
                    c.exit.is_none(),
                    "container {id} has an exit pending while starting"
                );
            }
            if c.exit.is_some() {
                ensure!(
                    s.state() != ContainerState::Exited,
                    "container {id} records a second exit"
                );
                ensure!(
                    c.guard != Some(Guard::Removing),
                    "container {id} is removed while its exit is being recorded"
                );
            }
            if c.remove_after_cleanup.is_some() {
                ensure!(
                    c.guard == Some(Guard::Removing),
                    "container {id} has a removal queued without the removing guard"
                );
            }
            if c.stop_after_start.is_some() {
                ensure!(
                    c.guard == Some(Guard::Starting),
                    "container {id} has a stop queued behind a start that is not running"
                );
            }
            for lane in [c.watch, c.cleanup, c.dirty] {
                if let Lane::InFlight(op) = lane {
                    ensure!(
                        self.steps.contains_key(&op),
                        "container {id} waits for {op}, which is not outstanding"
                    );
                }
            }
            if let Lane::InFlight(op) = c.watch {
                ensure!(
                    matches!(
                        self.steps.get(&op),
                        Some(Step::Wait { .. } | Step::Resync { .. })
                    ),
                    "container {id}'s watch lane points at a non-watch step"
                );
            }
            let conflict = self
                .name_conflicts
                .iter()
                .any(|n| n.starts_with(&format!("container {id}:")));
            if !conflict {
                ensure!(
                    self.container_names.owner(&c.meta.name) == Some(id),
                    "container {id}'s name {:?} is not reserved for it",
                    c.meta.name
                );
            }
            ensure!(
                !self.creating.contains_key(id),
                "container {id} is both visible and being created"
            );
        }
        for (id, c) in &self.creating {
            ensure!(
                self.container_names.owner(&c.meta.name) == Some(id),
                "container {id} being created does not hold its name {:?}",
                c.meta.name
            );
        }
        for (id, name) in self.container_names.iter() {
            let holder = self
                .containers
                .get(id)
                .map(|c| c.meta.name.as_str())
                .or_else(|| self.creating.get(id).map(|c| c.meta.name.as_str()));
            ensure!(
                holder == Some(name),
                "name {name:?} is reserved for {id}, which does not exist or has another name"
            );
        }
        self.container_names
            .check_bijection()
            .map_err(InvariantViolation)?;

        for (id, s) in &self.sandboxes {
            ensure!(&s.meta.id == id, "sandbox {id} is stored under another id");
            match s.state {
                SandboxState::Ready => ensure!(s.pid > 0, "sandbox {id} is Ready with pid 0"),
                SandboxState::NotReady | SandboxState::Unknown => {
                    ensure!(
                        s.pid == 0,
                        "sandbox {id} is {:?} with pid {}",
                        s.state,
                        s.pid
                    )
                }
            }
            ensure!(
                !self.creating_sandboxes.contains_key(id),
                "sandbox {id} is both visible and being created"
            );
            let conflict = self
                .name_conflicts
                .iter()
                .any(|n| n.starts_with(&format!("sandbox {id}:")));
            if !conflict {
                ensure!(
                    self.sandbox_names.owner(&s.meta.name) == Some(id),
                    "sandbox {id}'s name {:?} is not reserved for it",
                    s.meta.name
                );
            }
        }
        for (id, name) in self.sandbox_names.iter() {
            let holder = self
                .sandboxes
                .get(id)
                .map(|s| s.meta.name.as_str())
                .or_else(|| {
                    self.creating_sandboxes
                        .get(id)
                        .map(|s| s.meta.name.as_str())
                });
            ensure!(
                holder == Some(name),
                "sandbox name {name:?} is reserved for {id}, which does not exist or has another name"
            );
        }
        self.sandbox_names
            .check_bijection()
            .map_err(InvariantViolation)?;
        for c in self.containers.values() {
            ensure!(
                !self.sandboxes.contains_key(
                    &crate::ids::SandboxId::new(c.meta.id.as_str())
                        .map_err(|e| InvariantViolation(e.to_string()))?
                ),
                "id {} names both a container and a sandbox",
                c.meta.id
            );
        }
        Ok(())
    }
}
