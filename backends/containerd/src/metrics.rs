//! Task resource usage: `Tasks.Metrics`, whose `data` is the cgroup metrics of the runc shim
//! (`io.containerd.cgroups.v1.Metrics` on cgroup v1, `io.containerd.cgroups.v2.Metrics` on
//! the unified hierarchy), decoded by type URL into [`TaskMetrics`] (the field mapping is in
//! docs/containerd-behaviour.md §12).
//!
//! containerd-client does not carry the two cgroups protos; the messages below declare only
//! the fields berth reads, with the field numbers of containerd/cgroups' `metrics.proto`
//! (prost skips the others).

use berth_backend::{BackendError, BackendErrorKind, ContainerId, TaskMetrics};
use containerd_client::services::v1::MetricsRequest;
use prost::Message as _;

use crate::backend::ContainerdBackend;
use crate::time::unix_nanos;

/// Type URL suffix of cgroup v1 metrics.
pub const CGROUPS_V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
/// Type URL suffix of cgroup v2 metrics.
pub const CGROUPS_V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

/// A memory limit at or above this is "no limit" (cgroup v1 reports 2^63 rounded down to
/// the page size).
const NO_LIMIT: u64 = 1 << 62;

mod v1 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "3")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
        #[prost(message, optional, tag = "9")]
        pub memory_oom_control: Option<MemoryOomControl>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(message, optional, tag = "1")]
        pub usage: Option<CpuUsage>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuUsage {
        #[prost(uint64, tag = "1")]
        pub total: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "19")]
        pub total_rss: u64,
        #[prost(uint64, tag = "26")]
        pub total_pg_fault: u64,
        #[prost(uint64, tag = "27")]
        pub total_pg_maj_fault: u64,
        #[prost(uint64, tag = "30")]
        pub total_inactive_file: u64,
        #[prost(message, optional, tag = "33")]
        pub usage: Option<MemoryEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryEntry {
        #[prost(uint64, tag = "1")]
        pub limit: u64,
        #[prost(uint64, tag = "2")]
        pub usage: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryOomControl {
        #[prost(uint64, tag = "3")]
        pub oom_kill: u64,
    }
}

mod v2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "2")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
        #[prost(message, optional, tag = "8")]
        pub memory_events: Option<MemoryEvents>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(uint64, tag = "1")]
        pub usage_usec: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "1")]
        pub anon: u64,
        #[prost(uint64, tag = "13")]
        pub inactive_file: u64,
        #[prost(uint64, tag = "18")]
        pub pgfault: u64,
        #[prost(uint64, tag = "19")]
        pub pgmajfault: u64,
        #[prost(uint64, tag = "32")]
        pub usage: u64,
        #[prost(uint64, tag = "33")]
        pub usage_limit: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryEvents {
        #[prost(uint64, tag = "5")]
        pub oom_kill: u64,
    }
}

/// Why a metrics payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// The payload's type is neither cgroup v1 nor v2 metrics.
    #[error("unknown metrics type {0:?}")]
    UnknownType(String),
    /// The payload does not decode as its type.
    #[error("{type_url}: {message}")]
    Decode {
        /// Its type.
        type_url: String,
        /// prost's words.
        message: String,
    },
}

/// Working set and what remains under the limit, as containerd's CRI computes them.
fn memory_figures(usage: u64, inactive_file: u64, limit: u64) -> (u64, Option<u64>) {
    let working_set = usage.saturating_sub(inactive_file);
    let available = (limit > 0 && limit < NO_LIMIT).then(|| limit.saturating_sub(working_set));
    (working_set, available)
}

/// Decodes one task's metrics payload (`Metric.data`) of either cgroup version.
pub fn decode_metrics(
    id: &str,
    timestamp: i64,
    type_url: &str,
    value: &[u8],
) -> Result<TaskMetrics, MetricsError> {
    let decode_err = |e: prost::DecodeError| MetricsError::Decode {
        type_url: type_url.to_owned(),
        message: e.to_string(),
    };
    if type_url.ends_with(CGROUPS_V1_METRICS) {
        let m = v1::Metrics::decode(value).map_err(decode_err)?;
        let mem = m.memory.unwrap_or_default();
        let entry = mem.usage.unwrap_or_default();
        let (working_set, available) =
            memory_figures(entry.usage, mem.total_inactive_file, entry.limit);
        Ok(TaskMetrics {
            id: id.to_owned(),
            timestamp,
            cpu_usage_ns: m.cpu.and_then(|c| c.usage).map_or(0, |u| u.total),
            memory_usage_bytes: entry.usage,
            memory_working_set_bytes: working_set,
            memory_available_bytes: available,
            memory_rss_bytes: mem.total_rss,
            page_faults: mem.total_pg_fault,
            major_page_faults: mem.total_pg_maj_fault,
            oom_kills: m.memory_oom_control.map_or(0, |o| o.oom_kill),
        })
    } else if type_url.ends_with(CGROUPS_V2_METRICS) {
        let m = v2::Metrics::decode(value).map_err(decode_err)?;
        let mem = m.memory.unwrap_or_default();
        let (working_set, available) =
            memory_figures(mem.usage, mem.inactive_file, mem.usage_limit);
        Ok(TaskMetrics {
            id: id.to_owned(),
            timestamp,
            cpu_usage_ns: m.cpu.map_or(0, |c| c.usage_usec.saturating_mul(1000)),
            memory_usage_bytes: mem.usage,
            memory_working_set_bytes: working_set,
            memory_available_bytes: available,
            memory_rss_bytes: mem.anon,
            page_faults: mem.pgfault,
            major_page_faults: mem.pgmajfault,
            oom_kills: m.memory_events.map_or(0, |e| e.oom_kill),
        })
    } else {
        Err(MetricsError::UnknownType(type_url.to_owned()))
    }
}

