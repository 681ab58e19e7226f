//! `berth`, a small CRI client (crictl's verbs) for nodes without crictl: version, info,
//! runp, stopp, rmp, pods, inspectp, create, start, stop, rm, ps, inspect, logs. Tables like
//! crictl's, or JSON with `--output json`. Pod and container configs come from flags or
//! from a crictl-style JSON (or TOML) file; flags override the file.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_cri::v1 as cri;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{CriClient, connect};
use crate::crilog;

/// The default CRI socket of berthd.
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "A small CRI client for berthd")]
pub struct Cli {
    /// CRI socket.
    #[arg(long, short = 'r', env = "BERTH_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// Deadline of each request (e.g. 30s, 2m).
    #[arg(long, default_value = "2m", value_parser = crate::config::parse_duration, global = true)]
    pub request_timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and ids, like crictl.
    Table,
    /// JSON.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runtime name and versions.
    Version,
    /// Runtime conditions (CRI Status).
    Info,
    /// Run a pod sandbox; prints its id.
    Runp(RunpArgs),
    /// Stop pod sandboxes (their containers first).
    Stopp {
        /// Pod ids (or unique prefixes).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove pod sandboxes (and their containers).
    Rmp {
        /// Pod ids (or unique prefixes).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List pod sandboxes.
    Pods(PodsArgs),
    /// Show a pod sandbox's status (verbose, JSON).
    Inspectp {
        /// Pod ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Create a container in a pod; prints its id.
    Create(CreateArgs),
    /// Start containers.
    Start {
        /// Container ids (or unique prefixes).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Grace period in seconds.
        #[arg(long, short = 't', default_value_t = 10)]
        timeout: i64,
        /// Container ids (or unique prefixes).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers (a running one is killed first).
    Rm {
        /// Container ids (or unique prefixes).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List containers (running ones unless --all).
    Ps(PsArgs),
    /// Show a container's status (verbose, JSON).
    Inspect {
        /// Container ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a container's log.
    Logs(LogsArgs),
}

/// `berth runp`.
#[derive(Debug, Args)]
pub struct RunpArgs {
    /// crictl-style pod config (JSON, or TOML by its .toml extension).
    pub config: Option<PathBuf>,
    /// Pod name.
    #[arg(long)]
    pub name: Option<String>,
    /// Pod namespace (default "default").
    #[arg(long)]
    pub namespace: Option<String>,
    /// Pod uid (default: the name and a random suffix).
    #[arg(long)]
    pub uid: Option<String>,
    /// Attempt number.
    #[arg(long)]
    pub attempt: Option<u32>,
    /// Hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Directory of the pod's container logs (default /var/log/pods/<ns>_<name>_<uid>).
    #[arg(long)]
    pub log_dir: Option<String>,
    /// Label key=value (repeatable).
    #[arg(long = "label", short = 'l', value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// PID namespace mode: pod, container or node.
    #[arg(long, value_parser = ns_mode)]
    pub pid: Option<i32>,
    /// IPC namespace mode: pod or node.
    #[arg(long, value_parser = ns_mode)]
    pub ipc: Option<i32>,
}

/// `berth pods`.
#[derive(Debug, Args)]
pub struct PodsArgs {
    /// Pod id or prefix.
    #[arg(long)]
    pub id: Option<String>,
    /// Pod name.
    #[arg(long)]
    pub name: Option<String>,
    /// Pod namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// State: ready or notready.
    #[arg(long, value_parser = ["ready", "notready"])]
    pub state: Option<String>,
    /// Label selection and output shape, as for `ps`.
    #[command(flatten)]
    pub list: ListArgs,
}

/// The options `pods` and `ps` share, with the same meaning for both lists.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Label key=value (repeatable).
    #[arg(long = "label", short = 'l', value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Only ids.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Full ids.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `berth create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The pod's id (or unique prefix).
    pub pod: String,
    /// crictl-style container config (JSON, or TOML by its .toml extension).
    pub config: Option<PathBuf>,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Image reference (must be in containerd's image store).
    #[arg(long)]
    pub image: Option<String>,
    /// Log path relative to the pod's log directory (default <name>/<attempt>.log).
    #[arg(long)]
    pub log_path: Option<String>,
    /// Working directory.
    #[arg(long)]
    pub workdir: Option<String>,
    /// Environment KEY=value (repeatable).
    #[arg(long = "env", short = 'e', value_parser = key_value)]
    pub envs: Vec<(String, String)>,
    /// Label key=value (repeatable).
    #[arg(long = "label", short = 'l', value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Command and arguments (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `berth ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every container, not only running ones.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Container id or prefix.
    #[arg(long)]
    pub id: Option<String>,
    /// Pod id or prefix.
    #[arg(long, short = 'p')]
    pub pod: Option<String>,
    /// State: created, running, exited or unknown.
    #[arg(long, value_parser = ["created", "running", "exited", "unknown"])]
    pub state: Option<String>,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Label selection and output shape, as for `pods`.
    #[command(flatten)]
    pub list: ListArgs,
}

/// `berth logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Container id (or unique prefix).
    pub id: String,
    /// Keep printing new output until the container has exited.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Prefix each line with its timestamp.
    #[arg(long, short = 't')]
    pub timestamps: bool,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=value")),
    }
}

fn ns_mode(s: &str) -> Result<i32, String> {
    match s.to_ascii_lowercase().as_str() {
        "pod" => Ok(cri::NamespaceMode::Pod as i32),
        "container" => Ok(cri::NamespaceMode::Container as i32),
        "node" | "host" => Ok(cri::NamespaceMode::Node as i32),
        _ => Err(format!("{s:?} is not pod, container or node")),
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The socket could not be reached.
    #[error(transparent)]
    Connect(#[from] crate::client::ConnectError),
    /// The runtime refused.
    #[error("{rpc}: {code:?}: {message}")]
    Rpc {
        /// The RPC.
        rpc: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
    /// The request did not finish in time.
    #[error("{rpc}: no answer within {after:?}")]
    Timeout {
        /// The RPC.
        rpc: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// A config file is unreadable or malformed.
    #[error("{path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A required option is missing.
    #[error("{0}")]
    Usage(String),
    /// Reading a log or writing output failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

struct Ctx {
    cri: CriClient,
    output: Output,
    timeout: Duration,
}

impl Ctx {
    async fn call<T>(
        &self,
        rpc: &'static str,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, f).await {
            Err(_) => Err(CliError::Timeout {
                rpc,
                after: self.timeout,
            }),
            Ok(Err(s)) => Err(CliError::Rpc {
                rpc,
                code: s.code(),
                message: s.message().to_owned(),
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Runs `rpc` for each id in order, each on a client of its own and under the request
    /// deadline, and hands each answer to `show`; the first failure (of the call or of
    /// `show`) ends the command, so the ids after it are not tried.
    async fn each_id<T, F, Fut>(
        &self,
        ids: Vec<String>,
        rpc: &'static str,
        mut request: F,
        mut show: impl FnMut(&str, T) -> Result<(), CliError>,
    ) -> Result<(), CliError>
    where
        F: FnMut(CriClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        for id in ids {
            let answer = self
                .call(rpc, request(self.cri.clone(), id.clone()))
                .await?;
            show(&id, answer)?;
        }
        Ok(())
    }

    /// A container's status (non-verbose ContainerStatus).
    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus, CliError> {
        let mut c = self.cri.clone();
        Ok(self
            .call(
                "ContainerStatus",
                c.container_status(cri::ContainerStatusRequest {
                    container_id: id.to_owned(),
                    verbose: false,
                }),
            )
            .await?
            .status
            .unwrap_or_default())
    }
}

/// Runs `berth` with the process's arguments; the exit code is 1 on any error.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(CliError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn out_err(e: io::Error) -> CliError {
    CliError::Io {
        what: "write output".into(),
        source: e,
    }
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(out_err)?;
    out.flush().map_err(out_err)
}

/// Prints one id a line (`--quiet` lists).
fn print_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), CliError> {
    print(&ids.map(|id| format!("{id}\n")).collect::<String>())
}

fn print_json(v: &Value) -> Result<(), CliError> {
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ))
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let cri = connect(&cli.socket).await?;
    let mut ctx = Ctx {
        cri,
        output: cli.output,
        timeout: cli.request_timeout,
    };
    match cli.command {
        Command::Version => version(&mut ctx).await,
        Command::Info => info(&mut ctx).await,
        Command::Runp(a) => runp(&mut ctx, a).await,
        Command::Stopp { ids } => {
            ctx.each_id(
                ids,
                "StopPodSandbox",
                |mut c, pod_sandbox_id| async move {
                    c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id })
                        .await
                },
                |id, _| print(&format!("Stopped sandbox {id}\n")),
            )
            .await
        }
        Command::Rmp { ids } => {
            ctx.each_id(
                ids,
                "RemovePodSandbox",
                |mut c, pod_sandbox_id| async move {
                    c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id })
                        .await
                },
                |id, _| print(&format!("Removed sandbox {id}\n")),
            )
            .await
        }
        Command::Pods(a) => pods(&mut ctx, a).await,
        Command::Inspectp { ids } => {
            ctx.each_id(
                ids,
                "PodSandboxStatus",
                |mut c, pod_sandbox_id| async move {
                    c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                        pod_sandbox_id,
                        verbose: true,
                    })
                    .await
                },
                |_, r| {
                    let mut v = json!({
                        "status": r.status.as_ref().map(sandbox_status_json),
                        "containers": r.containers_statuses.iter().map(container_status_json).collect::<Vec<_>>(),
                    });
                    add_info(&mut v, &r.info);
                    print_json(&v)
                },
            )
            .await
        }
        Command::Create(a) => create(&mut ctx, a).await,
        Command::Start { ids } => {
            ctx.each_id(
                ids,
                "StartContainer",
                |mut c, container_id| async move {
                    c.start_container(cri::StartContainerRequest { container_id })
                        .await
                },
                |id, _| print(&format!("{id}\n")),
            )
            .await
        }
        Command::Stop { timeout, ids } => {
            ctx.each_id(
                ids,
                "StopContainer",
                |mut c, container_id| async move {
                    c.stop_container(cri::StopContainerRequest {
                        container_id,
                        timeout,
                    })
                    .await
                },
                |id, _| print(&format!("{id}\n")),
            )
            .await
        }
        Command::Rm { ids } => {
            ctx.each_id(
                ids,
                "RemoveContainer",
                |mut c, container_id| async move {
                    c.remove_container(cri::RemoveContainerRequest { container_id })
                        .await
                },
                |id, _| print(&format!("{id}\n")),
            )
            .await
        }
        Command::Ps(a) => ps(&mut ctx, a).await,
        Command::Inspect { ids } => {
            ctx.each_id(
                ids,
                "ContainerStatus",
                |mut c, container_id| async move {
                    c.container_status(cri::ContainerStatusRequest {
                        container_id,
                        verbose: true,
                    })
                    .await
                },
                |_, r| {
                    let mut v = json!({ "status": r.status.as_ref().map(container_status_json) });
                    add_info(&mut v, &r.info);
                    print_json(&v)
                },
            )
            .await
        }
        Command::Logs(a) => logs(&mut ctx, a).await,
    }
}

fn add_info(v: &mut Value, info: &HashMap<String, String>) {
    for (k, text) in info {
        v[k] = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()));
    }
}

