//! The container verbs: `create`, `start`, `stop`, `rm`, `ps` and `inspect`.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use serde_json::json;

use super::Ctx;
use crate::CliError;
use crate::args::{CreateArgs, Output, PsArgs, StatsArgs};
use crate::requests::container_request;
use crate::table::{
    add_info, container_json, container_status_json, containers_table, now_nanos, print, print_ids,
    print_json,
};

/// `berth create`: creates a container in a pod and prints its id.
pub(crate) async fn create(ctx: &Ctx, a: CreateArgs) -> Result<(), CliError> {
    let req = container_request(&a)?;
    let mut c = ctx.cri.clone();
    let r = ctx.call("CreateContainer", c.create_container(req)).await?;
    match ctx.output {
        Output::Json => print_json(&json!({ "id": r.container_id })),
        Output::Table => print(&format!("{}\n", r.container_id)),
    }
}

/// `berth start`: starts containers in order, printing each id; the first failure ends the
/// command.
pub(crate) async fn start(ctx: &Ctx, ids: Vec<String>) -> Result<(), CliError> {
    ctx.each_id(
        ids,
        "StartContainer",
        |mut c, container_id| async move {
            c.start_container(cri::StartContainerRequest { container_id })
                .await
        },
        |id, _| print(&format!("{id}\n")),
    )
    .await
}

/// `berth stop`: stops containers in order (the stop signal, SIGKILL after `timeout`
/// seconds), printing each id; the first failure ends the command.
pub(crate) async fn stop(ctx: &Ctx, timeout: i64, ids: Vec<String>) -> Result<(), CliError> {
    ctx.each_id(
        ids,
        "StopContainer",
        |mut c, container_id| async move {
            c.stop_container(cri::StopContainerRequest {
                container_id,
                timeout,
            })
            .await
        },
        |id, _| print(&format!("{id}\n")),
    )
    .await
}

/// `berth rm`: removes containers in order, printing each id; the first failure ends the
/// command.
pub(crate) async fn rm(ctx: &Ctx, ids: Vec<String>) -> Result<(), CliError> {
    ctx.each_id(
        ids,
        "RemoveContainer",
        |mut c, container_id| async move {
            c.remove_container(cri::RemoveContainerRequest { container_id })
                .await
        },
        |id, _| print(&format!("{id}\n")),
    )
    .await
}

/// `berth ps`: lists containers (running ones unless `--all`), newest first.
pub(crate) async fn ps(ctx: &Ctx, a: PsArgs) -> Result<(), CliError> {
    let state = match a.state.as_deref() {
        Some("created") => Some(cri::ContainerState::ContainerCreated),
        Some("running") => Some(cri::ContainerState::ContainerRunning),
        Some("exited") => Some(cri::ContainerState::ContainerExited),
        Some("unknown") => Some(cri::ContainerState::ContainerUnknown),
        _ if a.all => None,
        _ => Some(cri::ContainerState::ContainerRunning),
    };
    let filter = cri::ContainerFilter {
        id: a.id.clone().unwrap_or_default(),
        state: state.map(|s| cri::ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: a.pod.clone().unwrap_or_default(),
        label_selector: a.list.labels.iter().cloned().collect(),
    };
    let mut c = ctx.cri.clone();
    let mut containers = ctx
        .call(
            "ListContainers",
            c.list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            }),
        )
        .await?
        .containers;
    containers.retain(|c| {
        a.name
            .as_ref()
            .is_none_or(|n| c.metadata.as_ref().is_some_and(|m| &m.name == n))
    });
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if a.list.quiet {
        return print_ids(containers.iter().map(|c| c.id.as_str()));
    }
    match ctx.output {
        Output::Json => print_json(&json!({
            "containers": containers.iter().map(container_json).collect::<Vec<_>>()
        })),
        Output::Table => {
            // The POD column names the pod, as crictl does.
            let mut c = ctx.cri.clone();
            let pod_names: HashMap<String, String> = ctx
                .call(
                    "ListPodSandbox",
                    c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
                )
                .await?
                .items
                .into_iter()
                .map(|p| (p.id, p.metadata.map(|m| m.name).unwrap_or_default()))
                .collect();
            print(&containers_table(
                &containers,
                &pod_names,
                a.list.no_trunc,
                now_nanos(),
            ))
        }
    }
}

/// `berth inspect`: each container's verbose status, as JSON.
pub(crate) async fn inspect(ctx: &Ctx, ids: Vec<String>) -> Result<(), CliError> {
    ctx.each_id(
        ids,
        "ContainerStatus",
        |mut c, container_id| async move {
            c.container_status(cri::ContainerStatusRequest {
                container_id,
                verbose: true,
            })
            .await
        },
        |_, r| {
            let mut v = json!({ "status": r.status.as_ref().map(container_status_json) });
            add_info(&mut v, &r.info);
            print_json(&v)
        },
    )
    .await
}

/// `berth stats`: ListContainerStats with the filters given; a table (CPU % from the rate
/// between two of berthd's samples, "-" before it has two), or the CRI JSON.
pub(crate) async fn stats(ctx: &Ctx, a: StatsArgs) -> Result<(), CliError> {
    let filter = cri::ContainerStatsFilter {
        id: a.id.clone().unwrap_or_default(),
        pod_sandbox_id: a.pod.clone().unwrap_or_default(),
        label_selector: a.labels.iter().cloned().collect(),
    };
    let mut c = ctx.cri.clone();
    let mut stats = ctx
        .call(
            "ListContainerStats",
            c.list_container_stats(cri::ListContainerStatsRequest {
                filter: Some(filter),
            }),
        )
        .await?
        .stats;
    stats.sort_by(|x, y| {
        let name = |s: &cri::ContainerStats| {
            s.attributes
                .as_ref()
                .and_then(|a| a.metadata.as_ref())
                .map(|m| m.name.clone())
                .unwrap_or_default()
        };
        name(x).cmp(&name(y))
    });
    match ctx.output {
        Output::Json => print_json(&json!({
            "stats": stats.iter().map(|s| serde_json::to_value(s).unwrap_or_default()).collect::<Vec<_>>()
        })),
        Output::Table => print(&crate::table::stats_table(&stats, a.no_trunc)),
    }
}
