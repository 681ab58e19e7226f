//! crictl-style output: tables with aligned columns, "5 seconds ago", short ids and state
//! names, the JSON shapes of `--output json` and `inspect`, and writing them to stdout.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1 as cri;
use serde_json::Value;

use crate::CliError;

/// A failure to write the output.
pub(crate) fn out_err(e: io::Error) -> CliError {
    CliError::Io {
        what: "write output".into(),
        source: e,
    }
}

/// Writes `text` to stdout and flushes it.
pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(out_err)?;
    out.flush().map_err(out_err)
}

/// Prints one id a line (`--quiet` lists).
pub(crate) fn print_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Result<(), CliError> {
    print(&ids.map(|id| format!("{id}\n")).collect::<String>())
}

/// Prints `v` as pretty JSON (`--output json`, `inspect`, `info`).
pub(crate) fn print_json(v: &Value) -> Result<(), CliError> {
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ))
}

/// Now, in nanoseconds since the epoch (the unit of the CRI's `created_at`).
pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// "5 seconds ago", "3 minutes ago", like crictl.
pub(crate) fn ago(then_nanos: i64, now_nanos: i64) -> String {
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

/// An id as crictl shows it: its first 13 characters unless `--no-trunc`.
pub(crate) fn trunc(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_owned()
    } else {
        id.chars().take(13).collect()
    }
}

/// Formats rows as a table with columns separated by at least three spaces.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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

/// The table of `berth pods`, a row a pod in the order given.
pub(crate) fn pods_table(items: &[cri::PodSandbox], no_trunc: bool, now: i64) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            let m = p.metadata.clone().unwrap_or_default();
            vec![
                trunc(&p.id, no_trunc),
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
    table(
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
    )
}

/// The table of `berth ps`, a row a container in the order given; the POD column is the
/// pod's name from `pod_names` (pod id to name), as crictl shows it.
pub(crate) fn containers_table(
    containers: &[cri::Container],
    pod_names: &HashMap<String, String>,
    no_trunc: bool,
    now: i64,
) -> String {
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            let m = c.metadata.clone().unwrap_or_default();
            vec![
                trunc(&c.id, no_trunc),
                c.image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                ago(c.created_at, now),
                short_state(container_state_name(c.state)),
                m.name,
                m.attempt.to_string(),
                trunc(&c.pod_sandbox_id, no_trunc),
                pod_names
                    .get(&c.pod_sandbox_id)
                    .cloned()
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
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
    )
}

/// A ContainerState's CRI name (`CONTAINER_RUNNING`); an unknown value is UNKNOWN.
/// `berth stats`: one row per container, crictl's columns.
pub(crate) fn stats_table(stats: &[cri::ContainerStats], no_trunc: bool) -> String {
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            let a = s.attributes.clone().unwrap_or_default();
            let cpu = s
                .cpu
                .as_ref()
                .and_then(|c| c.usage_nano_cores.as_ref())
                .map_or("-".to_owned(), |n| format!("{:.2}", n.value as f64 / 1e7));
            let mem = s
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .map_or("-".to_owned(), |b| bytes(b.value));
            vec![
                trunc(&a.id, no_trunc),
                a.metadata.map(|m| m.name).unwrap_or_default(),
                cpu,
                mem,
            ]
        })
        .collect();
    table(&["CONTAINER", "NAME", "CPU %", "MEM"], &rows)
}

/// Bytes in the largest binary unit that keeps the number at or above 1 ("12.5MiB").
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

pub(crate) fn container_state_name(v: i32) -> &'static str {
    cri::ContainerState::try_from(v)
        .map(|s| s.as_str_name())
        .unwrap_or("CONTAINER_UNKNOWN")
}

/// A PodSandboxState's CRI name (`SANDBOX_READY`); an unknown value is NOTREADY.
pub(crate) fn sandbox_state_name(v: i32) -> &'static str {
    cri::PodSandboxState::try_from(v)
        .map(|s| s.as_str_name())
        .unwrap_or("SANDBOX_NOTREADY")
}

