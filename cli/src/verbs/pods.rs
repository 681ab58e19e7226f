//! The pod sandbox verbs: `runp`, `stopp`, `rmp`, `pods` and `inspectp`.

use k8s_cri::v1 as cri;
use serde_json::json;

use super::Ctx;
use crate::CliError;
use crate::args::{Output, PodsArgs, RunpArgs};
use crate::requests::pod_request;
use crate::table::{
    add_info, container_status_json, now_nanos, pods_table, print, print_ids, print_json,
    sandbox_json, sandbox_status_json,
};

/// `berth runp`: runs a pod sandbox and prints its id.
pub(crate) async fn runp(ctx: &Ctx, a: RunpArgs) -> Result<(), CliError> {
    let req = pod_request(&a)?;
    let mut c = ctx.cri.clone();
    let r = ctx.call("RunPodSandbox", c.run_pod_sandbox(req)).await?;
    match ctx.output {
        Output::Json => print_json(&json!({ "id": r.pod_sandbox_id })),
        Output::Table => print(&format!("{}\n", r.pod_sandbox_id)),
    }
}

/// `berth stopp`: stops pod sandboxes in order (their containers first), printing
/// "Stopped sandbox ID" for each; the first failure ends the command.
pub(crate) async fn stopp(ctx: &Ctx, ids: Vec<String>) -> Result<(), CliError> {
    ctx.each_id(
        ids,
        "StopPodSandbox",
        |mut c, pod_sandbox_id| async move {
            c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id })
                .await
        },
        |id, _| print(&format!("Stopped sandbox {id}\n")),
    )
    .await
}

/// `berth rmp`: removes pod sandboxes in order (and their containers), printing
/// "Removed sandbox ID" for each; the first failure ends the command.
pub(crate) async fn rmp(ctx: &Ctx, ids: Vec<String>) -> Result<(), CliError> {
    ctx.each_id(
        ids,
        "RemovePodSandbox",
        |mut c, pod_sandbox_id| async move {
            c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id })
                .await
        },
        |id, _| print(&format!("Removed sandbox {id}\n")),
    )
    .await
}

/// `berth pods`: lists pod sandboxes, newest first.
pub(crate) async fn pods(ctx: &Ctx, a: PodsArgs) -> Result<(), CliError> {
    let filter = cri::PodSandboxFilter {
        id: a.id.clone().unwrap_or_default(),
        state: a.state.as_deref().map(|s| cri::PodSandboxStateValue {
            state: if s == "ready" {
                cri::PodSandboxState::SandboxReady as i32
            } else {
                cri::PodSandboxState::SandboxNotready as i32
            },
        }),
        label_selector: a.list.labels.iter().cloned().collect(),
    };
    let mut c = ctx.cri.clone();
    let mut items = ctx
        .call(
            "ListPodSandbox",
            c.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(filter),
            }),
        )
        .await?
        .items;
    items.retain(|p| {
        let m = p.metadata.clone().unwrap_or_default();
        a.name.as_ref().is_none_or(|n| &m.name == n)
            && a.namespace.as_ref().is_none_or(|n| &m.namespace == n)
    });
    items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    if a.list.quiet {
        return print_ids(items.iter().map(|p| p.id.as_str()));
    }
    match ctx.output {
        Output::Json => {
            print_json(&json!({ "items": items.iter().map(sandbox_json).collect::<Vec<_>>() }))
        }
        Output::Table => print(&pods_table(&items, a.list.no_trunc, now_nanos())),
    }
}

/// `berth inspectp`: each pod's verbose status and its containers' statuses, as JSON.
pub(crate) async fn inspectp(ctx: &Ctx, ids: Vec<String>) -> Result<(), CliError> {
    ctx.each_id(
        ids,
        "PodSandboxStatus",
        |mut c, pod_sandbox_id| async move {
            c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id,
                verbose: true,
            })
            .await
        },
        |_, r| {
            let mut v = json!({
                "status": r.status.as_ref().map(sandbox_status_json),
                "containers": r.containers_statuses.iter().map(container_status_json).collect::<Vec<_>>(),
            });
            add_info(&mut v, &r.info);
            print_json(&v)
        },
    )
    .await
}
