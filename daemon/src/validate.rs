//! Validation of CRI requests: every field berth relies on is checked, and turned into
//! berth-core's types, before the service sees the request. A bad field is
//! [`ApiError::InvalidArgument`] naming it (`config.metadata.name`, `container_id`, ...),
//! and nothing is created. Fields berth cannot honour yet (mounts, devices, a TTY, a
//! non-root user...) are refused rather than silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use berth_core::{ContainerConfig, ContainerState, NamespaceMode, Resources, SandboxConfig};
use berth_service::{ContainerFilter, SandboxFilter};
use k8s_cri::v1 as cri;

use crate::error::ApiError;

/// Longest hostname Linux accepts (`HOST_NAME_MAX`).
pub const MAX_HOSTNAME_LEN: usize = 64;
/// Longest path berth accepts (`PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest label or annotation key (a DNS subdomain prefix, '/', and a 63-byte name).
pub const MAX_LABEL_KEY_LEN: usize = 317;
/// Longest label or annotation value.
pub const MAX_LABEL_VALUE_LEN: usize = 64 * 1024;
/// Most labels or annotations on one object.
pub const MAX_LABELS: usize = 1024;
/// Longest single argument or environment entry (Linux `MAX_ARG_STRLEN`).
pub const MAX_ARG_LEN: usize = 128 * 1024;
/// Most arguments or environment entries.
pub const MAX_ARGS: usize = 4096;
/// Longest image reference.
pub const MAX_IMAGE_LEN: usize = 4096;
/// Longest StopContainer grace period berth honours (longer ones are cut to this).
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 3600);

fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn no_nul(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

fn max_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::invalid(
            field,
            format!(
                "{:?} is {} bytes long; at most {max} are allowed",
                shorten(value),
                value.len()
            ),
        ));
    }
    Ok(())
}

/// An id a request names (`container_id`, `pod_sandbox_id`): an id or unique prefix under
/// containerd's identifier rules, so no '/', no '..', no control characters, at most 76
/// bytes.
pub fn object_id(field: &str, kind: &'static str, id: &str) -> Result<(), ApiError> {
    berth_core::validate_id(kind, id).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// An optional id filter: empty means "any".
fn id_filter(field: &str, kind: &'static str, id: &str) -> Result<Option<String>, ApiError> {
    if id.is_empty() {
        return Ok(None);
    }
    object_id(field, kind, id)?;
    Ok(Some(id.to_owned()))
}

fn labels(
    field: &str,
    map: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    if map.len() > MAX_LABELS {
        return Err(ApiError::invalid(
            field,
            format!("{} entries; at most {MAX_LABELS} are allowed", map.len()),
        ));
    }
    for (k, v) in map {
        let f = format!("{field}[{:?}]", shorten(k));
        if k.is_empty() {
            return Err(ApiError::invalid(field, "a key is empty"));
        }
        max_len(&f, k, MAX_LABEL_KEY_LEN)?;
        if k.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                &f,
                "the key contains a control character",
            ));
        }
        max_len(&f, v, MAX_LABEL_VALUE_LEN)?;
        no_nul(&f, v)?;
    }
    Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn namespace_mode(
    field: &str,
    value: i32,
    allow_container: bool,
) -> Result<NamespaceMode, ApiError> {
    match cri::NamespaceMode::try_from(value) {
        Ok(cri::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(cri::NamespaceMode::Container) if allow_container => Ok(NamespaceMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(other) => Err(ApiError::invalid(
            field,
            format!("namespace mode {} is not supported", other.as_str_name()),
        )),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("unknown namespace mode {value}"),
        )),
    }
}

fn absolute_path(field: &str, path: &str) -> Result<(), ApiError> {
    no_nul(field, path)?;
    max_len(field, path, MAX_PATH_LEN)?;
    if !path.starts_with('/') {
        return Err(ApiError::invalid(
            field,
            format!("{:?} must be an absolute path", shorten(path)),
        ));
    }
    if path.split('/').any(|p| p == "..") {
        return Err(ApiError::invalid(
            field,
            format!("{:?} must not contain '..'", shorten(path)),
        ));
    }
    Ok(())
}

/// The runtime handler of a RunPodSandbox: empty or [`crate::RUNTIME_HANDLER`].
fn runtime_handler(field: &str, handler: &str) -> Result<(), ApiError> {
    if handler.is_empty() || handler == crate::RUNTIME_HANDLER {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!(
            "runtime handler {:?} is not configured (berth knows only {:?})",
            shorten(handler),
            crate::RUNTIME_HANDLER
        ),
    ))
}