async fn version(ctx: &mut Ctx) -> Result<(), CliError> {
    let mut c = ctx.cri.clone();
    let v = ctx
        .call("Version", c.version(cri::VersionRequest::default()))
        .await?;
    match ctx.output {
        Output::Json => print_json(&json!({
            "version": v.version,
            "runtimeName": v.runtime_name,
            "runtimeVersion": v.runtime_version,
            "runtimeApiVersion": v.runtime_api_version,
        })),
        Output::Table => print(&format!(
            "Version:  {}\nRuntimeName:  {}\nRuntimeVersion:  {}\nRuntimeApiVersion:  {}\n",
            v.version, v.runtime_name, v.runtime_version, v.runtime_api_version
        )),
    }
}

async fn info(ctx: &mut Ctx) -> Result<(), CliError> {
    let mut c = ctx.cri.clone();
    let s = ctx
        .call("Status", c.status(cri::StatusRequest { verbose: true }))
        .await?;
    let conditions: Vec<Value> = s
        .status
        .map(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message}))
        .collect();
    let mut v = json!({ "status": { "conditions": conditions } });
    for (k, text) in &s.info {
        v[k] = Value::String(text.clone());
    }
    print_json(&v)
}

// ---- config files (crictl's JSON shape, snake_case or camelCase) ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodFile {
    metadata: PodMeta,
    hostname: String,
    #[serde(alias = "logDirectory")]
    log_directory: String,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    linux: Option<PodLinux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodMeta {
    name: String,
    namespace: String,
    uid: String,
    attempt: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodLinux {
    #[serde(alias = "securityContext")]
    security_context: Option<PodSecurity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodSecurity {
    #[serde(alias = "namespaceOptions")]
    namespace_options: Option<NsOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NsOptions {
    network: Mode,
    pid: Mode,
    ipc: Mode,
}

/// A namespace mode as a name ("POD") or a number (0).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Mode {
    #[default]
    Unset,
    Number(i32),
    Name(String),
}

impl Mode {
    fn value(&self, field: &str) -> Result<i32, String> {
        match self {
            Mode::Unset => Ok(0),
            Mode::Number(n) => Ok(*n),
            Mode::Name(s) => ns_mode(s).map_err(|e| format!("{field}: {e}")),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerFile {
    metadata: ContainerMeta,
    image: ImageRef,
    command: Vec<String>,
    args: Vec<String>,
    #[serde(alias = "workingDir")]
    working_dir: String,
    envs: Vec<EnvVar>,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    #[serde(alias = "logPath")]
    log_path: String,
    linux: Option<ContainerLinux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerMeta {
    name: String,
    attempt: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImageRef {
    image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EnvVar {
    key: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerLinux {
    resources: Option<ResourcesFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResourcesFile {
    #[serde(alias = "cpuPeriod")]
    cpu_period: i64,
    #[serde(alias = "cpuQuota")]
    cpu_quota: i64,
    #[serde(alias = "cpuShares")]
    cpu_shares: i64,
    #[serde(alias = "memoryLimitInBytes")]
    memory_limit_in_bytes: i64,
    #[serde(alias = "oomScoreAdj")]
    oom_score_adj: i64,
    #[serde(alias = "cpusetCpus")]
    cpuset_cpus: String,
    #[serde(alias = "cpusetMems")]
    cpuset_mems: String,
}

fn read_config<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CliError> {
    let bad = |message: String| CliError::ConfigFile {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| bad(e.to_string()))
    } else {
        serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON config: {e}")))
    }
}

/// The flag's value if it was given, else the config file's unless that is empty (serde
/// leaves a missing field empty, and an empty value means "use the default").
fn flag_or_file(flag: &Option<String>, file: String) -> Option<String> {
    flag.clone().or(Some(file).filter(|s| !s.is_empty()))
}

fn random_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:08x}",
        (nanos as u64 ^ u64::from(std::process::id()) << 20) & 0xffff_ffff
    )
}

/// The RunPodSandbox request of a `runp` command line.
fn pod_request(a: &RunpArgs) -> Result<cri::RunPodSandboxRequest, CliError> {
    let file: PodFile = match &a.config {
        Some(p) => read_config(p)?,
        None => PodFile::default(),
    };
    let name = a.name.clone().unwrap_or(file.metadata.name);
    if name.is_empty() {
        return Err(CliError::Usage(
            "runp needs a pod name: --name NAME or a config file with metadata.name".into(),
        ));
    }
    let namespace =
        flag_or_file(&a.namespace, file.metadata.namespace).unwrap_or_else(|| "default".into());
    let uid = flag_or_file(&a.uid, file.metadata.uid)
        .unwrap_or_else(|| format!("{name}-{}", random_suffix()));
    let log_directory = flag_or_file(&a.log_dir, file.log_directory)
        .unwrap_or_else(|| format!("/var/log/pods/{namespace}_{name}_{uid}"));
    let mut labels = file.labels;
    labels.extend(a.labels.iter().cloned());
    let ns = file
        .linux
        .and_then(|l| l.security_context)
        .and_then(|s| s.namespace_options)
        .unwrap_or_default();
    let bad_mode = |message: String| CliError::Usage(message);
    let options = cri::NamespaceOption {
        network: ns.network.value("network").map_err(bad_mode)?,
        pid: a
            .pid
            .map_or_else(|| ns.pid.value("pid"), Ok)
            .map_err(bad_mode)?,
        ipc: a
            .ipc
            .map_or_else(|| ns.ipc.value("ipc"), Ok)
            .map_err(bad_mode)?,
        ..Default::default()
    };
    Ok(cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid,
                namespace,
                attempt: a.attempt.unwrap_or(file.metadata.attempt),
            }),
            hostname: flag_or_file(&a.hostname, file.hostname).unwrap_or(name),
            log_directory,
            labels,
            annotations: file.annotations,
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(options),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    })
}

async fn runp(ctx: &mut Ctx, a: RunpArgs) -> Result<(), CliError> {
    let req = pod_request(&a)?;
    let mut c = ctx.cri.clone();
    let r = ctx.call("RunPodSandbox", c.run_pod_sandbox(req)).await?;
    match ctx.output {
        Output::Json => print_json(&json!({ "id": r.pod_sandbox_id })),
        Output::Table => print(&format!("{}\n", r.pod_sandbox_id)),
    }
}

/// The CreateContainer request of a `create` command line.
fn container_request(a: &CreateArgs) -> Result<cri::CreateContainerRequest, CliError> {
    let file: ContainerFile = match &a.config {
        Some(p) => read_config(p)?,
        None => ContainerFile::default(),
    };
    let name = a.name.clone().unwrap_or(file.metadata.name);
    if name.is_empty() {
        return Err(CliError::Usage(
            "create needs a container name: --name NAME or a config file with metadata.name".into(),
        ));
    }
    let image = a.image.clone().unwrap_or(file.image.image);
    if image.is_empty() {
        return Err(CliError::Usage(
            "create needs an image: --image REF or a config file with image.image".into(),
        ));
    }
    let attempt = file.metadata.attempt;
    let log_path =
        flag_or_file(&a.log_path, file.log_path).unwrap_or_else(|| format!("{name}/{attempt}.log"));
    let mut envs: Vec<cri::KeyValue> = file
        .envs
        .into_iter()
        .map(|e| cri::KeyValue {
            key: e.key,
            value: e.value,
        })
        .collect();
    envs.extend(a.envs.iter().map(|(k, v)| cri::KeyValue {
        key: k.clone(),
        value: v.clone(),
    }));
    let mut labels = file.labels;
    labels.extend(a.labels.iter().cloned());
    let mut resources =
        file.linux
            .and_then(|l| l.resources)
            .map(|r| cri::LinuxContainerResources {
                cpu_period: r.cpu_period,
                cpu_quota: r.cpu_quota,
                cpu_shares: r.cpu_shares,
                memory_limit_in_bytes: r.memory_limit_in_bytes,
                oom_score_adj: r.oom_score_adj,
                cpuset_cpus: r.cpuset_cpus,
                cpuset_mems: r.cpuset_mems,
                ..Default::default()
            });
    if let Some(m) = a.memory {
        resources
            .get_or_insert_with(Default::default)
            .memory_limit_in_bytes = m;
    }
    let (command, args) = if a.command.is_empty() {
        (file.command, file.args)
    } else {
        (a.command.clone(), Vec::new())
    };
    Ok(cri::CreateContainerRequest {
        pod_sandbox_id: a.pod.clone(),
        config: Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name, attempt }),
            image: Some(cri::ImageSpec {
                image,
                ..Default::default()
            }),
            command,
            args,
            working_dir: a.workdir.clone().unwrap_or(file.working_dir),
            envs,
            labels,
            annotations: file.annotations,
            log_path,
            linux: resources.map(|r| cri::LinuxContainerConfig {
                resources: Some(r),
                security_context: None,
            }),
            ..Default::default()
        }),
        sandbox_config: None,
    })
}

