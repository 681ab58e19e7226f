//! Invariants over the whole state, checked by every test, proptest, fuzz target and the
//! simulator after every step.

use std::collections::BTreeMap;

use crate::error::Guard;
use crate::execsync::{ExecState, ExecStep};
use crate::exit::ExitStep;
use crate::ids::ExecId;
use crate::machine::{Machine, Step, Timer};
use crate::record::{Lane, SandboxState};
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

/// Two sorted maps' entries side by side, by key: `(key, in a, in b)`.
fn merge<'a, K: Ord + 'a, A, B>(
    a: impl Iterator<Item = (&'a K, A)>,
    b: impl Iterator<Item = (&'a K, B)>,
) -> impl Iterator<Item = (&'a K, Option<A>, Option<B>)> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (None, None) => None,
        (Some(_), None) => a.next().map(|(k, x)| (k, Some(x), None)),
        (None, Some(_)) => b.next().map(|(k, y)| (k, None, Some(y))),
        (Some((ka, _)), Some((kb, _))) => match ka.cmp(kb) {
            std::cmp::Ordering::Less => a.next().map(|(k, x)| (k, Some(x), None)),
            std::cmp::Ordering::Greater => b.next().map(|(k, y)| (k, None, Some(y))),
            std::cmp::Ordering::Equal => {
                let (k, x) = a.next()?;
                let (_, y) = b.next()?;
                Some((k, Some(x), Some(y)))
            }
        },
    })
}