/// RunPodSandbox: the request's config as berth-core's [`SandboxConfig`].
pub fn sandbox_config(req: &cri::RunPodSandboxRequest) -> Result<SandboxConfig, ApiError> {
    runtime_handler("runtime_handler", &req.runtime_handler)?;
    let config = req
        .config
        .as_ref()
        .ok_or_else(|| ApiError::invalid("config", "is missing"))?;
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| ApiError::invalid("config.metadata", "is missing"))?;
    let mut out = SandboxConfig {
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        namespace: meta.namespace.clone(),
        attempt: meta.attempt,
        hostname: config.hostname.clone(),
        log_directory: config.log_directory.clone(),
        labels: labels("config.labels", &config.labels)?,
        annotations: labels("config.annotations", &config.annotations)?,
        ..SandboxConfig::default()
    };
    for (field, value) in [
        ("config.metadata.name", &meta.name),
        ("config.metadata.uid", &meta.uid),
        ("config.metadata.namespace", &meta.namespace),
    ] {
        if value.is_empty() {
            return Err(ApiError::invalid(field, "must not be empty"));
        }
        max_len(field, value, berth_core::MAX_NAME_LEN)?;
        if value.chars().any(|c| c.is_control() || c == '/') {
            return Err(ApiError::invalid(
                field,
                format!("{:?} contains '/' or a control character", shorten(value)),
            ));
        }
    }
    max_len("config.hostname", &config.hostname, MAX_HOSTNAME_LEN)?;
    if config
        .hostname
        .chars()
        .any(|c| c.is_control() || c == '/' || c.is_whitespace())
    {
        return Err(ApiError::invalid(
            "config.hostname",
            "contains '/', whitespace or a control character",
        ));
    }
    if !config.log_directory.is_empty() {
        absolute_path("config.log_directory", &config.log_directory)?;
    }
    if let Some(linux) = &config.linux
        && let Some(sc) = &linux.security_context
    {
        if sc.privileged {
            return Err(ApiError::invalid(
                "config.linux.security_context.privileged",
                "privileged pods are not supported by berth yet",
            ));
        }
        if let Some(ns) = &sc.namespace_options {
            let f = "config.linux.security_context.namespace_options";
            out.pid_namespace = namespace_mode(&format!("{f}.pid"), ns.pid, true)?;
            out.ipc_namespace = namespace_mode(&format!("{f}.ipc"), ns.ipc, true)?;
            // Pod networking does not exist yet: every pod uses the host network. The mode
            // is still checked so that garbage is refused.
            namespace_mode(&format!("{f}.network"), ns.network, true)?;
            if !ns.target_id.is_empty() {
                return Err(ApiError::invalid(
                    format!("{f}.target_id"),
                    "namespace targets are not supported by berth yet",
                ));
            }
        }
    }
    // The core checks these again (and the total size); checking here names CRI fields.
    berth_core::validate_sandbox_config(&out).map_err(core_invalid)?;
    Ok(out)
}

fn core_invalid(e: berth_core::CommandError) -> ApiError {
    match e {
        berth_core::CommandError::InvalidArgument { field, reason } => {
            ApiError::invalid(field, reason)
        }
        other => ApiError::invalid("config", other.to_string()),
    }
}

fn strings(field: &str, list: &[String]) -> Result<(), ApiError> {
    if list.len() > MAX_ARGS {
        return Err(ApiError::invalid(
            field,
            format!("{} entries; at most {MAX_ARGS} are allowed", list.len()),
        ));
    }
    for (i, s) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        max_len(&f, s, MAX_ARG_LEN)?;
        no_nul(&f, s)?;
    }
    Ok(())
}