async fn create(ctx: &mut Ctx, a: CreateArgs) -> Result<(), CliError> {
    let req = container_request(&a)?;
    let mut c = ctx.cri.clone();
    let r = ctx.call("CreateContainer", c.create_container(req)).await?;
    match ctx.output {
        Output::Json => print_json(&json!({ "id": r.container_id })),
        Output::Table => print(&format!("{}\n", r.container_id)),
    }
}

// ---- tables ----

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// "5 seconds ago", "3 minutes ago", like crictl.
pub fn ago(then_nanos: i64, now_nanos: i64) -> String {
    if then_nanos <= 0 {
        return "-".into();
    }
    let secs = (now_nanos.saturating_sub(then_nanos) / 1_000_000_000).max(0);
    let (n, unit) = match secs {
        0..=1 => return "Just now".into(),
        2..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    let n = if n == 1 && unit == "hour" {
        "About an".to_owned()
    } else if n == 1 {
        "About a".to_owned()
    } else {
        n.to_string()
    };
    format!("{n} {unit}{plural} ago")
}

fn trunc(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_owned()
    } else {
        id.chars().take(13).collect()
    }
}

/// Formats rows as a table with columns separated by at least three spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] + 3 - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn container_state_name(v: i32) -> &'static str {
    cri::ContainerState::try_from(v)
        .map(|s| s.as_str_name())
        .unwrap_or("CONTAINER_UNKNOWN")
}

