//! Pod and container config files in crictl's JSON shape (snake_case or camelCase field
//! names), or the same shape in TOML: the part of a config `berth runp` and `berth create`
//! understand. Missing fields are empty, and an empty field means "the default".

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::CliError;
use crate::args::ns_mode;

/// A pod config (`berth runp FILE`): a PodSandboxConfig.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodFile {
    pub(crate) metadata: PodMeta,
    pub(crate) hostname: String,
    #[serde(alias = "logDirectory")]
    pub(crate) log_directory: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) annotations: HashMap<String, String>,
    pub(crate) linux: Option<PodLinux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodMeta {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) uid: String,
    pub(crate) attempt: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodLinux {
    #[serde(alias = "securityContext")]
    pub(crate) security_context: Option<PodSecurity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodSecurity {
    #[serde(alias = "namespaceOptions")]
    pub(crate) namespace_options: Option<NsOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NsOptions {
    pub(crate) network: Mode,
    pub(crate) pid: Mode,
    pub(crate) ipc: Mode,
}

/// A namespace mode as a name ("POD") or a number (0).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub(crate) enum Mode {
    #[default]
    Unset,
    Number(i32),
    Name(String),
}

impl Mode {
    /// The mode's CRI value; a name is read as `--pid`/`--ipc` read theirs.
    pub(crate) fn value(&self, field: &str) -> Result<i32, String> {
        match self {
            Mode::Unset => Ok(0),
            Mode::Number(n) => Ok(*n),
            Mode::Name(s) => ns_mode(s).map_err(|e| format!("{field}: {e}")),
        }
    }
}

/// A container config (`berth create POD FILE`): a ContainerConfig.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ContainerFile {
    pub(crate) metadata: ContainerMeta,
    pub(crate) image: ImageRef,
    pub(crate) command: Vec<String>,
    pub(crate) args: Vec<String>,
    #[serde(alias = "workingDir")]
    pub(crate) working_dir: String,
    pub(crate) envs: Vec<EnvVar>,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) annotations: HashMap<String, String>,
    #[serde(alias = "logPath")]
    pub(crate) log_path: String,
    pub(crate) linux: Option<ContainerLinux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ContainerMeta {
    pub(crate) name: String,
    pub(crate) attempt: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ImageRef {
    pub(crate) image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EnvVar {
    pub(crate) key: String,
    pub(crate) value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ContainerLinux {
    pub(crate) resources: Option<ResourcesFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ResourcesFile {
    #[serde(alias = "cpuPeriod")]
    pub(crate) cpu_period: i64,
    #[serde(alias = "cpuQuota")]
    pub(crate) cpu_quota: i64,
    #[serde(alias = "cpuShares")]
    pub(crate) cpu_shares: i64,
    #[serde(alias = "memoryLimitInBytes")]
    pub(crate) memory_limit_in_bytes: i64,
    #[serde(alias = "oomScoreAdj")]
    pub(crate) oom_score_adj: i64,
    #[serde(alias = "cpusetCpus")]
    pub(crate) cpuset_cpus: String,
    #[serde(alias = "cpusetMems")]
    pub(crate) cpuset_mems: String,
}

/// Reads a config file: TOML by its `.toml` extension, JSON otherwise.
pub(crate) fn read_config<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CliError> {
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
