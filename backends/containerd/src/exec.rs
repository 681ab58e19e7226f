//! ExecSync's exec processes against containerd (placeholder: the lead replaces this file
//! with the real implementation; every call answers `Other` "not implemented on this
//! branch").

use berth_backend::{BackendError, BackendErrorKind, ContainerId, ExecId, ExecOutput, ExecSpec};

use crate::backend::ContainerdBackend;

fn not_implemented(verb: &str, id: &ContainerId) -> BackendError {
    BackendError::new(
        BackendErrorKind::Other,
        verb,
        id.as_str(),
        "not implemented on this branch",
    )
}

impl ContainerdBackend {
    /// `Tasks.Exec` + `Tasks.Start` of an exec process with its output captured.
    pub(crate) async fn exec_start(
        &self,
        id: &ContainerId,
        _exec: &ExecSpec,
    ) -> Result<u32, BackendError> {
        Err(not_implemented("Tasks.Exec", id))
    }

    /// `Tasks.Wait` of an exec process, then its output drained with a bound.
    pub(crate) async fn exec_wait(
        &self,
        id: &ContainerId,
        _exec_id: &ExecId,
    ) -> Result<ExecOutput, BackendError> {
        Err(not_implemented("Tasks.Wait", id))
    }

    /// `Tasks.Kill` of an exec process.
    pub(crate) async fn exec_kill(
        &self,
        id: &ContainerId,
        _exec_id: &ExecId,
        _signal: i32,
    ) -> Result<(), BackendError> {
        Err(not_implemented("Tasks.Kill", id))
    }

    /// `Tasks.DeleteProcess` of an exec process (killed first if it lives).
    pub(crate) async fn exec_delete(
        &self,
        id: &ContainerId,
        _exec_id: &ExecId,
    ) -> Result<(), BackendError> {
        Err(not_implemented("Tasks.DeleteProcess", id))
    }

    /// Kills and deletes every exec process of berth's in the container's task.
    pub(crate) async fn exec_sweep(&self, id: &ContainerId) -> Result<u32, BackendError> {
        Err(not_implemented("Tasks.ListPids", id))
    }
}
