//! The verbs about the runtime itself: `version` and `info`.

use k8s_cri::v1 as cri;
use serde_json::{Value, json};

use super::Ctx;
use crate::CliError;
use crate::args::Output;
use crate::table::{print, print_json};

/// `berth version`: the runtime's name and versions.
pub(crate) async fn version(ctx: &Ctx) -> Result<(), CliError> {
    let mut c = ctx.cri.clone();
    let v = ctx
        .call("Version", c.version(cri::VersionRequest::default()))
        .await?;
    match ctx.output {
        Output::Json => print_json(&json!({
            "version": v.version,
            "runtimeName": v.runtime_name,
            "runtimeVersion": v.runtime_version,
            "runtimeApiVersion": v.runtime_api_version,
        })),
        Output::Table => print(&format!(
            "Version:  {}\nRuntimeName:  {}\nRuntimeVersion:  {}\nRuntimeApiVersion:  {}\n",
            v.version, v.runtime_name, v.runtime_version, v.runtime_api_version
        )),
    }
}

/// `berth info`: the runtime's conditions and its verbose info (CRI Status).
pub(crate) async fn info(ctx: &Ctx) -> Result<(), CliError> {
    let mut c = ctx.cri.clone();
    let s = ctx
        .call("Status", c.status(cri::StatusRequest { verbose: true }))
        .await?;
    let conditions: Vec<Value> = s
        .status
        .map(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message}))
        .collect();
    let mut v = json!({ "status": { "conditions": conditions } });
    for (k, text) in &s.info {
        v[k] = Value::String(text.clone());
    }
    print_json(&v)
}