fn sandbox_state_name(v: i32) -> &'static str {
    cri::PodSandboxState::try_from(v)
        .map(|s| s.as_str_name())
        .unwrap_or("SANDBOX_NOTREADY")
}

fn short_state(name: &str) -> String {
    name.trim_start_matches("CONTAINER_")
        .trim_start_matches("SANDBOX_")
        .to_owned()
}

fn with_state(v: impl serde::Serialize, state: &str) -> Value {
    let mut j = serde_json::to_value(v).unwrap_or(Value::Null);
    j["state"] = Value::String(state.to_owned());
    j
}

fn container_json(c: &cri::Container) -> Value {
    with_state(c, container_state_name(c.state))
}

fn container_status_json(c: &cri::ContainerStatus) -> Value {
    with_state(c, container_state_name(c.state))
}

fn sandbox_json(p: &cri::PodSandbox) -> Value {
    with_state(p, sandbox_state_name(p.state))
}

fn sandbox_status_json(p: &cri::PodSandboxStatus) -> Value {
    with_state(p, sandbox_state_name(p.state))
}

async fn pods(ctx: &mut Ctx, a: PodsArgs) -> Result<(), CliError> {
    let filter = cri::PodSandboxFilter {
        id: a.id.clone().unwrap_or_default(),
        state: a.state.as_deref().map(|s| cri::PodSandboxStateValue {
            state: if s == "ready" {
                cri::PodSandboxState::SandboxReady as i32
            } else {
                cri::PodSandboxState::SandboxNotready as i32
            },
        }),
        label_selector: a.list.labels.iter().cloned().collect(),
    };
    let mut c = ctx.cri.clone();
    let mut items = ctx
        .call(
            "ListPodSandbox",
            c.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(filter),
            }),
        )
        .await?
        .items;
    items.retain(|p| {
        let m = p.metadata.clone().unwrap_or_default();
        a.name.as_ref().is_none_or(|n| &m.name == n)
            && a.namespace.as_ref().is_none_or(|n| &m.namespace == n)
    });
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    if a.list.quiet {
        return print_ids(items.iter().map(|p| p.id.as_str()));
    }
    match ctx.output {
        Output::Json => {
            print_json(&json!({ "items": items.iter().map(sandbox_json).collect::<Vec<_>>() }))
        }
        Output::Table => {
            let now = now_nanos();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|p| {
                    let m = p.metadata.clone().unwrap_or_default();
                    vec![
                        trunc(&p.id, a.list.no_trunc),
                        ago(p.created_at, now),
                        short_state(sandbox_state_name(p.state)),
                        m.name,
                        m.namespace,
                        m.attempt.to_string(),
                        if p.runtime_handler.is_empty() {
                            "(default)".into()
                        } else {
                            p.runtime_handler.clone()
                        },
                    ]
                })
                .collect();
            print(&table(
                &[
                    "POD ID",
                    "CREATED",
                    "STATE",
                    "NAME",
                    "NAMESPACE",
                    "ATTEMPT",
                    "RUNTIME",
                ],
                &rows,
            ))
        }
    }
}

