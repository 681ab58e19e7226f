//! The OCI runtime spec of berth's containers: containerd's default Linux spec
//! (`oci.populateDefaultUnixSpec`) with the process, namespaces, cgroup and resources
//! filled in from CRI's config and the image config (CRI's `containerSpec`).
//!
//! Pure functions: no I/O, so every rule here is unit-tested.

use berth_core::{ContainerConfig, NamespaceMode, Resources, SandboxConfig};
use serde_json::{Value, json};

use crate::image::ImageConfig;

/// Type URL of a JSON OCI runtime spec in `Container.spec`.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// `PATH` of a process whose image sets none (containerd's `defaultUnixEnv`).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Highest `oom_score_adj` the kernel accepts.
const OOM_SCORE_ADJ_MAX: i64 = 1000;

const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// One Linux namespace of the spec: a new one (`path: None`) or one to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// OCI namespace type (`pid`, `ipc`, `uts`, `mount`).
    pub kind: &'static str,
    /// `/proc/<pid>/ns/<kind>` of the namespace to join; `None` = a new namespace.
    pub path: Option<String>,
}

/// What the spec is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecInput {
    /// containerd namespace (the cgroup is `/<namespace>/<id>`).
    pub namespace: String,
    /// Container id.
    pub id: String,
    /// The process.
    pub process: Process,
    /// Hostname; only set in the spec when the container gets its own UTS namespace.
    pub hostname: String,
    /// The namespaces; the network is always the host's for now.
    pub namespaces: Vec<Namespace>,
    /// Resource limits.
    pub resources: Option<Resources>,
    /// Lowest `oom_score_adj` this process may set (its own current value: without
    /// CAP_SYS_RESOURCE the kernel refuses anything lower).
    pub oom_score_adj_floor: i64,
    /// Mount the root file system read-only (containerd's `WithRootFSReadonly`).
    pub readonly_rootfs: bool,
}

/// A container's init process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// Command line.
    pub args: Vec<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Why a process cannot be derived from the CRI and image configs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Neither CRI nor the image gives a command.
    #[error("no command: the container config and image {image:?} give no entrypoint or cmd")]
    NoCommand {
        /// The image.
        image: String,
    },
    /// The image's user is a name; berth resolves numeric users only.
    #[error("image {image:?} user {user:?} is not numeric (uid or uid:gid)")]
    User {
        /// The image.
        image: String,
        /// The user string.
        user: String,
    },
    /// The working directory is relative.
    #[error("working directory {dir:?} is not absolute")]
    WorkingDir {
        /// The directory.
        dir: String,
    },
}

/// CRI's process rules (containerd `getProcessArgs`): `command` replaces the image
/// entrypoint and then only `args` follow; without `command`, `args` replaces the image
/// cmd. Env: PATH default, then the image's, then CRI's (a later key replaces an earlier
/// one in place). Working dir: CRI's, else the image's, else `/`.
pub fn container_process(
    cfg: &ContainerConfig,
    image: &ImageConfig,
    hostname: &str,
) -> Result<Process, ProcessError> {
    let args: Vec<String> = if !cfg.command.is_empty() {
        cfg.command.iter().chain(&cfg.args).cloned().collect()
    } else {
        let cmd = if cfg.args.is_empty() {
            &image.cmd
        } else {
            &cfg.args
        };
        image.entrypoint.iter().chain(cmd).cloned().collect()
    };
    if args.is_empty() {
        return Err(ProcessError::NoCommand {
            image: cfg.image.clone(),
        });
    }
    let mut env = vec![DEFAULT_PATH.to_owned()];
    for kv in &image.env {
        set_env(&mut env, kv.clone());
    }
    if !hostname.is_empty() {
        set_env(&mut env, format!("HOSTNAME={hostname}"));
    }
    for (k, v) in &cfg.envs {
        set_env(&mut env, format!("{k}={v}"));
    }
    let cwd = [cfg.working_dir.as_str(), image.working_dir.as_str(), "/"]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or("/")
        .to_owned();
    if !cwd.starts_with('/') {
        return Err(ProcessError::WorkingDir { dir: cwd });
    }
    let (uid, gid) = parse_user(&image.user).ok_or_else(|| ProcessError::User {
        image: cfg.image.clone(),
        user: image.user.clone(),
    })?;
    Ok(Process {
        args,
        env,
        cwd,
        uid,
        gid,
    })
}

