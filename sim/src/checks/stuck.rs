//! Nothing stuck once faults stop: no container left removing, no sandbox left UNKNOWN, and
//! (checked by the run itself with these bounds) recovery finishes and every client's
//! requests complete within a bounded simulated time.

use std::time::Duration;

use berth_service::ContainerView;

/// How long after the heal begins berth must be ready (serving), even if a call hung
/// during the chaos: recovery has a per-container deadline.
pub const READY_BOUND: Duration = Duration::from_secs(60);

/// How long after the heal begins every client must have finished its script.
pub const CLIENTS_BOUND: Duration = Duration::from_secs(300);

/// How long removing everything may take at the end.
pub const TEARDOWN_BOUND: Duration = Duration::from_secs(120);

/// Containers still marked removing.
pub fn nothing_removing(containers: &[ContainerView]) -> Vec<String> {
    containers
        .iter()
        .filter(|v| v.removing)
        .map(|v| format!("container {} stuck removing ({})", v.meta.id, v.state))
        .collect()
}
