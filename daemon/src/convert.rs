//! berth's views ([`ContainerView`], [`SandboxView`], [`Event`]) as CRI messages.

use std::collections::HashMap;

use berth_core::{
    ContainerState, Event, EventKind, NamespaceMode, Resources, SandboxState, Target,
};
use berth_service::{ContainerView, SandboxView};
use k8s_cri::v1 as cri;
use serde_json::json;

fn map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The CRI enum of a container state.
pub fn container_state(s: ContainerState) -> cri::ContainerState {
    match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

/// The CRI enum of a sandbox state: only a running pause task is READY.
pub fn sandbox_state(s: SandboxState) -> cri::PodSandboxState {
    match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::NotReady | SandboxState::Unknown => cri::PodSandboxState::SandboxNotready,
    }
}

fn namespace_mode(m: NamespaceMode) -> i32 {
    match m {
        NamespaceMode::Pod => cri::NamespaceMode::Pod as i32,
        NamespaceMode::Container => cri::NamespaceMode::Container as i32,
        NamespaceMode::Node => cri::NamespaceMode::Node as i32,
    }
}

/// CRI `LinuxContainerResources` of berth's [`Resources`].
pub fn resources(r: &Resources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        ..Default::default()
    }
}

/// The image as CreateContainer sent it (what containerd's ListContainers reports).
fn image(v: &ContainerView) -> cri::ImageSpec {
    cri::ImageSpec {
        image: v.meta.config.image.clone(),
        user_specified_image: v.meta.config.image.clone(),
        ..Default::default()
    }
}

/// ContainerStatus's image as containerd's reports it (`ContainerStatus`,
/// docs/containerd-behaviour.md §4.1.1): the image's repo tag when it had one at creation,
/// else the image as sent.
fn status_image(v: &ContainerView) -> cri::ImageSpec {
    let tag = &v.meta.image.repo_tag;
    cri::ImageSpec {
        image: if tag.is_empty() {
            v.meta.config.image.clone()
        } else {
            tag.clone()
        },
        ..image(v)
    }
}

/// The image ID (`sha256:<config digest>`); the image as sent for a container recorded by
/// a berth that did not resolve images.
fn image_id(v: &ContainerView) -> String {
    if v.meta.image.id.is_empty() {
        v.meta.config.image.clone()
    } else {
        v.meta.image.id.clone()
    }
}

/// ContainerStatus's `image_ref` as containerd's: the repo digest if the image had one,
/// else the image ID.
fn status_image_ref(v: &ContainerView) -> String {
    if v.meta.image.repo_digest.is_empty() {
        image_id(v)
    } else {
        v.meta.image.repo_digest.clone()
    }
}

fn container_metadata(v: &ContainerView) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: v.meta.config.name.clone(),
        attempt: v.meta.config.attempt,
    }
}

/// A ListContainers item.
pub fn container(v: &ContainerView) -> cri::Container {
    cri::Container {
        id: v.meta.id.to_string(),
        pod_sandbox_id: v.meta.sandbox_id.to_string(),
        metadata: Some(container_metadata(v)),
        image: Some(image(v)),
        // containerd's ListContainers: the image ID.
        image_ref: image_id(v),
        state: container_state(v.state) as i32,
        created_at: v.status.created_at,
        labels: map(&v.meta.config.labels),
        annotations: map(&v.meta.config.annotations),
        image_id: image_id(v),
    }
}

/// A ContainerStatus (docs/containerd-behaviour.md §1.4: reason and times projected by the core).
pub fn container_status(v: &ContainerView) -> cri::ContainerStatus {
    let (started_at, finished_at) = v.status.cri_times();
    cri::ContainerStatus {
        id: v.meta.id.to_string(),
        metadata: Some(container_metadata(v)),
        state: container_state(v.state) as i32,
        created_at: v.status.created_at,
        started_at,
        finished_at,
        exit_code: v.status.exit_code,
        image: Some(status_image(v)),
        image_ref: status_image_ref(v),
        reason: v.status.cri_reason(),
        message: v.status.message.clone(),
        labels: map(&v.meta.config.labels),
        annotations: map(&v.meta.config.annotations),
        mounts: Vec::new(),
        log_path: v.meta.log_path.clone(),
        resources: v
            .status
            .resources
            .as_ref()
            .map(|r| cri::ContainerResources {
                linux: Some(resources(r)),
                windows: None,
            }),
        image_id: image_id(v),
        user: None,
    }
}