async fn ps(ctx: &mut Ctx, a: PsArgs) -> Result<(), CliError> {
    let state = match a.state.as_deref() {
        Some("created") => Some(cri::ContainerState::ContainerCreated),
        Some("running") => Some(cri::ContainerState::ContainerRunning),
        Some("exited") => Some(cri::ContainerState::ContainerExited),
        Some("unknown") => Some(cri::ContainerState::ContainerUnknown),
        _ if a.all => None,
        _ => Some(cri::ContainerState::ContainerRunning),
    };
    let filter = cri::ContainerFilter {
        id: a.id.clone().unwrap_or_default(),
        state: state.map(|s| cri::ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: a.pod.clone().unwrap_or_default(),
        label_selector: a.list.labels.iter().cloned().collect(),
    };
    let mut c = ctx.cri.clone();
    let mut containers = ctx
        .call(
            "ListContainers",
            c.list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            }),
        )
        .await?
        .containers;
    containers.retain(|c| {
        a.name
            .as_ref()
            .is_none_or(|n| c.metadata.as_ref().is_some_and(|m| &m.name == n))
    });
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if a.list.quiet {
        return print_ids(containers.iter().map(|c| c.id.as_str()));
    }
    match ctx.output {
        Output::Json => print_json(&json!({
            "containers": containers.iter().map(container_json).collect::<Vec<_>>()
        })),
        Output::Table => {
            // The POD column names the pod, as crictl does.
            let mut c = ctx.cri.clone();
            let pods: HashMap<String, String> = ctx
                .call(
                    "ListPodSandbox",
                    c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
                )
                .await?
                .items
                .into_iter()
                .map(|p| (p.id, p.metadata.map(|m| m.name).unwrap_or_default()))
                .collect();
            let now = now_nanos();
            let rows: Vec<Vec<String>> = containers
                .iter()
                .map(|c| {
                    let m = c.metadata.clone().unwrap_or_default();
                    vec![
                        trunc(&c.id, a.list.no_trunc),
                        c.image
                            .as_ref()
                            .map(|i| i.image.clone())
                            .unwrap_or_default(),
                        ago(c.created_at, now),
                        short_state(container_state_name(c.state)),
                        m.name,
                        m.attempt.to_string(),
                        trunc(&c.pod_sandbox_id, a.list.no_trunc),
                        pods.get(&c.pod_sandbox_id).cloned().unwrap_or_default(),
                    ]
                })
                .collect();
            print(&table(
                &[
                    "CONTAINER",
                    "IMAGE",
                    "CREATED",
                    "STATE",
                    "NAME",
                    "ATTEMPT",
                    "POD ID",
                    "POD",
                ],
                &rows,
            ))
        }
    }
}