/// `LinuxContainerResources` as berth-core's [`Resources`].
pub fn resources(field: &str, r: &cri::LinuxContainerResources) -> Result<Resources, ApiError> {
    let non_negative = |name: &str, v: i64| {
        if v < 0 {
            Err(ApiError::invalid(
                format!("{field}.{name}"),
                format!("{v} is negative"),
            ))
        } else {
            Ok(())
        }
    };
    non_negative("cpu_period", r.cpu_period)?;
    non_negative("cpu_shares", r.cpu_shares)?;
    non_negative("memory_limit_in_bytes", r.memory_limit_in_bytes)?;
    non_negative("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes)?;
    if r.cpu_quota < -1 {
        return Err(ApiError::invalid(
            format!("{field}.cpu_quota"),
            format!("{} is below -1 (unlimited)", r.cpu_quota),
        ));
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(ApiError::invalid(
            format!("{field}.oom_score_adj"),
            format!("{} is outside -1000..=1000", r.oom_score_adj),
        ));
    }
    for (name, set) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        max_len(&format!("{field}.{name}"), set, 1024)?;
        if !set
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
        {
            return Err(ApiError::invalid(
                format!("{field}.{name}"),
                format!("{:?} is not a cpu list such as \"0-3,6\"", shorten(set)),
            ));
        }
    }
    if !r.hugepage_limits.is_empty() {
        return Err(ApiError::invalid(
            format!("{field}.hugepage_limits"),
            "hugepage limits are not supported by berth yet",
        ));
    }
    if !r.unified.is_empty() {
        return Err(ApiError::invalid(
            format!("{field}.unified"),
            "cgroup v2 unified settings are not supported by berth yet",
        ));
    }
    Ok(Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota.max(0),
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
    })
}

fn container_security(sc: &cri::LinuxContainerSecurityContext) -> Result<(), ApiError> {
    let f = "config.linux.security_context";
    if sc.privileged {
        return Err(ApiError::invalid(
            format!("{f}.privileged"),
            "privileged containers are not supported by berth yet",
        ));
    }
    let uid = sc.run_as_user.as_ref().map(|v| v.value);
    if uid.is_some_and(|u| u != 0)
        || !(sc.run_as_username.is_empty() || sc.run_as_username == "root")
    {
        return Err(ApiError::invalid(
            format!("{f}.run_as_user"),
            "running as another user than the image's is not supported by berth yet",
        ));
    }
    if sc.run_as_group.as_ref().is_some_and(|g| g.value != 0) || !sc.supplemental_groups.is_empty()
    {
        return Err(ApiError::invalid(
            format!("{f}.run_as_group"),
            "groups are not supported by berth yet",
        ));
    }
    Ok(())
}

/// CreateContainer: the sandbox id and the request's config as berth-core's
/// [`ContainerConfig`].
pub fn container_config(
    req: &cri::CreateContainerRequest,
) -> Result<(String, ContainerConfig), ApiError> {
    object_id("pod_sandbox_id", "sandbox", &req.pod_sandbox_id)?;
    let config = req
        .config
        .as_ref()
        .ok_or_else(|| ApiError::invalid("config", "is missing"))?;
    let meta = config
        .metadata
        .as_ref()
        .ok_or_else(|| ApiError::invalid("config.metadata", "is missing"))?;
    let image = config
        .image
        .as_ref()
        .map(|i| i.image.as_str())
        .unwrap_or_default();
    if image.trim().is_empty() {
        return Err(ApiError::invalid("config.image.image", "must not be empty"));
    }
    max_len("config.image.image", image, MAX_IMAGE_LEN)?;
    if image.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::invalid(
            "config.image.image",
            "contains whitespace or a control character",
        ));
    }
    if meta.name.is_empty() {
        return Err(ApiError::invalid(
            "config.metadata.name",
            "must not be empty",
        ));
    }
    max_len("config.metadata.name", &meta.name, berth_core::MAX_NAME_LEN)?;
    strings("config.command", &config.command)?;
    strings("config.args", &config.args)?;
    if !config.working_dir.is_empty() {
        absolute_path("config.working_dir", &config.working_dir)?;
    }
    if config.envs.len() > MAX_ARGS {
        return Err(ApiError::invalid(
            "config.envs",
            format!(
                "{} entries; at most {MAX_ARGS} are allowed",
                config.envs.len()
            ),
        ));
    }
    for (i, kv) in config.envs.iter().enumerate() {
        let f = format!("config.envs[{i}]");
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(ApiError::invalid(
                &f,
                format!("bad variable name {:?}", shorten(&kv.key)),
            ));
        }
        max_len(&f, &kv.key, MAX_ARG_LEN)?;
        max_len(&f, &kv.value, MAX_ARG_LEN)?;
        no_nul(&f, &kv.key)?;
        no_nul(&f, &kv.value)?;
    }
    if !config.log_path.is_empty() {
        no_nul("config.log_path", &config.log_path)?;
        max_len("config.log_path", &config.log_path, MAX_PATH_LEN)?;
        if config.log_path.starts_with('/') || config.log_path.split('/').any(|p| p == "..") {
            return Err(ApiError::invalid(
                "config.log_path",
                format!(
                    "{:?} must be relative to the pod's log directory, without '..'",
                    shorten(&config.log_path)
                ),
            ));
        }
    }
    let unsupported = |field: &str, what: &str| {
        Err(ApiError::invalid(
            field,
            format!("{what} are not supported by berth yet"),
        ))
    };
    if !config.mounts.is_empty() {
        return unsupported("config.mounts", "mounts");
    }
    if !config.devices.is_empty() || !config.cdi_devices.is_empty() {
        return unsupported("config.devices", "devices");
    }
    if config.tty {
        return unsupported("config.tty", "terminals");
    }
    if config.stdin || config.stdin_once {
        return unsupported("config.stdin", "stdin streams");
    }
    let mut resources_out = None;
    if let Some(linux) = &config.linux {
        if let Some(r) = &linux.resources {
            resources_out = Some(resources("config.linux.resources", r)?);
        }
        if let Some(sc) = &linux.security_context {
            container_security(sc)?;
        }
    }
    let out = ContainerConfig {
        name: meta.name.clone(),
        attempt: meta.attempt,
        image: image.to_owned(),
        command: config.command.clone(),
        args: config.args.clone(),
        working_dir: config.working_dir.clone(),
        envs: config
            .envs
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect(),
        labels: labels("config.labels", &config.labels)?,
        annotations: labels("config.annotations", &config.annotations)?,
        log_path: config.log_path.clone(),
        stop_signal: String::new(),
        resources: resources_out,
        readonly_rootfs: config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .is_some_and(|sc| sc.readonly_rootfs),
    };
    berth_core::validate_container_config(&out).map_err(core_invalid)?;
    Ok((req.pod_sandbox_id.clone(), out))
}

