//! Scripted scenarios for the differential tests: the same script runs against the
//! simulated containerd and a real one (berth-containerd + a private containerd), and the
//! observable outcomes (CRI state, exit code and reason of every container, state of every
//! pod) must be equal. A disagreement is a bug in the model or in berth.
//!
//! # Format
//!
//! One command per line; `#` starts a comment; durations are `500ms` or `2s`.
//!
//! ```text
//! pod NAME                       RunPodSandbox
//! create NAME POD PROCESS        CreateContainer; PROCESS is one of
//!                                  exit CODE after DURATION   exits on its own
//!                                  forever                    runs; SIGTERM ends it (143)
//!                                  stubborn                   runs; ignores SIGTERM
//!                                  on-usr1 CODE               runs; exits CODE on `exit NAME`
//! start NAME | stop NAME GRACE | remove NAME | stoppod POD | removepod POD
//! update NAME MIB [refused]      UpdateContainerResources (memory limit); with `refused` it
//!                                must answer FailedPrecondition, else succeed
//! reopen NAME [refused]          ReopenContainerLog, likewise
//! wait DURATION                  let time pass
//! exit NAME                      make an on-usr1 process exit now
//! restart containerd             containerd SIGKILLed and started again
//! containerd down DURATION       containerd SIGKILLed, started again after DURATION
//! kill shim NAME                 SIGKILL the shim running container (or pod) NAME
//! crash berth                    berth dies mid-flight and starts again (recovery)
//! check                          settle, then record every container's and pod's state
//! expect NAME STATE [CODE [REASON]]  the last check saw this (STATE: created, running,
//!                                exited, unknown, ready, notready)
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::{
    ContainerConfig, ContainerId, ContainerState, ErrorCode, Resources, SandboxConfig, SandboxId,
};
use berth_service::{ContainerFilter, SandboxFilter, ServiceError, ServiceHandle};

/// What a container's process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// Exits with `code` `after` its start.
    Exit {
        /// Exit code.
        code: i32,
        /// When.
        after: Duration,
    },
    /// Runs until signalled; SIGTERM ends it with 143.
    Forever,
    /// Runs until SIGKILLed (ignores SIGTERM).
    Stubborn,
    /// Runs until `exit NAME`, then exits with `code`.
    OnUsr1 {
        /// Exit code.
        code: i32,
    },
}

/// One scenario command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// RunPodSandbox.
    Pod(String),
    /// CreateContainer.
    Create {
        /// Container name.
        name: String,
        /// Pod name.
        pod: String,
        /// Its process.
        process: Process,
    },
    /// StartContainer.
    Start(String),
    /// StopContainer.
    Stop(String, Duration),
    /// RemoveContainer.
    Remove(String),
    /// StopPodSandbox.
    StopPod(String),
    /// RemovePodSandbox.
    RemovePod(String),
    /// UpdateContainerResources with a memory limit.
    Update {
        /// Container name.
        name: String,
        /// The limit in MiB.
        mib: i64,
        /// It must be refused (FailedPrecondition) rather than succeed.
        refused: bool,
    },
    /// ReopenContainerLog.
    Reopen {
        /// Container name.
        name: String,
        /// It must be refused (FailedPrecondition) rather than succeed.
        refused: bool,
    },
    /// Let time pass.
    Wait(Duration),
    /// Make an `on-usr1` process exit.
    Exit(String),
    /// containerd SIGKILLed and restarted.
    RestartContainerd,
    /// containerd down for a while.
    ContainerdDown(Duration),
    /// SIGKILL a container's (or pod's) shim.
    KillShim(String),
    /// berth crashes and restarts.
    CrashBerth,
    /// Settle and record.
    Check,
    /// Assert on the last check.
    Expect {
        /// Container or pod name.
        name: String,
        /// Expected state.
        state: String,
        /// Expected exit code.
        code: Option<i32>,
        /// Expected CRI reason.
        reason: Option<String>,
    },
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Its name (file stem).
    pub name: String,
    /// Its commands, with their line numbers.
    pub commands: Vec<(usize, Command)>,
}

/// Why a scenario failed to parse or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// A line does not parse.
    #[error("{scenario}:{line}: {why}")]
    Parse {
        /// Scenario name.
        scenario: String,
        /// Line number (1-based).
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A step failed while running.
    #[error("{scenario}:{line}: {why}")]
    Run {
        /// Scenario name.
        scenario: String,
        /// Line number.
        line: usize,
        /// What went wrong.
        why: String,
    },
}

