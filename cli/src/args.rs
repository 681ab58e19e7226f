//! The command line of `berth` (clap definitions): global options, the verbs and their flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_cri::v1 as cri;

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
    #[arg(long, default_value = "2m", value_parser = parse_duration, global = true)]
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
    /// Show containers' resource usage (CPU, memory), as crictl stats does.
    Stats(StatsArgs),
    /// Run a command in a running container (CRI ExecSync): prints its stdout and stderr and
    /// exits with its code.
    Exec(ExecArgs),
}

/// `berth stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this container (id or unique prefix).
    pub id: Option<String>,
    /// Only containers of this pod (id or prefix).
    #[arg(long, short = 'p')]
    pub pod: Option<String>,
    /// Label key=value the containers must have (repeatable).
    #[arg(long = "label", short = 'l', value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Show whole ids.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `berth exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Kill the command after this many seconds (0: no limit); the answer is then
    /// DeadlineExceeded.
    #[arg(long, short = 't', default_value_t = 0)]
    pub timeout: i64,
    /// Container id (or unique prefix).
    pub id: String,
    /// The command and its arguments (after `--`).
    #[arg(required = true, last = true)]
    pub cmd: Vec<String>,
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

/// A namespace mode by name: pod, container, or node (also spelt host).
pub(crate) fn ns_mode(s: &str) -> Result<i32, String> {
    match s.to_ascii_lowercase().as_str() {
        "pod" => Ok(cri::NamespaceMode::Pod as i32),
        "container" => Ok(cri::NamespaceMode::Container as i32),
        "node" | "host" => Ok(cri::NamespaceMode::Node as i32),
        _ => Err(format!("{s:?} is not pod, container or node")),
    }
}

/// Parses a duration as berthd's config does: a number with a unit of ms, s (the default),
/// m or h, e.g. `250ms`, `30s`, `2m`, `1.5h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
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
    fn exec_takes_the_command_after_a_double_dash() {
        let cli = Cli::parse_from([
            "berth",
            "exec",
            "--timeout",
            "2",
            "abc",
            "--",
            "sh",
            "-c",
            "exit 3",
        ]);
        match cli.command {
            Command::Exec(a) => {
                assert_eq!((a.timeout, a.id.as_str()), (2, "abc"));
                assert_eq!(a.cmd, ["sh", "-c", "exit 3"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["berth", "exec", "abc"]).is_err(),
            "a command is required"
        );
    }

    #[test]
    fn request_timeouts_parse_like_berthd_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
        let cli = Cli::parse_from(["berth", "version"]);
        assert_eq!(cli.request_timeout, Duration::from_secs(120));
        let cli = Cli::parse_from(["berth", "--request-timeout", "500ms", "version"]);
        assert_eq!(cli.request_timeout, Duration::from_millis(500));
    }
}