/// The pause process of a sandbox: `command` if given, else the image's entrypoint + cmd.
pub fn sandbox_process(
    command: &[String],
    image_ref: &str,
    image: &ImageConfig,
) -> Result<Process, ProcessError> {
    let cfg = ContainerConfig {
        image: image_ref.to_owned(),
        command: command.to_vec(),
        ..ContainerConfig::default()
    };
    container_process(&cfg, image, "")
}

/// Sets `KEY=value` in `env`, replacing an existing `KEY` in place.
fn set_env(env: &mut Vec<String>, kv: String) {
    let key = kv.split('=').next().unwrap_or_default().to_owned();
    match env
        .iter_mut()
        .find(|e| e.split('=').next() == Some(key.as_str()))
    {
        Some(slot) => *slot = kv,
        None => env.push(kv),
    }
}

/// `""` and `root` are 0:0; `uid` and `uid:gid` are numeric; names are not resolved.
fn parse_user(user: &str) -> Option<(u32, u32)> {
    match user {
        "" | "root" | "root:root" => Some((0, 0)),
        _ => match user.split_once(':') {
            Some((u, g)) => Some((u.parse().ok()?, g.parse().ok()?)),
            None => {
                let u = user.parse().ok()?;
                Some((u, u))
            }
        },
    }
}

/// A sandbox's namespaces: its own pid and ipc unless the pod uses the node's, its own
/// UTS (for the hostname) and mount namespace.
pub fn sandbox_namespaces(cfg: &SandboxConfig) -> Vec<Namespace> {
    let mut ns = Vec::new();
    for (kind, mode) in [("pid", cfg.pid_namespace), ("ipc", cfg.ipc_namespace)] {
        if mode != NamespaceMode::Node {
            ns.push(Namespace { kind, path: None });
        }
    }
    ns.push(Namespace {
        kind: "uts",
        path: None,
    });
    ns.push(Namespace {
        kind: "mount",
        path: None,
    });
    ns
}

/// A container's namespaces: pid and ipc per the pod's modes (Pod: join the pause
/// process's; Container: its own; Node: the host's), the pod's UTS namespace, its own mount
/// namespace.
pub fn container_namespaces(cfg: &SandboxConfig, pause_pid: u32) -> Vec<Namespace> {
    let join = |kind: &str| Some(format!("/proc/{pause_pid}/ns/{kind}"));
    let mut ns = Vec::new();
    for (kind, mode) in [("pid", cfg.pid_namespace), ("ipc", cfg.ipc_namespace)] {
        match mode {
            NamespaceMode::Pod => ns.push(Namespace {
                kind,
                path: join(kind),
            }),
            NamespaceMode::Container => ns.push(Namespace { kind, path: None }),
            NamespaceMode::Node => {}
        }
    }
    ns.push(Namespace {
        kind: "uts",
        path: join("uts"),
    });
    ns.push(Namespace {
        kind: "mount",
        path: None,
    });
    ns
}

/// `oom_score_adj` as this process may set it: at least `floor`, at most 1000.
pub fn clamp_oom_score_adj(requested: i64, floor: i64) -> i64 {
    requested.max(floor).min(OOM_SCORE_ADJ_MAX)
}