/// Parses a duration: `500ms`, `2s`, `1.5s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
    (secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn parse_process(words: &[&str]) -> Option<Process> {
    match words {
        ["exit", code, "after", d] => Some(Process::Exit {
            code: code.parse().ok()?,
            after: parse_duration(d)?,
        }),
        ["forever"] => Some(Process::Forever),
        ["stubborn"] => Some(Process::Stubborn),
        ["on-usr1", code] => Some(Process::OnUsr1 {
            code: code.parse().ok()?,
        }),
        _ => None,
    }
}

/// The optional `refused` after an update or reopen.
fn refused(rest: &[&str]) -> Result<bool, String> {
    match rest {
        [] => Ok(false),
        ["refused"] => Ok(true),
        other => Err(format!(
            "expected `refused` or nothing, got {:?}",
            other.join(" ")
        )),
    }
}

fn parse_line(words: &[&str]) -> Result<Command, String> {
    let dur = |s: &str| parse_duration(s).ok_or_else(|| format!("bad duration {s:?}"));
    Ok(match words {
        ["pod", name] => Command::Pod((*name).to_owned()),
        ["create", name, pod, process @ ..] => Command::Create {
            name: (*name).to_owned(),
            pod: (*pod).to_owned(),
            process: parse_process(process)
                .ok_or_else(|| format!("bad process {:?}", process.join(" ")))?,
        },
        ["start", name] => Command::Start((*name).to_owned()),
        ["stop", name, grace] => Command::Stop((*name).to_owned(), dur(grace)?),
        ["remove", name] => Command::Remove((*name).to_owned()),
        ["stoppod", pod] => Command::StopPod((*pod).to_owned()),
        ["removepod", pod] => Command::RemovePod((*pod).to_owned()),
        ["update", name, mib, rest @ ..] => Command::Update {
            name: (*name).to_owned(),
            mib: mib.parse().map_err(|_| format!("bad limit {mib:?}"))?,
            refused: refused(rest)?,
        },
        ["reopen", name, rest @ ..] => Command::Reopen {
            name: (*name).to_owned(),
            refused: refused(rest)?,
        },
        ["wait", d] => Command::Wait(dur(d)?),
        ["exit", name] => Command::Exit((*name).to_owned()),
        ["restart", "containerd"] => Command::RestartContainerd,
        ["containerd", "down", d] => Command::ContainerdDown(dur(d)?),
        ["kill", "shim", name] => Command::KillShim((*name).to_owned()),
        ["crash", "berth"] => Command::CrashBerth,
        ["check"] => Command::Check,
        ["expect", name, state, rest @ ..] => {
            let code = match rest.first() {
                Some(c) => Some(c.parse().map_err(|_| format!("bad exit code {c:?}"))?),
                None => None,
            };
            Command::Expect {
                name: (*name).to_owned(),
                state: (*state).to_owned(),
                code,
                reason: rest.get(1).map(|r| (*r).to_owned()),
            }
        }
        _ => return Err(format!("unknown command {:?}", words.join(" "))),
    })
}

impl Scenario {
    /// Parses a scenario's text.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let mut commands = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let cmd = parse_line(&words).map_err(|why| ScenarioError::Parse {
                scenario: name.to_owned(),
                line: i + 1,
                why,
            })?;
            commands.push((i + 1, cmd));
        }
        Ok(Scenario {
            name: name.to_owned(),
            commands,
        })
    }
}

/// What one object looked like at a `check`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    /// `created`, `running`, `exited`, `unknown` (containers); `ready`, `notready`,
    /// `unknown` (pods).
    pub state: String,
    /// Exit code (containers that finished).
    pub code: Option<i32>,
    /// CRI reason ("Completed", "Error", "Unknown", "StartError"; empty if none).
    pub reason: String,
    /// The memory limit berth reports (containers), in MiB.
    pub memory_mib: Option<i64>,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.state)?;
        if let Some(c) = self.code {
            write!(f, " {c}")?;
        }
        if !self.reason.is_empty() {
            write!(f, " {}", self.reason)?;
        }
        if let Some(m) = self.memory_mib {
            write!(f, " memory={m}MiB")?;
        }
        Ok(())
    }
}

/// Every object's state at one `check`, by name (`pod:NAME` for pods).
pub type Observation = BTreeMap<String, Seen>;

