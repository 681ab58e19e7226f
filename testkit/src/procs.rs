//! Processes and mounts as seen through /proc: finding an instance's shims and container
//! processes, killing them, unmounting what is left under a directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// One line of /proc/<pid>/stat that we care about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) ppid: u32,
    pub(crate) state: char,
}

pub(crate) fn stat(pid: u32) -> Option<Stat> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses; cut at the last ')'.
    let rest = &raw[raw.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { ppid, state })
}

/// True if `pid` exists and is not a zombie. Shims re-parented to a PID 1 that does not reap
/// (as on the CI VM) stay zombies forever; they count as gone.
pub fn process_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
}

pub(crate) fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

pub(crate) fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// True if `args` is a containerd shim started by the containerd listening on `socket`.
pub(crate) fn is_shim_of(args: &[String], socket: &Path) -> bool {
    let Some(argv0) = args.first() else {
        return false;
    };
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    if !base.starts_with("containerd-shim") {
        return false;
    }
    let sock = socket.to_string_lossy();
    args.windows(2)
        .any(|w| w[0] == "-address" && (w[1] == sock || w[1] == format!("unix://{sock}")))
}

/// True if `args` is a short-lived `start` or `delete` invocation of the shim binary (the
/// one containerd runs to spawn a shim, or to clean up after a dead one), not a shim daemon.
pub(crate) fn is_shim_action(args: &[String]) -> bool {
    args.last().is_some_and(|a| a == "start" || a == "delete")
}

/// Live shim processes of the containerd at `socket`, sorted; with `daemons_only`, without
/// the short-lived `start`/`delete` invocations.
pub(crate) fn shims_of(socket: &Path, daemons_only: bool) -> Vec<u32> {
    let mut pids: Vec<u32> = all_pids()
        .into_iter()
        .filter(|&p| {
            process_alive(p)
                && cmdline(p).is_some_and(|a| {
                    is_shim_of(&a, socket) && !(daemons_only && is_shim_action(&a))
                })
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// True if a cgroup line of `pid` lies under `/<ns>/` (runc's cgroupfs path `/<ns>/<id>`,
/// containerd's default for every task of namespace `ns`).
pub(crate) fn in_namespace_cgroup(pid: u32, ns: &str) -> bool {
    let Ok(raw) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let prefix = format!("/{ns}/");
    raw.lines().any(|l| {
        l.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| path.starts_with(&prefix) || path == &prefix[..prefix.len() - 1])
    })
}

/// Every live descendant of `roots` (not the roots themselves).
pub(crate) fn descendants(roots: &[u32]) -> Vec<u32> {
    let table: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| {
            let s = stat(p)?;
            (!matches!(s.state, 'Z' | 'X' | 'x')).then_some((p, s.ppid))
        })
        .collect();
    let mut found: Vec<u32> = Vec::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &table {
            if ppid == parent && !found.contains(&pid) && !roots.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// Sends `sig` to `pid`, ignoring a process that is already gone.
pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Waits (blocking) until none of `pids` is alive; returns the survivors after `timeout`.
pub(crate) fn wait_gone_blocking(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| process_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (async) until none of `pids` is alive; returns the survivors after `timeout`.
pub(crate) async fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| process_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Mount points at or under `dir` in our mount namespace, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(raw) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = raw
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_octal(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or under `dir`; returns one line per failure.
pub(crate) fn unmount_all_under(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    // A mount may be stacked on another at the same point: repeat while progress is made.
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return problems;
        }
        problems.clear();
        for m in mounts {
            if let Err(e) = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH) {
                problems.push(format!("umount {}: {e}", m.display()));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_octal(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_octal(r"/tmp/x\134y"), r"/tmp/x\y");
        assert_eq!(unescape_octal(r"/plain"), "/plain");
        assert_eq!(unescape_octal(r"/end\04"), r"/end\04");
    }

    #[test]
    fn recognises_only_our_shims() {
        let sock = Path::new("/tmp/bt-1-0/containerd.sock");
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_shim_of(
            &args(&[
                "/usr/bin/containerd-shim-runc-v2",
                "-namespace",
                "ns",
                "-id",
                "c",
                "-address",
                "/tmp/bt-1-0/containerd.sock"
            ]),
            sock
        ));
        assert!(!is_shim_of(
            &args(&[
                "/usr/bin/containerd-shim-runc-v2",
                "-address",
                "/tmp/bt-1-1/containerd.sock"
            ]),
            sock
        ));
        assert!(!is_shim_of(
            &args(&["/bin/sleep", "-address", "/tmp/bt-1-0/containerd.sock"]),
            sock
        ));
        let cleanup = args(&[
            "containerd-shim-runc-v2",
            "-namespace",
            "ns",
            "-address",
            "/tmp/bt-1-0/containerd.sock",
            "-id",
            "c",
            "delete",
        ]);
        assert!(is_shim_of(&cleanup, sock) && is_shim_action(&cleanup));
    }

    #[test]
    fn sees_itself_alive() {
        assert!(process_alive(std::process::id()));
        assert!(stat(std::process::id()).is_some_and(|s| s.ppid > 0));
    }
}
