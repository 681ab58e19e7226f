//! The core's invariants, asked of the running service ([`berth_service::ServiceHandle::
//! check_invariants`]: the machine checks its whole state), plus what the harness can see
//! from outside: ids unique, and the names a bijection (one container per
//! (sandbox, reserved name), one sandbox per reserved name).

use std::collections::{BTreeMap, BTreeSet};

use berth_service::{ContainerView, SandboxView, ServiceError};

/// The outcome of `check_invariants`: `Ok` if they hold or the service cannot answer now
/// (down or recovering: nothing to check).
pub fn core(answer: Result<Result<(), String>, ServiceError>) -> Result<(), String> {
    match answer {
        Ok(Err(violation)) => Err(format!("core invariant broken: {violation}")),
        Ok(Ok(())) | Err(_) => Ok(()),
    }
}

/// Ids and names of what berth lists are unique.
pub fn names_bijective(containers: &[ContainerView], pods: &[SandboxView]) -> Result<(), String> {
    let mut ids = BTreeSet::new();
    let mut names = BTreeMap::new();
    for c in containers {
        if !ids.insert(c.meta.id.as_str()) {
            return Err(format!("container {} listed twice", c.meta.id));
        }
        let key = (c.meta.sandbox_id.as_str(), c.meta.name.as_str());
        if let Some(other) = names.insert(key, c.meta.id.as_str()) {
            return Err(format!(
                "name {} of sandbox {} held by two containers: {other} and {}",
                c.meta.name, c.meta.sandbox_id, c.meta.id
            ));
        }
    }
    let mut pod_names = BTreeMap::new();
    for p in pods {
        if let Some(other) = pod_names.insert(p.meta.name.as_str(), p.meta.id.as_str()) {
            return Err(format!(
                "sandbox name {} held by two sandboxes: {other} and {}",
                p.meta.name, p.meta.id
            ));
        }
    }
    Ok(())
}
