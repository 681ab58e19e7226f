//! berthd's configuration: a TOML file ([`Config`]) plus command-line flags ([`Flags`]),
//! flags winning. Durations are strings such as `"10s"`, `"500ms"` or `"2m"`.
//!
//! ```toml
//! socket = "/run/berth/berth.sock"
//! containerd_socket = "/run/containerd/containerd.sock"
//! containerd_namespace = "berth"
//! root_dir = "/var/lib/berth"
//! state_dir = "/run/berth"
//! sandbox_image = "docker.io/library/berth-busybox:latest"
//! sandbox_command = ["sleep", "infinity"]
//! call_timeout = "10s"
//! log_level = "info"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        message: String,
    },
    /// A value is out of range.
    #[error("config {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Everything berthd needs to know. [`Config::default`] gives containerd's usual places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The CRI socket berthd serves (mode 0660).
    pub socket: PathBuf,
    /// containerd's gRPC socket.
    pub containerd_socket: PathBuf,
    /// The containerd namespace of berth's objects (no other client may use it).
    pub containerd_namespace: String,
    /// Persistent state: status checkpoints (`<root_dir>/containers/<id>/status`).
    pub root_dir: PathBuf,
    /// Volatile state: log FIFOs (`<state_dir>/io/...`).
    pub state_dir: PathBuf,
    /// Image of the pause containers (must be in containerd's image store, unpacked).
    pub sandbox_image: String,
    /// Command of the pause process; empty = the image's entrypoint and cmd.
    pub sandbox_command: Vec<String>,
    /// Snapshotter of container root file systems.
    pub snapshotter: String,
    /// Deadline of every containerd call but waits and task creation.
    #[serde(with = "duration_str")]
    pub call_timeout: Duration,
    /// Deadline of `Tasks.Create` (starts a shim and runs `runc create`).
    #[serde(with = "duration_str")]
    pub task_create_timeout: Duration,
    /// Deadline of observing one task during recovery.
    #[serde(with = "duration_str")]
    pub recovery_timeout: Duration,
    /// How many tasks recovery observes at once.
    pub recovery_parallelism: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(with = "duration_str")]
    pub shutdown_timeout: Duration,
    /// Maximum content bytes of one CRI log record; longer lines are split.
    pub max_log_line_bytes: usize,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive list).
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/berth/berth.sock"),
            containerd_socket: PathBuf::from("/run/containerd/containerd.sock"),
            containerd_namespace: berth_containerd::DEFAULT_NAMESPACE.to_owned(),
            root_dir: PathBuf::from("/var/lib/berth"),
            state_dir: PathBuf::from("/run/berth"),
            sandbox_image: berth_containerd::DEFAULT_SANDBOX_IMAGE.to_owned(),
            sandbox_command: Vec::new(),
            snapshotter: berth_containerd::DEFAULT_SNAPSHOTTER.to_owned(),
            call_timeout: Duration::from_secs(10),
            task_create_timeout: Duration::from_secs(60),
            recovery_timeout: Duration::from_secs(10),
            recovery_parallelism: 32,
            shutdown_timeout: Duration::from_secs(5),
            max_log_line_bytes: berth_containerd::logio::DEFAULT_MAX_LINE_BYTES,
            log_level: "info".to_owned(),
        }
    }
}