/// StopContainer's grace period: not negative; cut to [`MAX_STOP_TIMEOUT`].
pub fn stop_timeout(seconds: i64) -> Result<Duration, ApiError> {
    let secs = u64::try_from(seconds)
        .map_err(|_| ApiError::invalid("timeout", format!("{seconds} is negative")))?;
    Ok(Duration::from_secs(secs).min(MAX_STOP_TIMEOUT))
}

/// ExecSync's request: the container id, a non-empty command within the argument limits,
/// a timeout in seconds that is not negative (0: none). Returns the command and timeout.
pub fn exec_sync(req: &cri::ExecSyncRequest) -> Result<(Vec<String>, Duration), ApiError> {
    object_id("container_id", "container", &req.container_id)?;
    if req.cmd.is_empty() {
        return Err(ApiError::invalid("cmd", "must not be empty"));
    }
    strings("cmd", &req.cmd)?;
    let secs = u64::try_from(req.timeout)
        .map_err(|_| ApiError::invalid("timeout", format!("{} is negative", req.timeout)))?;
    Ok((req.cmd.clone(), Duration::from_secs(secs)))
}

/// A CRI container state value.
pub fn container_state(field: &str, value: i32) -> Result<ContainerState, ApiError> {
    match cri::ContainerState::try_from(value) {
        Ok(cri::ContainerState::ContainerCreated) => Ok(ContainerState::Created),
        Ok(cri::ContainerState::ContainerRunning) => Ok(ContainerState::Running),
        Ok(cri::ContainerState::ContainerExited) => Ok(ContainerState::Exited),
        Ok(cri::ContainerState::ContainerUnknown) => Ok(ContainerState::Unknown),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("unknown container state {value}"),
        )),
    }
}

/// ListContainers' filter.
pub fn container_filter(f: Option<&cri::ContainerFilter>) -> Result<ContainerFilter, ApiError> {
    let Some(f) = f else {
        return Ok(ContainerFilter::default());
    };
    Ok(ContainerFilter {
        id: id_filter("filter.id", "container", &f.id)?,
        state: f
            .state
            .as_ref()
            .map(|s| container_state("filter.state.state", s.state))
            .transpose()?,
        sandbox: id_filter("filter.pod_sandbox_id", "sandbox", &f.pod_sandbox_id)?,
        labels: labels("filter.label_selector", &f.label_selector)?,
    })
}

