//! The CRI requests of `berth runp` and `berth create`: flags over the config file over
//! berth's defaults.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1 as cri;

use crate::CliError;
use crate::args::{CreateArgs, RunpArgs};
use crate::files::{ContainerFile, PodFile, read_config};

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
pub(crate) fn pod_request(a: &RunpArgs) -> Result<cri::RunPodSandboxRequest, CliError> {
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

/// The CreateContainer request of a `create` command line.
pub(crate) fn container_request(a: &CreateArgs) -> Result<cri::CreateContainerRequest, CliError> {
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

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
