//! `berth logs`: a container's CRI log file, read directly (the CRI has no log RPC; the
//! runtime names the file in ContainerStatus), printed as the lines the container wrote.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::Ctx;
use crate::args::LogsArgs;
use crate::table::out_err;
use crate::{CliError, crilog};

/// Prints complete records of `text` (a chunk of a CRI log); returns how many bytes were
/// consumed (an unfinished last line is left for later).
fn print_records(text: &str, timestamps: bool, at_end: bool) -> Result<usize, CliError> {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let mut consumed = 0;
    let mut rest = text;
    while let Some(i) = rest.find('\n').or(if at_end && !rest.is_empty() {
        Some(rest.len())
    } else {
        None
    }) {
        let line = &rest[..i];
        consumed += (i + 1).min(rest.len());
        rest = &rest[(i + 1).min(rest.len())..];
        let Ok(r) = crilog::parse(line) else {
            continue;
        };
        let w: &mut dyn Write = match r.stream {
            crilog::Stream::Stdout => &mut out,
            crilog::Stream::Stderr => &mut err,
        };
        if timestamps {
            write!(w, "{} ", r.timestamp).map_err(out_err)?;
        }
        w.write_all(r.content.as_bytes()).map_err(out_err)?;
        if !r.partial {
            w.write_all(b"\n").map_err(out_err)?;
        }
    }
    out.flush().map_err(out_err)?;
    Ok(consumed)
}

/// `berth logs`: prints a container's log, stdout lines to stdout and stderr lines to
/// stderr; with `--follow`, until the container has exited and its last output is printed.
pub(crate) async fn logs(ctx: &Ctx, a: LogsArgs) -> Result<(), CliError> {
    let status = ctx.container_status(&a.id).await?;
    if status.log_path.is_empty() {
        return Err(CliError::Usage(format!(
            "container {} has no log path (its pod has no log directory or it has no log_path)",
            a.id
        )));
    }
    let path = PathBuf::from(&status.log_path);
    let read = |from: usize| -> Result<String, CliError> {
        match std::fs::read(&path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(CliError::Io {
                what: format!("read {}", path.display()),
                source: e,
            }),
        }
    };
    let mut offset = 0;
    let text = read(0)?;
    if let Some(n) = a.tail {
        // Skip to the last n records (one record per line).
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(n);
        offset = lines[..skip].iter().map(|l| l.len() + 1).sum();
    }
    offset += print_records(&text[offset.min(text.len())..], a.timestamps, !a.follow)?;
    if !a.follow {
        return Ok(());
    }
    let mut last_check = std::time::Instant::now();
    let mut running = true;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let chunk = read(offset)?;
        let done = !running;
        offset += print_records(&chunk, a.timestamps, done)?;
        if done {
            return Ok(());
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = std::time::Instant::now();
            let s = ctx.container_status(&a.id).await?;
            running = s.state == cri::ContainerState::ContainerRunning as i32
                || s.state == cri::ContainerState::ContainerCreated as i32;
        }
    }
}