/// What a scenario needs from the containerd it runs against (simulated or real).
#[async_trait]
pub trait Containerd: Send + Sync {
    /// The running berth service (started by the implementation).
    fn berth(&self) -> ServiceHandle;
    /// berth dies mid-flight (nothing cleaned up) and a new instance starts (recovery).
    async fn crash_berth(&mut self);
    /// containerd SIGKILLed, and started again after `down`.
    async fn restart_containerd(&mut self, down: Duration);
    /// SIGKILL the shim that runs the task of `id` (a container or pause container id) of
    /// pod `pod` (a shim serves one task, or a whole pod when tasks are grouped).
    async fn kill_shim(&mut self, id: &str, pod: &str);
    /// The config of pod `name`.
    fn sandbox_config(&self, name: &str) -> SandboxConfig;
    /// The config of a container `name` running `process`.
    fn container_config(&self, name: &str, process: Process) -> ContainerConfig;
    /// Called once the container's id is known, before it can start (the simulator sets
    /// its process plan here).
    fn created(&mut self, id: &ContainerId, process: Process);
    /// Make an `on-usr1` process (pid as berth reports it) exit with `code`.
    async fn exit(&mut self, id: &ContainerId, pid: u32, code: i32);
}

fn state_name(s: ContainerState) -> &'static str {
    match s {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "unknown",
    }
}

/// Everything berth lists, by name.
async fn observe(svc: &ServiceHandle) -> Result<Observation, String> {
    let views = svc
        .list_containers(ContainerFilter::default())
        .await
        .map_err(|e| format!("ListContainers: {e}"))?;
    let pods = svc
        .list_sandboxes(SandboxFilter::default())
        .await
        .map_err(|e| format!("ListPodSandbox: {e}"))?;
    let mut seen = Observation::new();
    for v in views {
        let finished = matches!(v.state, ContainerState::Exited | ContainerState::Unknown)
            && v.status.finished_at != 0;
        seen.insert(
            v.meta.config.name.clone(),
            Seen {
                state: state_name(v.state).to_owned(),
                code: finished.then_some(v.status.exit_code),
                reason: v.status.cri_reason(),
                memory_mib: v
                    .status
                    .resources
                    .as_ref()
                    .map(|r| r.memory_limit_in_bytes >> 20),
            },
        );
    }
    for p in pods {
        let state = match p.state {
            berth_core::SandboxState::Ready => "ready",
            berth_core::SandboxState::NotReady => "notready",
            berth_core::SandboxState::Unknown => "unknown",
        };
        seen.insert(
            format!("pod:{}", p.meta.config.name),
            Seen {
                state: state.to_owned(),
                code: None,
                reason: String::new(),
                memory_mib: None,
            },
        );
    }
    Ok(seen)
}

/// Waits until berth serves and what it reports has not changed for `quiet` (at most 60 s),
/// and returns that.
async fn settle(svc: &ServiceHandle, quiet: Duration) -> Result<Observation, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    svc.wait_ready().await.map_err(|e| format!("berth: {e}"))?;
    let mut last = observe(svc).await?;
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = observe(svc).await?;
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(last);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(last);
        }
    }
}

/// True for an answer a CRI client retries: berth recovering or restarting, or containerd
/// unavailable for a moment (e.g. "ttrpc: closed" while it cleans up after a dead shim).
fn retryable(e: &berth_service::ServiceError) -> bool {
    use berth_service::ServiceError;
    match e {
        ServiceError::Stopped => true,
        ServiceError::Command(c) => c.code() == berth_core::ErrorCode::Unavailable,
        ServiceError::Backend(b) => b.kind.code() == berth_core::ErrorCode::Unavailable,
    }
}

/// Retries a request while berth's answer is [`retryable`], for at most 60 s.
async fn retry<T, F, Fut>(c: &dyn Containerd, f: F) -> Result<T, String>
where
    F: FnMut(ServiceHandle) -> Fut,
    Fut: std::future::Future<Output = Result<T, ServiceError>>,
{
    retry_answer(c, f).await.map_err(|e| e.to_string())
}

/// [`retry`], keeping berth's last answer.
async fn retry_answer<T, F, Fut>(c: &dyn Containerd, mut f: F) -> Result<T, ServiceError>
where
    F: FnMut(ServiceHandle) -> Fut,
    Fut: std::future::Future<Output = Result<T, ServiceError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match f(c.berth()).await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Holds an update's or reopen's answer to what the scenario says it must be.
fn judge(answer: Result<(), ServiceError>, refused: bool) -> Result<(), String> {
    match (answer, refused) {
        (Ok(()), false) => Ok(()),
        (Err(ServiceError::Command(e)), true) if e.code() == ErrorCode::FailedPrecondition => {
            Ok(())
        }
        (Ok(()), true) => Err("expected a refusal (FailedPrecondition), it succeeded".into()),
        (Err(e), _) => Err(e.to_string()),
    }
}