impl Machine {
    /// Checks every invariant of the state; `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        if let Some((id, first, second)) = &self.write_overlap {
            return Err(InvariantViolation(format!(
                "two checkpoint writes of container {id} in flight: {second} handed out while {first} was"
            )));
        }
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
                        Some(Step::Exit(ExitStep::Wait { .. } | ExitStep::Resync { .. }))
                    ),
                    "container {id}'s watch lane points at a non-watch step"
                );
            }
        }
        // Names: every visible or creating container holds its name (unless recovery found
        // its name taken), and every reservation belongs to one of them. Sorted merges,
        // not lookups: this runs after every step of the simulator.
        let holders = merge(self.containers.iter(), self.creating.iter());
        let mut names = self.container_names.iter().peekable();
        for (id, visible, creating) in holders {
            ensure!(
                visible.is_none() || creating.is_none(),
                "container {id} is both visible and being created"
            );
            if let Some((rid, rname)) = names.next_if(|(rid, _)| *rid < id) {
                return Err(InvariantViolation(format!(
                    "name {rname:?} is reserved for {rid}, which does not exist"
                )));
            }
            let name = match (visible, creating) {
                (Some(c), _) => c.meta.name.as_str(),
                (None, Some(c)) => c.meta.name.as_str(),
                (None, None) => continue,
            };
            let reserved = names.next_if(|(rid, _)| *rid == id).map(|(_, n)| n);
            if reserved == Some(name) {
                continue;
            }
            let conflict = visible.is_some()
                && self
                    .name_conflicts
                    .iter()
                    .any(|n| n.starts_with(&format!("container {id}:")));
            ensure!(
                conflict && reserved.is_none(),
                "container {id}'s name {name:?} is not reserved for it (reserved: {reserved:?})"
            );
        }
        if let Some((rid, rname)) = names.next() {
            return Err(InvariantViolation(format!(
                "name {rname:?} is reserved for {rid}, which does not exist"
            )));
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
        let mut pods = self.sandboxes.keys().map(|id| id.as_str()).peekable();
        for id in self.containers.keys() {
            while pods.next_if(|p| *p < id.as_str()).is_some() {}
            ensure!(
                pods.peek() != Some(&id.as_str()),
                "id {id} names both a container and a sandbox"
            );
        }
        self.check_exec_invariants()
    }

    /// ExecSync's state: each exec has exactly the step its state waits for, and an exec
    /// is answered only once its process is known to be dead (docs/architecture.md §3.9).
    fn check_exec_invariants(&self) -> Result<(), InvariantViolation> {
        // (starts, waits, deletes) outstanding per exec.
        let mut steps: BTreeMap<&ExecId, (u32, u32, u32)> = BTreeMap::new();
        for (op, step) in &self.steps {
            let Step::Exec(step) = step else { continue };
            let (exec_id, slot) = match step {
                ExecStep::Start { exec_id } => (exec_id, 0),
                ExecStep::Wait { exec_id } => (exec_id, 1),
                ExecStep::Delete { exec_id, .. } => (exec_id, 2),
                ExecStep::Kill { .. } => continue,
                ExecStep::Sweep { id, .. } => {
                    ensure!(
                        self.exec_sweeps.get(id) == Some(&Lane::InFlight(*op)),
                        "the exec sweep {op} of container {id} is not its sweep in flight"
                    );
                    continue;
                }
            };
            ensure!(
                self.execs.contains_key(exec_id),
                "step {op} belongs to exec {exec_id}, which is not in flight"
            );
            let counts = steps.entry(exec_id).or_default();
            match slot {
                0 => counts.0 += 1,
                1 => counts.1 += 1,
                _ => counts.2 += 1,
            }
        }
        for (id, lane) in &self.exec_sweeps {
            if let Lane::InFlight(op) = lane {
                ensure!(
                    self.steps.contains_key(op),
                    "the exec sweep of container {id} waits for {op}, which is not outstanding"
                );
            }
        }
        #[cfg(feature = "planted-bugs")]
        let answers_early = self
            .config
            .has_bug(crate::config::PlantedBug::ExecTimeoutNotKilled);
        #[cfg(not(feature = "planted-bugs"))]
        let answers_early = false;
        for (exec_id, e) in &self.execs {
            ensure!(
                &e.id == exec_id,
                "exec {exec_id} is stored under another id"
            );
            ensure!(
                exec_id.is_berths(),
                "exec {exec_id} lacks berth's prefix: recovery's sweep would miss it"
            );
            let (starts, waits, deletes) = steps.get(exec_id).copied().unwrap_or_default();
            let expected = match e.state {
                ExecState::Queued => (0, 0, 0),
                ExecState::Starting => (1, 0, 0),
                ExecState::Running => (0, 1, 0),
                ExecState::Deleting => (0, 0, deletes.min(1)),
            };
            ensure!(
                (starts, waits, deletes) == expected,
                "exec {exec_id} is {:?} with {starts} start, {waits} wait and {deletes} delete steps outstanding",
                e.state
            );
            if e.state == ExecState::Queued {
                ensure!(
                    self.exec_sweeps.contains_key(&e.container),
                    "exec {exec_id} is queued, but no sweep of container {} is pending",
                    e.container
                );
            }
            if e.state == ExecState::Deleting && deletes == 0 {
                ensure!(
                    self.timers.iter().any(|(_, _, t)| matches!(
                        t,
                        Timer::RetryExecDelete { exec_id: x, .. } if x == exec_id
                    )),
                    "exec {exec_id} is deleting with no delete outstanding or scheduled"
                );
            }
            if e.req.is_none() {
                ensure!(
                    e.state == ExecState::Deleting || (answers_early && e.timed_out),
                    "exec {exec_id} was answered while {:?}: its process may live on",
                    e.state
                );
            }
            if e.held.is_some() {
                ensure!(
                    e.state == ExecState::Deleting && e.req.is_some(),
                    "exec {exec_id} holds an answer while {:?}",
                    e.state
                );
            }
            if e.timed_out {
                ensure!(
                    !e.timeout.is_zero()
                        && matches!(e.state, ExecState::Running | ExecState::Deleting),
                    "exec {exec_id} timed out while {:?} (timeout {:?})",
                    e.state,
                    e.timeout
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::ids::{ContainerId, SandboxId};
    use crate::io::Now;
    use crate::meta::{ContainerConfig, ContainerMeta};
    use crate::record::Container;
    use crate::status::Status;

    fn id(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn container(m: &mut Machine, c: char, name: &str) -> ContainerId {
        let cid = ContainerId::new(id(c)).unwrap();
        let meta = ContainerMeta {
            id: cid.clone(),
            sandbox_id: SandboxId::new(id('f')).unwrap(),
            name: name.to_owned(),
            config: ContainerConfig::default(),
            log_path: String::new(),
            stop_signal: 15,
            image: Default::default(),
        };
        m.containers
            .insert(cid.clone(), Container::new(meta, Status::created(1, None)));
        cid
    }

    fn machine() -> Machine {
        Machine::new(
            Config::default(),
            Now {
                wall: 1,
                mono: Duration::ZERO,
            },
        )
    }

    fn violation(m: &Machine) -> String {
        m.check_invariants().expect_err("a broken state passed").0
    }

    #[test]
    fn names_must_match_their_holders_both_ways() {
        let mut m = machine();
        let a = container(&mut m, 'a', "web");
        let b = container(&mut m, 'b', "db");
        m.container_names.reserve("web", &a).unwrap();
        m.container_names.reserve("db", &b).unwrap();
        assert_eq!(m.check_invariants(), Ok(()));

        // A reservation without its container (before, between and after the holders).
        for stray in ['0', 'a', 'c'] {
            let mut m = m.clone();
            let ghost = ContainerId::new(format!("{stray}{}", &id('9')[1..])).unwrap();
            m.container_names.reserve("ghost", &ghost).unwrap();
            let v = violation(&m);
            assert!(v.contains("\"ghost\" is reserved for"), "{v}");
        }

        // A container whose name is not reserved, or reserved under another name.
        let mut unreserved = m.clone();
        unreserved.container_names.release_key(&b);
        assert!(violation(&unreserved).contains("name \"db\" is not reserved for it"));
        let mut renamed = m.clone();
        renamed.container_names.release_key(&b);
        renamed.container_names.reserve("other", &b).unwrap();
        assert!(violation(&renamed).contains("reserved: Some(\"other\")"));

        // Recovery found the name taken: the container may go without it.
        unreserved
            .name_conflicts
            .insert(format!("container {b}: name \"db\" is taken"));
        assert_eq!(unreserved.check_invariants(), Ok(()));
    }

    #[test]
    fn a_container_id_is_never_a_sandbox_id_and_state_fields_agree() {
        let mut m = machine();
        let a = container(&mut m, 'a', "web");
        m.container_names.reserve("web", &a).unwrap();
        let mut clash = m.clone();
        let sid = SandboxId::new(id('a')).unwrap();
        let meta = crate::meta::SandboxMeta {
            id: sid.clone(),
            name: "pod".to_owned(),
            config: crate::meta::SandboxConfig::default(),
            created_at: 1,
        };
        clash.sandboxes.insert(
            sid.clone(),
            crate::record::Sandbox::new(meta, SandboxState::NotReady, 0),
        );
        clash.sandbox_names.reserve("pod", &sid).unwrap();
        assert!(violation(&clash).contains("names both a container and a sandbox"));

        let mut running = m.clone();
        if let Some(c) = running.containers.get_mut(&a) {
            c.status.started_at = 2;
        }
        assert!(violation(&running).contains("RUNNING with pid 0"));
    }
}