// ---- logs ----

/// Prints complete records of `text` (a chunk of a CRI log); returns how many bytes were
/// consumed (an unfinished last line is left for later).
fn print_records(text: &str, timestamps: bool, at_end: bool) -> Result<usize, CliError> {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let mut consumed = 0;
    let mut rest = text;
    while let Some(i) = rest.find('\n').or(if at_end && !rest.is_empty() {
        Some(rest.len())
    } else {
        None
    }) {
        let line = &rest[..i];
        consumed += (i + 1).min(rest.len());
        rest = &rest[(i + 1).min(rest.len())..];
        let Ok(r) = crilog::parse(line) else {
            continue;
        };
        let w: &mut dyn Write = match r.stream {
            crilog::Stream::Stdout => &mut out,
            crilog::Stream::Stderr => &mut err,
        };
        if timestamps {
            write!(w, "{} ", r.timestamp).map_err(out_err)?;
        }
        w.write_all(r.content.as_bytes()).map_err(out_err)?;
        if !r.partial {
            w.write_all(b"\n").map_err(out_err)?;
        }
    }
    out.flush().map_err(out_err)?;
    Ok(consumed)
}

async fn logs(ctx: &mut Ctx, a: LogsArgs) -> Result<(), CliError> {
    let status = ctx.container_status(&a.id).await?;
    if status.log_path.is_empty() {
        return Err(CliError::Usage(format!(
            "container {} has no log path (its pod has no log directory or it has no log_path)",
            a.id
        )));
    }
    let path = PathBuf::from(&status.log_path);
    let read = |from: usize| -> Result<String, CliError> {
        match std::fs::read(&path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(CliError::Io {
                what: format!("read {}", path.display()),
                source: e,
            }),
        }
    };
    let mut offset = 0;
    let text = read(0)?;
    if let Some(n) = a.tail {
        // Skip to the last n records (one record per line).
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(n);
        offset = lines[..skip].iter().map(|l| l.len() + 1).sum();
    }
    offset += print_records(&text[offset.min(text.len())..], a.timestamps, !a.follow)?;
    if !a.follow {
        return Ok(());
    }
    let mut last_check = std::time::Instant::now();
    let mut running = true;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let chunk = read(offset)?;
        let done = !running;
        offset += print_records(&chunk, a.timestamps, done)?;
        if done {
            return Ok(());
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = std::time::Instant::now();
            let s = ctx.container_status(&a.id).await?;
            running = s.state == cri::ContainerState::ContainerRunning as i32
                || s.state == cri::ContainerState::ContainerCreated as i32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::parse_from(["berth", "stop", "-t", "3", "abc"]);
        assert!(matches!(cli.command, Command::Stop { timeout: 3, .. }));
    }

    #[test]
    fn ago_reads_like_crictl() {
        let s = 1_000_000_000;
        assert_eq!(ago(100 * s, 100 * s), "Just now");
        assert_eq!(ago(100 * s, 105 * s), "5 seconds ago");
        assert_eq!(ago(100 * s, 160 * s), "About a minute ago");
        assert_eq!(ago(0, 5), "-");
        assert_eq!(ago(s, 7201 * s), "2 hours ago");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "BB"], &[vec!["xxxx".into(), "y".into()]]);
        assert_eq!(t, "A      BB\nxxxx   y\n");
    }

    #[test]
    fn runp_from_flags_and_file() {
        let cli = Cli::parse_from([
            "berth", "runp", "--name", "web", "--uid", "u1", "--pid", "node",
        ]);
        let Command::Runp(a) = cli.command else {
            panic!("not runp")
        };
        let r = pod_request(&a).unwrap();
        let c = r.config.unwrap();
        let m = c.metadata.unwrap();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str(), m.uid.as_str()),
            ("web", "default", "u1")
        );
        assert_eq!(c.log_directory, "/var/log/pods/default_web_u1");
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.pid, cri::NamespaceMode::Node as i32);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pod.json");
        std::fs::write(
            &file,
            r#"{"metadata":{"name":"f","namespace":"ns","uid":"x"},"logDirectory":"/tmp/l",
                "linux":{"security_context":{"namespace_options":{"pid":"CONTAINER"}}},"dns_config":{}}"#,
        )
        .unwrap();
        let cli = Cli::parse_from(["berth", "runp", file.to_str().unwrap(), "--label", "a=b"]);
        let Command::Runp(a) = cli.command else {
            panic!("not runp")
        };
        let c = pod_request(&a).unwrap().config.unwrap();
        assert_eq!(c.log_directory, "/tmp/l");
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
        let missing = Cli::parse_from(["berth", "runp"]);
        let Command::Runp(a) = missing.command else {
            panic!("not runp")
        };
        assert!(matches!(pod_request(&a), Err(CliError::Usage(_))));
    }

    #[test]
    fn create_from_flags() {
        let cli = Cli::parse_from([
            "berth", "create", "pod1", "--name", "c", "--image", "img", "-e", "A=1", "--", "sh",
            "-c", "echo hi",
        ]);
        let Command::Create(a) = cli.command else {
            panic!("not create")
        };
        let r = container_request(&a).unwrap();
        assert_eq!(r.pod_sandbox_id, "pod1");
        let c = r.config.unwrap();
        assert_eq!(c.command, vec!["sh", "-c", "echo hi"]);
        assert_eq!(c.log_path, "c/0.log");
        assert_eq!(c.envs[0].key, "A");
    }
}
