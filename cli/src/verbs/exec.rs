//! The `exec` verb: CRI ExecSync.

use std::io::Write;
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::Ctx;
use crate::CliError;
use crate::args::ExecArgs;

/// `berth exec ID [--timeout S] -- CMD...`: runs the command in the container, writes its
/// stdout to stdout and its stderr to stderr, and fails with [`CliError::ExecExit`] when it
/// exits non-zero (so `berth` exits with that code).
pub(crate) async fn exec(ctx: &Ctx, a: ExecArgs) -> Result<(), CliError> {
    let timeout_s = u64::try_from(a.timeout).unwrap_or(0);
    // The request may take as long as the command's own timeout.
    let deadline = ctx.timeout.max(Duration::from_secs(timeout_s + 10));
    let sub = Ctx {
        cri: ctx.cri.clone(),
        output: ctx.output,
        timeout: deadline,
    };
    let mut c = ctx.cri.clone();
    let r = sub
        .call(
            "ExecSync",
            c.exec_sync(cri::ExecSyncRequest {
                container_id: a.id,
                cmd: a.cmd,
                timeout: a.timeout,
            }),
        )
        .await?;
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| CliError::Io { what, source }
    };
    std::io::stdout()
        .lock()
        .write_all(&r.stdout)
        .map_err(io("stdout"))?;
    std::io::stderr()
        .lock()
        .write_all(&r.stderr)
        .map_err(io("stderr"))?;
    match r.exit_code {
        0 => Ok(()),
        code => Err(CliError::ExecExit(code)),
    }
}