/// Runs `s` against `c`; returns what every `check` saw. `quiet` is how long berth's view
/// must stay unchanged before a check records it.
pub async fn run(
    s: &Scenario,
    c: &mut dyn Containerd,
    quiet: Duration,
) -> Result<Vec<Observation>, ScenarioError> {
    let mut pods: BTreeMap<String, SandboxId> = BTreeMap::new();
    let mut ctrs: BTreeMap<String, (ContainerId, Process)> = BTreeMap::new();
    let mut pod_of: BTreeMap<String, SandboxId> = BTreeMap::new();
    let mut seen: Vec<Observation> = Vec::new();
    for (line, cmd) in &s.commands {
        let fail = |why: String| ScenarioError::Run {
            scenario: s.name.clone(),
            line: *line,
            why,
        };
        let ctr = |name: &str| {
            ctrs.get(name)
                .cloned()
                .ok_or_else(|| fail(format!("no container {name}")))
        };
        match cmd {
            Command::Pod(name) => {
                let config = c.sandbox_config(name);
                let id = retry(c, |b| {
                    let config = config.clone();
                    async move { b.run_pod_sandbox(config).await }
                })
                .await
                .map_err(fail)?;
                pods.insert(name.clone(), id);
            }
            Command::Create { name, pod, process } => {
                let pod_id = pods
                    .get(pod)
                    .cloned()
                    .ok_or_else(|| fail(format!("no pod {pod}")))?;
                let config = c.container_config(name, *process);
                let id = retry(c, |b| {
                    let (config, pod_id) = (config.clone(), pod_id.clone());
                    async move { b.create_container(pod_id.as_str(), config).await }
                })
                .await
                .map_err(fail)?;
                c.created(&id, *process);
                pod_of.insert(name.clone(), pod_id);
                ctrs.insert(name.clone(), (id, *process));
            }
            Command::Start(name) => {
                let (id, _) = ctr(name)?;
                retry(c, |b| {
                    let id = id.clone();
                    async move { b.start_container(id.as_str()).await }
                })
                .await
                .map_err(fail)?;
            }
            Command::Stop(name, grace) => {
                let (id, _) = ctr(name)?;
                retry(c, |b| {
                    let id = id.clone();
                    async move { b.stop_container(id.as_str(), *grace).await }
                })
                .await
                .map_err(fail)?;
            }
            Command::Remove(name) => {
                let (id, _) = ctr(name)?;
                retry(c, |b| {
                    let id = id.clone();
                    async move { b.remove_container(id.as_str()).await }
                })
                .await
                .map_err(fail)?;
            }
            Command::StopPod(pod) | Command::RemovePod(pod) => {
                let id = pods
                    .get(pod)
                    .cloned()
                    .ok_or_else(|| fail(format!("no pod {pod}")))?;
                let remove = matches!(cmd, Command::RemovePod(_));
                retry(c, |b| {
                    let id = id.clone();
                    async move {
                        if remove {
                            b.remove_pod_sandbox(id.as_str()).await
                        } else {
                            b.stop_pod_sandbox(id.as_str()).await
                        }
                    }
                })
                .await
                .map_err(fail)?;
            }
            Command::Update { name, mib, refused } => {
                let (id, _) = ctr(name)?;
                let resources = Resources {
                    memory_limit_in_bytes: mib << 20,
                    ..Resources::default()
                };
                let answer = retry_answer(c, |b| {
                    let (id, resources) = (id.clone(), resources.clone());
                    async move { b.update_container_resources(id.as_str(), resources).await }
                })
                .await;
                judge(answer, *refused).map_err(fail)?;
            }
            Command::Reopen { name, refused } => {
                let (id, _) = ctr(name)?;
                let answer = retry_answer(c, |b| {
                    let id = id.clone();
                    async move { b.reopen_container_log(id.as_str()).await }
                })
                .await;
                judge(answer, *refused).map_err(fail)?;
            }
            Command::Wait(d) => tokio::time::sleep(*d).await,
            Command::Exit(name) => {
                let (id, process) = ctr(name)?;
                let Process::OnUsr1 { code } = process else {
                    return Err(fail(format!("{name} is not an on-usr1 process")));
                };
                let view = retry(c, |b| {
                    let id = id.clone();
                    async move { b.container_status(id.as_str()).await }
                })
                .await
                .map_err(fail)?;
                c.exit(&id, view.status.pid, code).await;
            }
            Command::RestartContainerd => c.restart_containerd(Duration::ZERO).await,
            Command::ContainerdDown(d) => c.restart_containerd(*d).await,
            Command::KillShim(name) => {
                let (id, pod) = match (ctrs.get(name), pods.get(name)) {
                    (Some((id, _)), _) => (
                        id.to_string(),
                        pod_of
                            .get(name)
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                    ),
                    (None, Some(id)) => (id.to_string(), id.to_string()),
                    (None, None) => return Err(fail(format!("no container or pod {name}"))),
                };
                c.kill_shim(&id, &pod).await;
            }
            Command::CrashBerth => c.crash_berth().await,
            Command::Check => seen.push(settle(&c.berth(), quiet).await.map_err(fail)?),
            Command::Expect {
                name,
                state,
                code,
                reason,
            } => {
                let last = seen
                    .last()
                    .ok_or_else(|| fail("expect before any check".to_owned()))?;
                let got = last.get(name).or_else(|| last.get(&format!("pod:{name}")));
                let ok = got.is_some_and(|g| {
                    g.state == *state
                        && code.is_none_or(|c| g.code == Some(c))
                        && reason.as_ref().is_none_or(|r| g.reason == *r)
                });
                if !ok {
                    let want = format!(
                        "{state}{}{}",
                        code.map(|c| format!(" {c}")).unwrap_or_default(),
                        reason.as_ref().map(|r| format!(" {r}")).unwrap_or_default()
                    );
                    return Err(fail(format!(
                        "expected {name} {want}, saw {}",
                        got.map_or("nothing".to_owned(), ToString::to_string)
                    )));
                }
            }
        }
    }
    Ok(seen)
}