/// berthd's command line. Every flag overrides the config file's setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
#[command(
    name = "berthd",
    version,
    about = "berth's CRI v1 runtime daemon (containerd backend)"
)]
pub struct Flags {
    /// TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// CRI socket to serve.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// containerd's gRPC socket.
    #[arg(long, value_name = "PATH")]
    pub containerd_socket: Option<PathBuf>,
    /// containerd namespace of berth's objects.
    #[arg(long, value_name = "NS")]
    pub containerd_namespace: Option<String>,
    /// Directory of persistent state (checkpoints).
    #[arg(long, value_name = "DIR")]
    pub root_dir: Option<PathBuf>,
    /// Directory of volatile state (log FIFOs).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Image of the pause containers.
    #[arg(long, value_name = "REF")]
    pub sandbox_image: Option<String>,
    /// Command of the pause process, split on whitespace (e.g. "sleep infinity").
    #[arg(long, value_name = "CMD")]
    pub sandbox_command: Option<String>,
    /// Snapshotter of container root file systems.
    #[arg(long, value_name = "NAME")]
    pub snapshotter: Option<String>,
    /// Deadline of containerd calls (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub call_timeout: Option<Duration>,
    /// Deadline of task creation (e.g. 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub task_create_timeout: Option<Duration>,
    /// Deadline of observing one task during recovery.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub recovery_timeout: Option<Duration>,
    /// How long a graceful shutdown waits for in-flight requests.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// Maximum content bytes of one CRI log record.
    #[arg(long, value_name = "BYTES")]
    pub max_log_line_bytes: Option<usize>,
    /// Log filter (error, warn, info, debug, trace).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML (missing settings keep their defaults, unknown ones are errors).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The file named by `--config` (if any) with every given flag applied, checked.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let mut c = match &flags.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &flags.$f { c.$f = v.clone(); } )* };
        }
        set!(
            socket,
            containerd_socket,
            containerd_namespace,
            root_dir,
            state_dir,
            sandbox_image,
            snapshotter,
            call_timeout,
            task_create_timeout,
            recovery_timeout,
            shutdown_timeout,
            max_log_line_bytes,
            log_level
        );
        if let Some(cmd) = &flags.sandbox_command {
            c.sandbox_command = cmd.split_whitespace().map(str::to_owned).collect();
        }
        c.check()?;
        Ok(c)
    }

    /// Checks values that would fail later in a confusing way.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        // sun_path is 108 bytes; berthd binds a temporary name a little longer than the socket.
        if self.socket.as_os_str().len() > 90 {
            return invalid(
                "socket",
                format!(
                    "{} is too long for a unix socket (at most 90 bytes)",
                    self.socket.display()
                ),
            );
        }
        if berth_core::validate_id("containerd namespace", &self.containerd_namespace).is_err() {
            return invalid(
                "containerd_namespace",
                format!(
                    "{:?} is not a valid containerd namespace",
                    self.containerd_namespace
                ),
            );
        }
        for (field, dir) in [("root_dir", &self.root_dir), ("state_dir", &self.state_dir)] {
            if !dir.is_absolute() {
                return invalid(field, format!("{} is not absolute", dir.display()));
            }
        }
        if self.sandbox_image.trim().is_empty() {
            return invalid("sandbox_image", "must not be empty".into());
        }
        if self.max_log_line_bytes == 0 {
            return invalid("max_log_line_bytes", "must be at least 1".into());
        }
        for (field, d) in [
            ("call_timeout", self.call_timeout),
            ("task_create_timeout", self.task_create_timeout),
            ("recovery_timeout", self.recovery_timeout),
        ] {
            if d.is_zero() {
                return invalid(field, "must be longer than zero".into());
            }
        }
        if self.recovery_parallelism == 0 {
            return invalid("recovery_parallelism", "must be at least 1".into());
        }
        Ok(())
    }

    /// The containerd backend's configuration.
    pub fn backend(&self) -> berth_containerd::BackendConfig {
        let mut b = berth_containerd::BackendConfig::new(&self.containerd_socket);
        b.namespace = self.containerd_namespace.clone();
        b.snapshotter = self.snapshotter.clone();
        b.sandbox_image = self.sandbox_image.clone();
        b.sandbox_command = self.sandbox_command.clone();
        b.call_timeout = self.call_timeout;
        b.task_create_timeout = self.task_create_timeout;
        b
    }

    /// Where the log FIFOs live.
    pub fn fifo_root(&self) -> PathBuf {
        self.state_dir.join("io")
    }
}

/// Parses `"10s"`, `"250ms"`, `"2m"`, `"1h"`, `"1.5s"` or a bare number of seconds.
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

fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn berth_reads_durations_as_berthd_does() {
        // `berth --request-timeout` has its own parser (the CLI links nothing of berthd's).
        for s in [
            "10s", "250ms", "2m", "1.5h", "3", " 7s ", "0", "ten", "5d", "", "-1s", "1e3s",
        ] {
            assert_eq!(
                parse_duration(s),
                berth_cli::args::parse_duration(s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn toml_round_trip_and_defaults() {
        let c = Config::from_toml("containerd_namespace = \"x\"\ncall_timeout = \"2s\"\n").unwrap();
        assert_eq!(c.containerd_namespace, "x");
        assert_eq!(c.call_timeout, Duration::from_secs(2));
        assert_eq!(c.socket, Config::default().socket);
        assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
        assert!(
            Config::from_toml("sokcet = \"/x\"").is_err(),
            "unknown keys are errors"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Flags::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berthd.toml");
        std::fs::write(&file, "log_level = \"debug\"\nsocket = \"/tmp/a.sock\"\n").unwrap();
        let flags = Flags::parse_from([
            "berthd",
            "--config",
            file.to_str().unwrap(),
            "--socket",
            "/tmp/b.sock",
            "--sandbox-command",
            "sleep infinity",
        ]);
        let c = Config::load(&flags).unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/b.sock"));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.sandbox_command, vec!["sleep", "infinity"]);
    }

    #[test]
    fn bad_values_are_refused() {
        let mut c = Config {
            containerd_namespace: "a/b".into(),
            ..Config::default()
        };
        assert!(matches!(
            c.check(),
            Err(ConfigError::Invalid {
                field: "containerd_namespace",
                ..
            })
        ));
        c.containerd_namespace = "ok".into();
        c.root_dir = "relative".into();
        assert!(matches!(
            c.check(),
            Err(ConfigError::Invalid {
                field: "root_dir",
                ..
            })
        ));
    }
}
