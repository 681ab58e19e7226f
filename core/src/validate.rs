//! Validation of CRI configs: every field the runtime relies on, checked before anything is
//! reserved or created.

use crate::error::CommandError;
use crate::ids::shorten;
use crate::meta::{ContainerConfig, SandboxConfig};

/// Longest metadata name, uid or namespace (Kubernetes' DNS subdomain limit).
pub const MAX_NAME_LEN: usize = 253;
/// Largest encoded config berth stores with a containerd record (containerd echoes the
/// record back; tonic refuses messages over 4 MiB).
pub const MAX_CONFIG_BYTES: usize = 512 * 1024;

fn invalid(field: &'static str, reason: impl Into<String>) -> CommandError {
    CommandError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

fn check_name(field: &'static str, value: &str) -> Result<(), CommandError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(invalid(
            field,
            format!(
                "{:?} is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                shorten(value),
                value.len()
            ),
        ));
    }
    if value.chars().any(|c| c.is_control() || c == '/') {
        return Err(invalid(
            field,
            format!("{:?} contains '/' or a control character", shorten(value)),
        ));
    }
    Ok(())
}

fn check_size(field: &'static str, config: &impl serde::Serialize) -> Result<(), CommandError> {
    let len = serde_json::to_vec(config)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len > MAX_CONFIG_BYTES {
        return Err(invalid(
            field,
            format!("encoded config is {len} bytes; at most {MAX_CONFIG_BYTES} are allowed"),
        ));
    }
    Ok(())
}

/// Checks a sandbox config.
pub fn validate_sandbox_config(config: &SandboxConfig) -> Result<(), CommandError> {
    check_name("config.metadata.name", &config.name)?;
    check_name("config.metadata.uid", &config.uid)?;
    check_name("config.metadata.namespace", &config.namespace)?;
    if config.log_directory.contains('\0') {
        return Err(invalid("config.log_directory", "contains a NUL byte"));
    }
    check_size("config", config)
}

/// Checks a container config; returns the resolved stop signal.
pub fn validate_container_config(config: &ContainerConfig) -> Result<i32, CommandError> {
    check_name("config.metadata.name", &config.name)?;
    if config.image.trim().is_empty() {
        return Err(invalid("config.image.image", "must not be empty"));
    }
    if config.image.chars().any(char::is_control) {
        return Err(invalid(
            "config.image.image",
            "contains a control character",
        ));
    }
    // Neither a reference nor an image ID (prefix) can name no image: refused before
    // anything happens (containerd would look it up and answer not found).
    if let Err(e) = crate::image::parse_image(&config.image) {
        return Err(invalid("config.image.image", e.to_string()));
    }
    let log = &config.log_path;
    if log.starts_with('/') {
        return Err(invalid(
            "config.log_path",
            format!(
                "{:?} must be relative to the sandbox log directory",
                shorten(log)
            ),
        ));
    }
    if log.split('/').any(|part| part == "..") || log.contains('\0') {
        return Err(invalid(
            "config.log_path",
            format!("{:?} must not contain '..' or NUL", shorten(log)),
        ));
    }
    for (key, _) in &config.envs {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(invalid(
                "config.envs",
                format!("bad variable name {:?}", shorten(key)),
            ));
        }
    }
    let signal = crate::signal::parse_signal(&config.stop_signal).ok_or_else(|| {
        invalid(
            "config.linux.security_context.stop_signal",
            format!("unknown signal {:?}", shorten(&config.stop_signal)),
        )
    })?;
    check_size("config", config)?;
    Ok(signal)
}

/// Joins the sandbox log directory and a container's relative log path; empty if either
/// is empty (no log).
pub fn join_log_path(dir: &str, rel: &str) -> String {
    if dir.is_empty() || rel.is_empty() {
        return String::new();
    }
    format!("{}/{}", dir.trim_end_matches('/'), rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> SandboxConfig {
        SandboxConfig {
            name: "p".into(),
            uid: "u".into(),
            namespace: "n".into(),
            ..SandboxConfig::default()
        }
    }

    fn container() -> ContainerConfig {
        ContainerConfig {
            name: "c".into(),
            image: "busybox".into(),
            ..ContainerConfig::default()
        }
    }

    fn field(e: CommandError) -> &'static str {
        match e {
            CommandError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn sandbox_fields() {
        assert!(validate_sandbox_config(&sandbox()).is_ok());
        let mut s = sandbox();
        s.name.clear();
        assert_eq!(
            field(validate_sandbox_config(&s).unwrap_err()),
            "config.metadata.name"
        );
        let mut s = sandbox();
        s.uid = "a/b".into();
        assert_eq!(
            field(validate_sandbox_config(&s).unwrap_err()),
            "config.metadata.uid"
        );
        let mut s = sandbox();
        s.namespace = "x".repeat(254);
        assert_eq!(
            field(validate_sandbox_config(&s).unwrap_err()),
            "config.metadata.namespace"
        );
        let mut s = sandbox();
        s.labels.insert("k".into(), "v".repeat(MAX_CONFIG_BYTES));
        assert_eq!(field(validate_sandbox_config(&s).unwrap_err()), "config");
    }

    #[test]
    fn container_fields() {
        assert_eq!(validate_container_config(&container()), Ok(15));
        type Mutation = fn(&mut ContainerConfig);
        let cases: Vec<(Mutation, &str)> = vec![
            (|c| c.name.clear(), "config.metadata.name"),
            (|c| c.image = " ".into(), "config.image.image"),
            (|c| c.image = "BusyBox".into(), "config.image.image"),
            (|c| c.image = "busybox:".into(), "config.image.image"),
            (|c| c.log_path = "/abs.log".into(), "config.log_path"),
            (|c| c.log_path = "../x.log".into(), "config.log_path"),
            (|c| c.envs.push(("A=B".into(), "x".into())), "config.envs"),
            (
                |c| c.stop_signal = "SIGNOPE".into(),
                "config.linux.security_context.stop_signal",
            ),
            (|c| c.args.push("x".repeat(MAX_CONFIG_BYTES)), "config"),
        ];
        for (mutate, want) in cases {
            let mut c = container();
            mutate(&mut c);
            assert_eq!(field(validate_container_config(&c).unwrap_err()), want);
        }
        let mut c = container();
        c.stop_signal = "SIGINT".into();
        assert_eq!(validate_container_config(&c), Ok(2));
    }

    #[test]
    fn log_paths() {
        assert_eq!(
            join_log_path("/var/log/pods/p", "c.log"),
            "/var/log/pods/p/c.log"
        );
        assert_eq!(join_log_path("/d/", "c.log"), "/d/c.log");
        assert_eq!(join_log_path("", "c.log"), "");
    }
}