impl ContainerdBackend {
    /// `Tasks.Metrics` of the tasks of `ids` (every task of the namespace when empty).
    pub(crate) async fn metrics_of(
        &self,
        ids: &[ContainerId],
    ) -> Result<Vec<TaskMetrics>, BackendError> {
        const VERB: &str = "Tasks.Metrics";
        let target = match ids {
            [one] => one.as_str().to_owned(),
            _ => format!("{} tasks", ids.len()),
        };
        let c = self.client();
        let reply = self
            .call(
                VERB,
                &target,
                c.tasks().metrics(c.request(MetricsRequest {
                    filters: ids.iter().map(|id| format!("id=={id}")).collect(),
                })),
            )
            .await?;
        let mut out = Vec::with_capacity(reply.metrics.len());
        for m in reply.metrics {
            let Some(data) = m.data else {
                continue;
            };
            let at = unix_nanos(m.timestamp.as_ref()).unwrap_or(0);
            match decode_metrics(&m.id, at, &data.type_url, &data.value) {
                Ok(t) => out.push(t),
                Err(e) => {
                    return Err(BackendError::new(
                        BackendErrorKind::Other,
                        VERB,
                        m.id.as_str(),
                        e.to_string(),
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_metrics_map_as_containerds_cri_does() {
        let payload = v1::Metrics {
            cpu: Some(v1::CpuStat {
                usage: Some(v1::CpuUsage { total: 5_000_000 }),
            }),
            memory: Some(v1::MemoryStat {
                total_rss: 300,
                total_pg_fault: 7,
                total_pg_maj_fault: 1,
                total_inactive_file: 100,
                usage: Some(v1::MemoryEntry {
                    limit: 1000,
                    usage: 400,
                }),
            }),
            memory_oom_control: Some(v1::MemoryOomControl { oom_kill: 2 }),
        }
        .encode_to_vec();
        let m = decode_metrics("c1", 42, "io.containerd.cgroups.v1.Metrics", &payload).unwrap();
        assert_eq!(
            m,
            TaskMetrics {
                id: "c1".into(),
                timestamp: 42,
                cpu_usage_ns: 5_000_000,
                memory_usage_bytes: 400,
                memory_working_set_bytes: 300,
                memory_available_bytes: Some(700),
                memory_rss_bytes: 300,
                page_faults: 7,
                major_page_faults: 1,
                oom_kills: 2,
            }
        );
    }

    #[test]
    fn cgroup_v2_metrics_map_as_containerds_cri_does() {
        let payload = v2::Metrics {
            cpu: Some(v2::CpuStat { usage_usec: 1500 }),
            memory: Some(v2::MemoryStat {
                anon: 80,
                inactive_file: 500,
                pgfault: 9,
                pgmajfault: 3,
                usage: 200,
                usage_limit: u64::MAX,
            }),
            memory_events: Some(v2::MemoryEvents { oom_kill: 1 }),
        }
        .encode_to_vec();
        let m = decode_metrics(
            "c2",
            7,
            "types.containerd.io/io.containerd.cgroups.v2.Metrics",
            &payload,
        )
        .unwrap();
        assert_eq!(m.cpu_usage_ns, 1_500_000);
        // More inactive file pages than usage: the working set is 0, not negative.
        assert_eq!(m.memory_working_set_bytes, 0);
        // No limit: nothing "available" to report.
        assert_eq!(m.memory_available_bytes, None);
        assert_eq!(
            (m.memory_rss_bytes, m.page_faults, m.major_page_faults),
            (80, 9, 3)
        );
        assert_eq!(m.oom_kills, 1);
    }

    #[test]
    fn unknown_types_and_garbage_are_errors_naming_the_type() {
        let e = decode_metrics("c", 0, "example.com/Other", &[]).unwrap_err();
        assert_eq!(e.to_string(), "unknown metrics type \"example.com/Other\"");
        let e = decode_metrics("c", 0, CGROUPS_V1_METRICS, &[0xff, 0xff, 0xff]).unwrap_err();
        assert!(e.to_string().starts_with(CGROUPS_V1_METRICS), "{e}");
        // An empty payload is all zeros, not an error (a task with no usage yet).
        let m = decode_metrics("c", 0, CGROUPS_V1_METRICS, &[]).unwrap();
        assert_eq!(m.memory_available_bytes, None);
    }
}