/// ContainerStatus's verbose `info` map: `{"info": <JSON>}` with the pid, the sandbox, the
/// removing flag and the config, like containerd's.
pub fn container_info(v: &ContainerView) -> HashMap<String, String> {
    let c = &v.meta.config;
    let info = json!({
        "sandboxID": v.meta.sandbox_id.as_str(),
        "pid": v.status.pid,
        "removing": v.removing,
        "reservedName": v.meta.name,
        "stopSignal": v.meta.stop_signal,
        "logPath": v.meta.log_path,
        "unknown": v.status.unknown,
        "image": {
            "id": v.meta.image.id,
            "name": v.meta.image.name,
            "repoTag": v.meta.image.repo_tag,
            "repoDigest": v.meta.image.repo_digest,
        },
        "config": {
            "name": c.name,
            "attempt": c.attempt,
            "image": c.image,
            "command": c.command,
            "args": c.args,
            "workingDir": c.working_dir,
            "envs": c.envs.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "logPath": c.log_path,
        },
    });
    HashMap::from([("info".to_owned(), info.to_string())])
}

fn sandbox_metadata(v: &SandboxView) -> cri::PodSandboxMetadata {
    let c = &v.meta.config;
    cri::PodSandboxMetadata {
        name: c.name.clone(),
        uid: c.uid.clone(),
        namespace: c.namespace.clone(),
        attempt: c.attempt,
    }
}

/// A ListPodSandbox item.
pub fn sandbox(v: &SandboxView) -> cri::PodSandbox {
    cri::PodSandbox {
        id: v.meta.id.to_string(),
        metadata: Some(sandbox_metadata(v)),
        state: sandbox_state(v.state) as i32,
        created_at: v.meta.created_at,
        labels: map(&v.meta.config.labels),
        annotations: map(&v.meta.config.annotations),
        runtime_handler: String::new(),
    }
}

/// A PodSandboxStatus. The network is the host's (no pod IP of its own).
pub fn sandbox_status(v: &SandboxView) -> cri::PodSandboxStatus {
    let c = &v.meta.config;
    cri::PodSandboxStatus {
        id: v.meta.id.to_string(),
        metadata: Some(sandbox_metadata(v)),
        state: sandbox_state(v.state) as i32,
        created_at: v.meta.created_at,
        network: Some(cri::PodSandboxNetworkStatus::default()),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: namespace_mode(c.pid_namespace),
                    ipc: namespace_mode(c.ipc_namespace),
                    ..Default::default()
                }),
            }),
        }),
        labels: map(&c.labels),
        annotations: map(&c.annotations),
        runtime_handler: String::new(),
    }
}

/// PodSandboxStatus's verbose `info` map.
pub fn sandbox_info(v: &SandboxView) -> HashMap<String, String> {
    let c = &v.meta.config;
    let info = json!({
        "pid": v.pid,
        "state": format!("{:?}", v.state),
        "reservedName": v.meta.name,
        "hostNetwork": true,
        "exit": v.exit.map(|e| json!({"code": e.code, "exitedAt": e.exited_at})),
        "config": {
            "hostname": c.hostname,
            "logDirectory": c.log_directory,
            "pidNamespace": format!("{:?}", c.pid_namespace),
            "ipcNamespace": format!("{:?}", c.ipc_namespace),
        },
    });
    HashMap::from([("info".to_owned(), info.to_string())])
}

/// The CRI event type of an event kind.
pub fn event_type(k: EventKind) -> cri::ContainerEventType {
    match k {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    }
}

/// A GetContainerEvents message: the object's id (a sandbox event carries the sandbox id,
/// as in containerd), the type and time, and the statuses known when it is sent.
pub fn event(
    e: &Event,
    sandbox: Option<&SandboxView>,
    containers: &[ContainerView],
) -> cri::ContainerEventResponse {
    let id = match &e.target {
        Target::Container(id) => id.to_string(),
        Target::Sandbox(id) => id.to_string(),
    };
    cri::ContainerEventResponse {
        container_id: id,
        container_event_type: event_type(e.kind) as i32,
        created_at: e.at,
        pod_sandbox_status: sandbox.map(sandbox_status),
        containers_statuses: containers.iter().map(container_status).collect(),
    }
}
