//! ContainerStats and ListContainerStats: the containers the service lists, with the usage
//! their tasks report (`Tasks.Metrics` through [`berth_service::ServiceHandle::task_metrics`];
//! the field mapping is in docs/containerd-behaviour.md §12).
//!
//! `usage_nano_cores` is the CPU rate between this sample and the previous one berthd took
//! of the same task: the first sample has none (never a made-up 0), and a restarted task's
//! counter going back starts over. A container without a task (created, exited) is listed
//! with its attributes and no CPU or memory figures, where containerd's ContainerStats fails.
//! The writable layer's usage is not reported yet.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_backend::TaskMetrics;
use berth_service::ContainerView;
use k8s_cri::v1 as cri;

/// The previous CPU sample of each task: (timestamp ns, cumulative CPU ns).
#[derive(Debug, Default)]
pub struct CpuSamples {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuSamples {
    /// Records `m` and returns the CPU rate since the previous sample of the same task, in
    /// nanoseconds of CPU per second, if there is one to compare with.
    pub fn rate(&self, m: &TaskMetrics) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let previous = last.insert(m.id.clone(), (m.timestamp, m.cpu_usage_ns));
        let (at, cpu) = previous?;
        let dt = m.timestamp.checked_sub(at).filter(|d| *d > 0)?;
        let used = m.cpu_usage_ns.checked_sub(cpu)?;
        let rate = u128::from(used) * 1_000_000_000 / u128::try_from(dt).ok()?;
        u64::try_from(rate).ok()
    }

    /// Forgets the samples of tasks not in `alive` (removed containers).
    pub fn retain(&self, alive: &[String]) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|id, _| alive.iter().any(|a| a == id));
    }
}

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// One container's CRI stats from its view and its task's metrics (if it has a task).
pub fn container_stats(
    v: &ContainerView,
    metrics: Option<&TaskMetrics>,
    samples: &CpuSamples,
) -> cri::ContainerStats {
    let attributes = cri::ContainerAttributes {
        id: v.meta.id.to_string(),
        metadata: Some(cri::ContainerMetadata {
            name: v.meta.config.name.clone(),
            attempt: v.meta.config.attempt,
        }),
        labels: v.meta.config.labels.clone().into_iter().collect(),
        annotations: v.meta.config.annotations.clone().into_iter().collect(),
    };
    let (cpu, memory) = match metrics {
        None => (None, None),
        Some(m) => (
            Some(cri::CpuUsage {
                timestamp: m.timestamp,
                usage_core_nano_seconds: value(m.cpu_usage_ns),
                usage_nano_cores: samples.rate(m).and_then(value),
            }),
            Some(cri::MemoryUsage {
                timestamp: m.timestamp,
                working_set_bytes: value(m.memory_working_set_bytes),
                available_bytes: m.memory_available_bytes.and_then(value),
                usage_bytes: value(m.memory_usage_bytes),
                rss_bytes: value(m.memory_rss_bytes),
                page_faults: value(m.page_faults),
                major_page_faults: value(m.major_page_faults),
            }),
        ),
    };
    cri::ContainerStats {
        attributes: Some(attributes),
        cpu,
        memory,
        writable_layer: None,
        swap: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, at: i64, cpu: u64) -> TaskMetrics {
        TaskMetrics {
            id: id.into(),
            timestamp: at,
            cpu_usage_ns: cpu,
            ..TaskMetrics::default()
        }
    }

    #[test]
    fn the_cpu_rate_needs_a_previous_sample_of_the_same_task() {
        let s = CpuSamples::default();
        assert_eq!(s.rate(&sample("a", 1_000_000_000, 100)), None);
        // Half a CPU for two seconds.
        assert_eq!(
            s.rate(&sample("a", 3_000_000_000, 1_000_000_100)),
            Some(500_000_000)
        );
        assert_eq!(s.rate(&sample("b", 3_000_000_000, 5)), None);
        // The same timestamp again, or a counter that went back (a new task): no rate.
        assert_eq!(s.rate(&sample("a", 3_000_000_000, 1_000_000_200)), None);
        assert_eq!(s.rate(&sample("a", 4_000_000_000, 10)), None);
        assert_eq!(s.rate(&sample("a", 5_000_000_000, 10)), Some(0));
        s.retain(&["b".into()]);
        assert_eq!(s.rate(&sample("a", 6_000_000_000, 20)), None);
    }
}
