//! The read API: ContainerStatus, ListContainers, PodSandboxStatus and ListPodSandbox over
//! the machine's state, with their views, filters and id prefixes. Pure functions of a
//! [`Machine`]: they change nothing and ask no backend.

use std::collections::BTreeMap;

use berth_core::{
    CommandError, ContainerId, ContainerMeta, ContainerState, ExitStatus, Machine, SandboxId,
    SandboxMeta, SandboxState, Status,
};

use crate::ServiceError;

/// A container as CRI sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Its metadata (config, sandbox, name, log path).
    pub meta: ContainerMeta,
    /// Its status record.
    pub status: Status,
    /// Derived state.
    pub state: ContainerState,
    /// A RemoveContainer is in flight (verbose info).
    pub removing: bool,
}

/// A sandbox as CRI sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxView {
    /// Its metadata.
    pub meta: SandboxMeta,
    /// Its state.
    pub state: SandboxState,
    /// Pause pid while Ready.
    pub pid: u32,
    /// How its pause task ended, if it did.
    pub exit: Option<ExitStatus>,
}

/// ListContainers filter; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    /// Id or unique id prefix.
    pub id: Option<String>,
    /// State.
    pub state: Option<ContainerState>,
    /// Sandbox id or prefix.
    pub sandbox: Option<String>,
    /// Labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
}

/// ListPodSandbox filter; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxFilter {
    /// Id or prefix.
    pub id: Option<String>,
    /// State.
    pub state: Option<SandboxState>,
    /// Labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
}

fn not_found_container(prefix: &str) -> ServiceError {
    match ContainerId::new(prefix) {
        Ok(id) => ServiceError::Command(CommandError::ContainerNotFound { id }),
        Err(e) => ServiceError::Command(CommandError::InvalidId(e)),
    }
}

fn not_found_sandbox(prefix: &str) -> ServiceError {
    match SandboxId::new(prefix) {
        Ok(id) => ServiceError::Command(CommandError::SandboxNotFound { id }),
        Err(e) => ServiceError::Command(CommandError::InvalidId(e)),
    }
}

/// Resolves an exact id or a unique prefix (CRI accepts both) among `ids`. `Ok(None)`: no
/// match.
pub(crate) fn find_unique<'a, T: AsRef<str> + Clone + 'a>(
    ids: impl Iterator<Item = &'a T>,
    prefix: &str,
) -> Result<Option<T>, ServiceError> {
    let mut matches = Vec::new();
    for id in ids {
        if id.as_ref() == prefix {
            return Ok(Some(id.clone()));
        }
        if !prefix.is_empty() && id.as_ref().starts_with(prefix) {
            matches.push(id);
        }
    }
    match matches.len() {
        0 => Ok(None),
        1 => Ok(Some(matches[0].clone())),
        n => Err(ServiceError::Ambiguous {
            prefix: prefix.to_owned(),
            matches: n,
        }),
    }
}

pub(crate) fn find_container(
    m: &Machine,
    prefix: &str,
) -> Result<Option<ContainerId>, ServiceError> {
    find_unique(m.containers().map(|c| &c.meta().id), prefix)
}

pub(crate) fn find_sandbox(m: &Machine, prefix: &str) -> Result<Option<SandboxId>, ServiceError> {
    find_unique(m.sandboxes().map(|s| &s.meta().id), prefix)
}

pub(crate) fn container_view(c: &berth_core::Container) -> ContainerView {
    ContainerView {
        meta: c.meta().clone(),
        status: c.status().clone(),
        state: c.state(),
        removing: c.is_removing(),
    }
}

pub(crate) fn sandbox_view(s: &berth_core::Sandbox) -> SandboxView {
    SandboxView {
        meta: s.meta().clone(),
        state: s.state(),
        pid: s.pid(),
        exit: s.exit(),
    }
}

fn labels_match(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

pub(crate) fn list_containers(m: &Machine, f: &ContainerFilter) -> Vec<ContainerView> {
    m.containers()
        .filter(|c| {
            f.id.as_ref()
                .is_none_or(|p| c.meta().id.as_str().starts_with(p.as_str()))
                && f.state.is_none_or(|s| c.state() == s)
                && f.sandbox
                    .as_ref()
                    .is_none_or(|p| c.meta().sandbox_id.as_str().starts_with(p.as_str()))
                && labels_match(&c.meta().config.labels, &f.labels)
        })
        .map(container_view)
        .collect()
}

pub(crate) fn list_sandboxes(m: &Machine, f: &SandboxFilter) -> Vec<SandboxView> {
    m.sandboxes()
        .filter(|s| {
            f.id.as_ref()
                .is_none_or(|p| s.meta().id.as_str().starts_with(p.as_str()))
                && f.state.is_none_or(|st| s.state() == st)
                && labels_match(&s.meta().config.labels, &f.labels)
        })
        .map(sandbox_view)
        .collect()
}

/// ContainerStatus: the container with this id or unique id prefix.
pub(crate) fn container_status(m: &Machine, prefix: &str) -> Result<ContainerView, ServiceError> {
    find_container(m, prefix).and_then(|id| {
        id.and_then(|id| m.container(&id).map(container_view))
            .ok_or_else(|| not_found_container(prefix))
    })
}

/// PodSandboxStatus: the sandbox with this id or unique id prefix.
pub(crate) fn sandbox_status(m: &Machine, prefix: &str) -> Result<SandboxView, ServiceError> {
    find_sandbox(m, prefix).and_then(|id| {
        id.and_then(|id| m.sandbox(&id).map(sandbox_view))
            .ok_or_else(|| not_found_sandbox(prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ids_win_and_prefixes_must_be_unique() {
        let ids: Vec<String> = ["abc1", "abc2", "abd", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            find_unique(ids.iter(), "abd").unwrap(),
            Some("abd".to_owned())
        );
        assert_eq!(
            find_unique(ids.iter(), "abc1").unwrap(),
            Some("abc1".to_owned())
        );
        assert_eq!(find_unique(ids.iter(), "x").unwrap(), Some("x".to_owned()));
        assert_eq!(
            find_unique(ids.iter(), "abd").unwrap(),
            Some("abd".to_owned())
        );
        assert_eq!(find_unique(ids.iter(), "zz").unwrap(), None);
        assert_eq!(find_unique(ids.iter(), "").unwrap(), None);
        assert_eq!(
            find_unique(ids.iter(), "abc"),
            Err(ServiceError::Ambiguous {
                prefix: "abc".into(),
                matches: 2
            })
        );
    }
}
