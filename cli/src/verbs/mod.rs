//! One function per verb, each in the module of what it works on, and [`run`], which picks
//! the verb of a command line.

mod containers;
mod exec;
mod logs;
mod pods;
mod runtime;

use std::time::Duration;

use k8s_cri::v1 as cri;

use crate::CliError;
use crate::args::{Cli, Command, Output};
use crate::client::{CriClient, connect};

/// What every verb needs: a client, the output format and the request deadline.
pub(crate) struct Ctx {
    pub(crate) cri: CriClient,
    pub(crate) output: Output,
    pub(crate) timeout: Duration,
}

impl Ctx {
    /// Awaits one RPC under the request deadline; a refusal names the RPC and its code.
    pub(crate) async fn call<T>(
        &self,
        rpc: &'static str,
        f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, f).await {
            Err(_) => Err(CliError::Timeout {
                rpc,
                after: self.timeout,
            }),
            Ok(Err(s)) => Err(CliError::Rpc {
                rpc,
                code: s.code(),
                message: s.message().to_owned(),
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Runs `rpc` for each id in order, each on a client of its own and under the request
    /// deadline, and hands each answer to `show`; the first failure (of the call or of
    /// `show`) ends the command, so the ids after it are not tried.
    pub(crate) async fn each_id<T, F, Fut>(
        &self,
        ids: Vec<String>,
        rpc: &'static str,
        mut request: F,
        mut show: impl FnMut(&str, T) -> Result<(), CliError>,
    ) -> Result<(), CliError>
    where
        F: FnMut(CriClient, String) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        for id in ids {
            let answer = self
                .call(rpc, request(self.cri.clone(), id.clone()))
                .await?;
            show(&id, answer)?;
        }
        Ok(())
    }

    /// A container's status (non-verbose ContainerStatus).
    pub(crate) async fn container_status(
        &self,
        id: &str,
    ) -> Result<cri::ContainerStatus, CliError> {
        let mut c = self.cri.clone();
        Ok(self
            .call(
                "ContainerStatus",
                c.container_status(cri::ContainerStatusRequest {
                    container_id: id.to_owned(),
                    verbose: false,
                }),
            )
            .await?
            .status
            .unwrap_or_default())
    }
}

/// Runs one parsed command line: connects to the runtime at `cli.socket`, then carries out
/// the verb, printing its output to stdout (and a container's stderr log lines to stderr).
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let cri = connect(&cli.socket).await?;
    let ctx = Ctx {
        cri,
        output: cli.output,
        timeout: cli.request_timeout,
    };
    match cli.command {
        Command::Version => runtime::version(&ctx).await,
        Command::Info => runtime::info(&ctx).await,
        Command::Runp(a) => pods::runp(&ctx, a).await,
        Command::Stopp { ids } => pods::stopp(&ctx, ids).await,
        Command::Rmp { ids } => pods::rmp(&ctx, ids).await,
        Command::Pods(a) => pods::pods(&ctx, a).await,
        Command::Inspectp { ids } => pods::inspectp(&ctx, ids).await,
        Command::Create(a) => containers::create(&ctx, a).await,
        Command::Start { ids } => containers::start(&ctx, ids).await,
        Command::Stop { timeout, ids } => containers::stop(&ctx, timeout, ids).await,
        Command::Rm { ids } => containers::rm(&ctx, ids).await,
        Command::Ps(a) => containers::ps(&ctx, a).await,
        Command::Inspect { ids } => containers::inspect(&ctx, ids).await,
        Command::Logs(a) => logs::logs(&ctx, a).await,
        Command::Stats(a) => containers::stats(&ctx, a).await,
        Command::Exec(a) => exec::exec(&ctx, a).await,
    }
}