/// The JSON OCI runtime spec (root `rootfs`, relative to the bundle: the rootfs comes as
/// snapshot mounts with the task).
pub fn build(input: &SpecInput) -> Value {
    let p = &input.process;
    let mut process = json!({
        "terminal": false,
        "user": { "uid": p.uid, "gid": p.gid },
        "args": p.args,
        "env": p.env,
        "cwd": p.cwd,
        "capabilities": {
            "bounding": DEFAULT_CAPS,
            "effective": DEFAULT_CAPS,
            "permitted": DEFAULT_CAPS,
        },
        "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
        "noNewPrivileges": true,
    });
    let mut resources = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(r) = &input.resources {
        process["oomScoreAdj"] = json!(clamp_oom_score_adj(
            r.oom_score_adj,
            input.oom_score_adj_floor
        ));
        if r.memory_limit_in_bytes > 0 {
            resources["memory"] = json!({ "limit": r.memory_limit_in_bytes });
        }
        let mut cpu = serde_json::Map::new();
        if r.cpu_shares > 0 {
            cpu.insert("shares".into(), json!(r.cpu_shares));
        }
        if r.cpu_quota > 0 {
            cpu.insert("quota".into(), json!(r.cpu_quota));
        }
        if r.cpu_period > 0 {
            cpu.insert("period".into(), json!(r.cpu_period));
        }
        if !r.cpuset_cpus.is_empty() {
            cpu.insert("cpus".into(), json!(r.cpuset_cpus));
        }
        if !r.cpuset_mems.is_empty() {
            cpu.insert("mems".into(), json!(r.cpuset_mems));
        }
        if !cpu.is_empty() {
            resources["cpu"] = Value::Object(cpu);
        }
    }
    let namespaces: Vec<Value> = input
        .namespaces
        .iter()
        .map(|n| match &n.path {
            Some(path) => json!({ "type": n.kind, "path": path }),
            None => json!({ "type": n.kind }),
        })
        .collect();
    let own_uts = input
        .namespaces
        .iter()
        .any(|n| n.kind == "uts" && n.path.is_none());
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": { "path": "rootfs", "readonly": input.readonly_rootfs },
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/run", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
        ],
        "linux": {
            "resources": resources,
            "cgroupsPath": format!("/{}/{}", input.namespace, input.id),
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    if own_uts && !input.hostname.is_empty() {
        spec["hostname"] = json!(input.hostname);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/img/bin".into(), "A=1".into()],
            working_dir: "/img".into(),
            user: String::new(),
        }
    }

    fn cfg(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            image: "busybox".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn cri_command_and_args_rules() {
        let img = image(&["/ep"], &["cmd1"]);
        let args = |c: &ContainerConfig| container_process(c, &img, "").unwrap().args;
        assert_eq!(args(&cfg(&[], &[])), vec!["/ep", "cmd1"], "image ep + cmd");
        assert_eq!(
            args(&cfg(&[], &["a"])),
            vec!["/ep", "a"],
            "args replace cmd"
        );
        assert_eq!(
            args(&cfg(&["/c"], &[])),
            vec!["/c"],
            "command drops image cmd"
        );
        assert_eq!(args(&cfg(&["/c"], &["a"])), vec!["/c", "a"]);
        let empty = ImageConfig::default();
        assert_eq!(
            container_process(&cfg(&[], &[]), &empty, ""),
            Err(ProcessError::NoCommand {
                image: "busybox".into()
            })
        );
    }

    #[test]
    fn env_layers_replace_in_place() {
        let img = image(&[], &["sh"]);
        let mut c = cfg(&[], &[]);
        c.envs = vec![("A".into(), "2".into()), ("B".into(), "3".into())];
        let p = container_process(&c, &img, "pod-host").unwrap();
        assert_eq!(
            p.env,
            vec!["PATH=/img/bin", "A=2", "HOSTNAME=pod-host", "B=3"]
        );
        assert_eq!(p.cwd, "/img");
        c.working_dir = "/work".into();
        assert_eq!(container_process(&c, &img, "").unwrap().cwd, "/work");
        let bare = ImageConfig {
            cmd: vec!["sh".into()],
            ..ImageConfig::default()
        };
        let p = container_process(&cfg(&[], &[]), &bare, "").unwrap();
        assert_eq!(
            (p.env, p.cwd),
            (vec![DEFAULT_PATH.to_owned()], "/".to_owned())
        );
    }

    #[test]
    fn users() {
        assert_eq!(parse_user(""), Some((0, 0)));
        assert_eq!(parse_user("1000"), Some((1000, 1000)));
        assert_eq!(parse_user("1000:50"), Some((1000, 50)));
        assert_eq!(parse_user("nobody"), None);
        let mut img = image(&[], &["sh"]);
        img.user = "nobody".into();
        assert!(matches!(
            container_process(&cfg(&[], &[]), &img, ""),
            Err(ProcessError::User { .. })
        ));
    }

    #[test]
    fn namespaces_follow_pod_modes() {
        let mut pod = SandboxConfig::default();
        let ns = container_namespaces(&pod, 42);
        assert_eq!(ns[0].path.as_deref(), Some("/proc/42/ns/pid"));
        assert_eq!(ns[1].path.as_deref(), Some("/proc/42/ns/ipc"));
        assert_eq!(ns[2].path.as_deref(), Some("/proc/42/ns/uts"));
        assert_eq!((ns[3].kind, ns[3].path.as_deref()), ("mount", None));
        pod.pid_namespace = NamespaceMode::Container;
        pod.ipc_namespace = NamespaceMode::Node;
        let ns = container_namespaces(&pod, 42);
        assert_eq!(
            ns.iter().map(|n| n.kind).collect::<Vec<_>>(),
            vec!["pid", "uts", "mount"]
        );
        assert_eq!(ns[0].path, None);
        let sb = sandbox_namespaces(&pod);
        assert_eq!(
            sb.iter().map(|n| n.kind).collect::<Vec<_>>(),
            vec!["pid", "uts", "mount"]
        );
        assert!(sb.iter().all(|n| n.path.is_none()));
    }

    #[test]
    fn oom_score_adj_is_clamped_to_what_we_may_set() {
        assert_eq!(clamp_oom_score_adj(-998, 0), 0);
        assert_eq!(clamp_oom_score_adj(-998, -1000), -998);
        assert_eq!(clamp_oom_score_adj(500, 0), 500);
        assert_eq!(clamp_oom_score_adj(5000, 0), 1000);
    }

    #[test]
    fn spec_carries_cgroup_resources_and_hostname() {
        let input = SpecInput {
            namespace: "berth".into(),
            id: "c1".into(),
            process: Process {
                args: vec!["sh".into()],
                env: vec![DEFAULT_PATH.into()],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
            },
            hostname: "h".into(),
            namespaces: sandbox_namespaces(&SandboxConfig::default()),
            resources: Some(Resources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                cpuset_cpus: "0".into(),
                oom_score_adj: -998,
                ..Resources::default()
            }),
            oom_score_adj_floor: 0,
            readonly_rootfs: false,
        };
        let s = build(&input);
        assert_eq!(s["linux"]["cgroupsPath"], "/berth/c1");
        assert_eq!(s["hostname"], "h");
        assert_eq!(s["root"]["path"], "rootfs");
        assert_eq!(s["root"]["readonly"], false);
        let ro = build(&SpecInput {
            readonly_rootfs: true,
            ..input.clone()
        });
        assert_eq!(ro["root"]["readonly"], true);
        assert_eq!(s["process"]["oomScoreAdj"], 0);
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(s["linux"]["resources"]["cpu"]["period"], 100_000);
        assert_eq!(s["linux"]["resources"]["cpu"]["cpus"], "0");
        assert!(s["linux"]["resources"]["cpu"].get("mems").is_none());
        let dests: Vec<&str> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
        ] {
            assert!(dests.contains(&d), "{d} missing");
        }
        let types: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!types.contains(&"network"), "host network");
        let joined = SpecInput {
            namespaces: container_namespaces(&SandboxConfig::default(), 7),
            resources: None,
            ..input
        };
        let s = build(&joined);
        assert!(s.get("hostname").is_none(), "joins the pod's UTS namespace");
        assert!(s["process"].get("oomScoreAdj").is_none());
        assert_eq!(s["linux"]["namespaces"][0]["path"], "/proc/7/ns/pid");
    }
}