/// The CRI sandbox state a ListPodSandbox filter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxStateFilter {
    /// SANDBOX_READY (berth's Ready).
    Ready,
    /// SANDBOX_NOTREADY (berth's NotReady and Unknown).
    NotReady,
}

/// ListPodSandbox's filter: what the service filters on, and the CRI state to keep (the
/// caller applies it, because NOTREADY covers two berth states).
pub fn sandbox_filter(
    f: Option<&cri::PodSandboxFilter>,
) -> Result<(SandboxFilter, Option<SandboxStateFilter>), ApiError> {
    let Some(f) = f else {
        return Ok((SandboxFilter::default(), None));
    };
    let state = match &f.state {
        None => None,
        Some(s) => Some(match cri::PodSandboxState::try_from(s.state) {
            Ok(cri::PodSandboxState::SandboxReady) => SandboxStateFilter::Ready,
            Ok(cri::PodSandboxState::SandboxNotready) => SandboxStateFilter::NotReady,
            Err(_) => {
                return Err(ApiError::invalid(
                    "filter.state.state",
                    format!("unknown sandbox state {}", s.state),
                ));
            }
        }),
    };
    let filter = SandboxFilter {
        id: id_filter("filter.id", "sandbox", &f.id)?,
        state: None,
        labels: labels("filter.label_selector", &f.label_selector)?,
    };
    Ok((filter, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "p".into(),
                    uid: "u".into(),
                    namespace: "n".into(),
                    attempt: 0,
                }),
                log_directory: "/var/log/pods/p".into(),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    fn ctr() -> cri::CreateContainerRequest {
        cri::CreateContainerRequest {
            pod_sandbox_id: "abc123".into(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                log_path: "c.log".into(),
                ..Default::default()
            }),
            sandbox_config: None,
        }
    }

    fn field<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_good_pod_passes() {
        let c = sandbox_config(&pod()).unwrap();
        assert_eq!(c.reservation_name(), "p_n_u_0");
        assert_eq!(c.log_directory, "/var/log/pods/p");
    }

    #[test]
    fn pod_fields_are_named() {
        type M = fn(&mut cri::RunPodSandboxRequest);
        let cases: Vec<(M, &str)> = vec![
            (|r| r.config = None, "config"),
            (
                |r| r.config.as_mut().unwrap().metadata = None,
                "config.metadata",
            ),
            (
                |r| {
                    r.config
                        .as_mut()
                        .unwrap()
                        .metadata
                        .as_mut()
                        .unwrap()
                        .name
                        .clear()
                },
                "config.metadata.name",
            ),
            (
                |r| r.config.as_mut().unwrap().metadata.as_mut().unwrap().uid = "a/b".into(),
                "config.metadata.uid",
            ),
            (
                |r| {
                    r.config
                        .as_mut()
                        .unwrap()
                        .metadata
                        .as_mut()
                        .unwrap()
                        .namespace = "x".repeat(300)
                },
                "config.metadata.namespace",
            ),
            (
                |r| r.config.as_mut().unwrap().hostname = "h".repeat(65),
                "config.hostname",
            ),
            (
                |r| r.config.as_mut().unwrap().log_directory = "/var/log/../etc".into(),
                "config.log_directory",
            ),
            (
                |r| r.config.as_mut().unwrap().log_directory = "relative".into(),
                "config.log_directory",
            ),
            (|r| r.runtime_handler = "kata".into(), "runtime_handler"),
            (
                |r| {
                    r.config.as_mut().unwrap().linux = Some(cri::LinuxPodSandboxConfig {
                        security_context: Some(cri::LinuxSandboxSecurityContext {
                            namespace_options: Some(cri::NamespaceOption {
                                pid: 42,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                },
                "config.linux.security_context.namespace_options.pid",
            ),
            (
                |r| {
                    r.config
                        .as_mut()
                        .unwrap()
                        .labels
                        .insert(String::new(), "v".into());
                },
                "config.labels",
            ),
        ];
        for (mutate, want) in cases {
            let mut r = pod();
            mutate(&mut r);
            assert_eq!(field(sandbox_config(&r)), want);
        }
    }

    #[test]
    fn container_fields_are_named() {
        assert_eq!(container_config(&ctr()).unwrap().0, "abc123");
        type M = fn(&mut cri::CreateContainerRequest);
        let cases: Vec<(M, &str)> = vec![
            (|r| r.pod_sandbox_id = "../x".into(), "pod_sandbox_id"),
            (|r| r.pod_sandbox_id = "a/b".into(), "pod_sandbox_id"),
            (|r| r.pod_sandbox_id.clear(), "pod_sandbox_id"),
            (|r| r.config = None, "config"),
            (
                |r| r.config.as_mut().unwrap().metadata = None,
                "config.metadata",
            ),
            (
                |r| r.config.as_mut().unwrap().image = None,
                "config.image.image",
            ),
            (
                |r| r.config.as_mut().unwrap().log_path = "../x".into(),
                "config.log_path",
            ),
            (
                |r| r.config.as_mut().unwrap().log_path = "/abs".into(),
                "config.log_path",
            ),
            (
                |r| r.config.as_mut().unwrap().args = vec!["a\0b".into()],
                "config.args[0]",
            ),
            (
                |r| r.config.as_mut().unwrap().command = vec!["x".repeat(MAX_ARG_LEN + 1)],
                "config.command[0]",
            ),
            (
                |r| {
                    r.config.as_mut().unwrap().envs = vec![cri::KeyValue {
                        key: "A=B".into(),
                        value: String::new(),
                    }]
                },
                "config.envs[0]",
            ),
            (|r| r.config.as_mut().unwrap().tty = true, "config.tty"),
            (
                |r| r.config.as_mut().unwrap().mounts = vec![cri::Mount::default()],
                "config.mounts",
            ),
            (
                |r| {
                    r.config.as_mut().unwrap().linux = Some(cri::LinuxContainerConfig {
                        resources: Some(cri::LinuxContainerResources {
                            memory_limit_in_bytes: -5,
                            ..Default::default()
                        }),
                        security_context: None,
                    })
                },
                "config.linux.resources.memory_limit_in_bytes",
            ),
            (
                |r| {
                    r.config.as_mut().unwrap().linux = Some(cri::LinuxContainerConfig {
                        resources: None,
                        security_context: Some(cri::LinuxContainerSecurityContext {
                            run_as_user: Some(cri::Int64Value { value: 1000 }),
                            ..Default::default()
                        }),
                    })
                },
                "config.linux.security_context.run_as_user",
            ),
        ];
        for (mutate, want) in cases {
            let mut r = ctr();
            mutate(&mut r);
            assert_eq!(field(container_config(&r)), want);
        }
    }

    #[test]
    fn exec_sync_fields_are_named() {
        let good = cri::ExecSyncRequest {
            container_id: "c1".into(),
            cmd: vec!["echo".into(), "hi".into()],
            timeout: 3,
        };
        assert_eq!(
            exec_sync(&good).unwrap(),
            (
                vec!["echo".to_owned(), "hi".to_owned()],
                Duration::from_secs(3)
            )
        );
        let mut no_id = good.clone();
        no_id.container_id.clear();
        assert!(field(exec_sync(&no_id)).starts_with("container_id"));
        let mut no_cmd = good.clone();
        no_cmd.cmd.clear();
        assert_eq!(field(exec_sync(&no_cmd)), "cmd");
        let mut nul = good.clone();
        nul.cmd[1] = "a\0b".into();
        assert_eq!(field(exec_sync(&nul)), "cmd[1]");
        let mut negative = good;
        negative.timeout = -1;
        assert_eq!(field(exec_sync(&negative)), "timeout");
    }

    #[test]
    fn ids_timeouts_and_filters() {
        assert!(object_id("container_id", "container", "abc").is_ok());
        for bad in ["", "a/b", "..", "a..b/c", "x\u{7}", &"a".repeat(77)] {
            assert_eq!(
                field(object_id("container_id", "container", bad)),
                "container_id"
            );
        }
        assert_eq!(stop_timeout(3), Ok(Duration::from_secs(3)));
        assert_eq!(stop_timeout(i64::MAX), Ok(MAX_STOP_TIMEOUT));
        assert_eq!(field(stop_timeout(-1)), "timeout");
        let f = cri::ContainerFilter {
            state: Some(cri::ContainerStateValue { state: 9 }),
            ..Default::default()
        };
        assert_eq!(field(container_filter(Some(&f))), "filter.state.state");
        let f = cri::ContainerFilter {
            pod_sandbox_id: "a/b".into(),
            ..Default::default()
        };
        assert_eq!(field(container_filter(Some(&f))), "filter.pod_sandbox_id");
        assert_eq!(container_filter(None), Ok(ContainerFilter::default()));
    }
}