/// A state name without its prefix, as the STATE column shows it (`RUNNING`).
pub(crate) fn short_state(name: &str) -> String {
    name.trim_start_matches("CONTAINER_")
        .trim_start_matches("SANDBOX_")
        .to_owned()
}

/// `v` as JSON with its `state` field as the state's name rather than its number.
pub(crate) fn with_state(v: impl serde::Serialize, state: &str) -> Value {
    let mut j = serde_json::to_value(v).unwrap_or(Value::Null);
    j["state"] = Value::String(state.to_owned());
    j
}

/// A listed container as JSON (`ps -o json`).
pub(crate) fn container_json(c: &cri::Container) -> Value {
    with_state(c, container_state_name(c.state))
}

/// A container's status as JSON (`inspect`, `inspectp`).
pub(crate) fn container_status_json(c: &cri::ContainerStatus) -> Value {
    with_state(c, container_state_name(c.state))
}

/// A listed pod as JSON (`pods -o json`).
pub(crate) fn sandbox_json(p: &cri::PodSandbox) -> Value {
    with_state(p, sandbox_state_name(p.state))
}

/// A pod's status as JSON (`inspectp`).
pub(crate) fn sandbox_status_json(p: &cri::PodSandboxStatus) -> Value {
    with_state(p, sandbox_state_name(p.state))
}

/// Adds a verbose `info` map to `v`, each value as JSON if it parses, else as a string.
pub(crate) fn add_info(v: &mut Value, info: &HashMap<String, String>) {
    for (k, text) in info {
        v[k] = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_rows_show_the_rate_and_the_working_set_or_a_dash() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(3 << 20), "3.0MiB");
        assert_eq!(bytes(1536), "1.5KiB");
        let with = cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: "0123456789abcdef0123".into(),
                metadata: Some(cri::ContainerMetadata {
                    name: "web".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            cpu: Some(cri::CpuUsage {
                usage_nano_cores: Some(cri::UInt64Value { value: 250_000_000 }),
                ..Default::default()
            }),
            memory: Some(cri::MemoryUsage {
                working_set_bytes: Some(cri::UInt64Value { value: 5 << 20 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let without = cri::ContainerStats {
            attributes: with.attributes.clone(),
            ..Default::default()
        };
        let t = stats_table(&[with, without], false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CONTAINER"), "{t}");
        assert!(
            lines[1].contains("0123456789ab") && lines[1].contains("25.00"),
            "{t}"
        );
        assert!(lines[1].contains("5.0MiB"), "{t}");
        assert!(lines[2].trim_end().ends_with('-'), "{t}");
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
    fn pods_and_ps_tables_read_like_crictl() {
        let s = 1_000_000_000;
        let pod = cri::PodSandbox {
            id: "0123456789abcdef".into(),
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            state: cri::PodSandboxState::SandboxReady as i32,
            created_at: 100 * s,
            ..Default::default()
        };
        assert_eq!(
            pods_table(&[pod], false, 160 * s),
            "POD ID          CREATED              STATE   NAME   NAMESPACE   ATTEMPT   RUNTIME\n\
             0123456789abc   About a minute ago   READY   web    default     1         (default)\n"
        );
        let container = cri::Container {
            id: "c1".into(),
            pod_sandbox_id: "0123456789abcdef".into(),
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            state: cri::ContainerState::ContainerExited as i32,
            created_at: 100 * s,
            ..Default::default()
        };
        let names = HashMap::from([("0123456789abcdef".to_owned(), "web".to_owned())]);
        assert_eq!(
            containers_table(&[container], &names, true, 105 * s),
            "CONTAINER   IMAGE     CREATED         STATE    NAME   ATTEMPT   POD ID             POD\n\
             c1          busybox   5 seconds ago   EXITED   app    0         0123456789abcdef   web\n"
        );
    }
}
