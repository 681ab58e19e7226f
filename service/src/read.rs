//! The read API: ContainerStatus, ListContainers, PodSandboxStatus and ListPodSandbox over
//! the machine's state, with their views and filters. Pure functions of a [`Machine`]: they
//! change nothing and ask no backend; the machine resolves id prefixes
//! ([`Machine::container_id`]) and says when it does not answer yet ([`Machine::serving`]).

use std::collections::BTreeMap;

use berth_core::{
    CommandError, ContainerMeta, ContainerState, ExitStatus, Machine, SandboxMeta, SandboxState,
    Status,
};

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

/// ListContainers: every container matching `f`, in id order.
pub(crate) fn list_containers(
    m: &Machine,
    f: &ContainerFilter,
) -> Result<Vec<ContainerView>, CommandError> {
    m.serving()?;
    Ok(m.containers()
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
        .collect())
}

/// ListPodSandbox: every sandbox matching `f`, in id order.
pub(crate) fn list_sandboxes(
    m: &Machine,
    f: &SandboxFilter,
) -> Result<Vec<SandboxView>, CommandError> {
    m.serving()?;
    Ok(m.sandboxes()
        .filter(|s| {
            f.id.as_ref()
                .is_none_or(|p| s.meta().id.as_str().starts_with(p.as_str()))
                && f.state.is_none_or(|st| s.state() == st)
                && labels_match(&s.meta().config.labels, &f.labels)
        })
        .map(sandbox_view)
        .collect())
}

/// ContainerStatus: the container with this id or unique id prefix
/// ([`Machine::container_id`]).
pub(crate) fn container_status(m: &Machine, prefix: &str) -> Result<ContainerView, CommandError> {
    m.serving()?;
    let id = m.container_id(prefix)?;
    m.container(&id)
        .map(container_view)
        .ok_or(CommandError::ContainerNotFound { id })
}

/// PodSandboxStatus: the sandbox with this id or unique id prefix
/// ([`Machine::sandbox_id`]).
pub(crate) fn sandbox_status(m: &Machine, prefix: &str) -> Result<SandboxView, CommandError> {
    m.serving()?;
    let id = m.sandbox_id(prefix)?;
    m.sandbox(&id)
        .map(sandbox_view)
        .ok_or(CommandError::SandboxNotFound { id })
}