/// Two runs' checks, side by side where they differ (empty if equal).
pub fn differences(a: &[Observation], b: &[Observation]) -> Vec<String> {
    let mut out = Vec::new();
    if a.len() != b.len() {
        out.push(format!("{} checks against {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let names: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for n in names {
            let (p, q) = (x.get(n), y.get(n));
            if p != q {
                let show = |s: Option<&Seen>| s.map_or("absent".to_owned(), ToString::to_string);
                out.push(format!("check {}: {n}: {} vs {}", i + 1, show(p), show(q)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let text = "# a comment\npod p\ncreate c1 p exit 42 after 1.5s\ncreate c2 p forever\ncreate c3 p stubborn\ncreate c4 p on-usr1 9\nstart c1 # trailing\nstop c2 500ms\nremove c1\nstoppod p\nremovepod p\nwait 2s\nexit c4\nrestart containerd\ncontainerd down 3s\nkill shim c2\ncrash berth\ncheck\nexpect c1 exited 42 Error\nexpect p ready\nupdate c3 64\nreopen c3 refused\n";
        let s = Scenario::parse("t", text).unwrap();
        assert_eq!(s.commands.len(), 21);
        assert_eq!(
            s.commands[19].1,
            Command::Update {
                name: "c3".into(),
                mib: 64,
                refused: false
            }
        );
        assert_eq!(
            s.commands[20].1,
            Command::Reopen {
                name: "c3".into(),
                refused: true
            }
        );
        assert!(Scenario::parse("t", "update c3 64 maybe").is_err());
        assert_eq!(
            s.commands[1],
            (
                3,
                Command::Create {
                    name: "c1".into(),
                    pod: "p".into(),
                    process: Process::Exit {
                        code: 42,
                        after: Duration::from_millis(1500)
                    }
                }
            )
        );
        assert_eq!(
            s.commands[17].1,
            Command::Expect {
                name: "c1".into(),
                state: "exited".into(),
                code: Some(42),
                reason: Some("Error".into())
            }
        );
    }

    #[test]
    fn reports_bad_lines_with_their_number() {
        let e = Scenario::parse("t", "pod p\nfly away\n").unwrap_err();
        assert_eq!(e.to_string(), "t:2: unknown command \"fly away\"");
        assert!(Scenario::parse("t", "wait soon").is_err());
        assert!(Scenario::parse("t", "create c p exit x after 1s").is_err());
    }

    #[test]
    fn differences_name_the_object_and_check() {
        let seen = |state: &str, code| Seen {
            state: state.into(),
            code,
            reason: String::new(),
            memory_mib: None,
        };
        let a = vec![Observation::from([(
            "c1".to_owned(),
            seen("exited", Some(1)),
        )])];
        let b = vec![Observation::from([(
            "c1".to_owned(),
            seen("exited", Some(2)),
        )])];
        assert_eq!(differences(&a, &a), Vec::<String>::new());
        assert_eq!(
            differences(&a, &b),
            vec!["check 1: c1: exited 1 vs exited 2"]
        );
    }
}
