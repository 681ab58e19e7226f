//! Container stdout and stderr in the CRI log format, through FIFOs berth reads.
//!
//! containerd's CRI plugin does the same (`pkg/cri/io`): the shim writes a container's
//! stdout and stderr into two FIFOs, and the runtime copies them into the container's log
//! file, one line per record:
//!
//! ```text
//! 2024-05-01T10:00:00.123456789Z stdout F a whole line
//! 2024-05-01T10:00:00.123456789Z stderr P the first max_line_bytes of a long line
//! 2024-05-01T10:00:00.123456789Z stderr F its rest
//! ```
//!
//! Layout: `<fifo root>/<containerd namespace>/<id>/{stdout,stderr,log-path}` (0700 dir,
//! 0600 FIFOs; `log-path` names the log file, for re-attaching after a restart).
//!
//! Lifecycle, driven from the task calls in `task.rs`:
//! - `Tasks.Create`: the FIFOs are made and a copier task opens both **before** the call
//!   (the shim's write-side open blocks until a reader exists; docs/containerd-behaviour.md §9.2).
//!   The copier opens
//!   them read-write, so it never sees a spurious EOF and the open never blocks.
//! - `Tasks.Wait` returning an exit: the copier drains what the FIFOs hold, so the log is
//!   complete when the exit is recorded.
//! - `Tasks.Get` or `Tasks.Wait` of a task whose FIFOs exist but that no copier of this
//!   process reads (berth restarted): a copier re-attaches. Nothing is lost meanwhile: the
//!   shim keeps the FIFOs open, and their content waits in the pipe buffer (a container
//!   that fills it blocks, as under containerd).
//! - `Tasks.Delete` (or NotFound): the copier drains, writes a trailing partial line, stops,
//!   and the directory is removed.
//!
//! Copiers live in a process-wide registry keyed by containerd namespace and id, so clones
//! of a backend share them; [`configure_logs`] sets the FIFO root and the maximum line size
//! once per process.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use crate::backend::ContainerdBackend;

/// Default directory of the per-container FIFO directories.
pub const DEFAULT_FIFO_ROOT: &str = "/run/berth/io";
/// Default maximum size of one log record's content (containerd's
/// `max_container_log_line_size`); longer lines are split into `P` records.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024;
/// Mode of a container log file berth creates.
pub const LOG_FILE_MODE: u32 = 0o640;
/// Name of the file holding the log path inside a container's FIFO directory.
const LOG_PATH_FILE: &str = "log-path";
/// Bytes read from a FIFO at once.
const READ_CHUNK: usize = 32 * 1024;
/// How long a drain may take before the caller moves on (a log on a hung file system must
/// not stall exit handling).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-process settings of the log copiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Directory of the per-container FIFO directories (default [`DEFAULT_FIFO_ROOT`]).
    pub fifo_root: PathBuf,
    /// Maximum content bytes of one record (default [`DEFAULT_MAX_LINE_BYTES`]; at least 1).
    pub max_line_bytes: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            fifo_root: PathBuf::from(DEFAULT_FIFO_ROOT),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

static SETTINGS: OnceLock<LogSettings> = OnceLock::new();

/// Sets the log settings of this process. Call it once, before the first task is created;
/// returns false (and changes nothing) if the settings were already fixed.
pub fn configure_logs(settings: LogSettings) -> bool {
    SETTINGS.set(settings).is_ok()
}

fn settings() -> &'static LogSettings {
    SETTINGS.get_or_init(LogSettings::default)
}

/// The directory FIFOs of this process live under ([`LogSettings::fifo_root`]).
pub(crate) fn fifo_root() -> &'static Path {
    &settings().fifo_root
}

/// Why a log operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// No copier of this process serves the container (it has no log path, or no task).
    #[error("container {id}: no log is being written (no log path, or no task)")]
    NotAttached {
        /// The container.
        id: String,
    },
    /// The log file could not be reopened.
    #[error("container {id}: reopen log {path}: {message}")]
    Reopen {
        /// The container.
        id: String,
        /// The log file.
        path: String,
        /// The OS's words.
        message: String,
    },
    /// The copier did not answer in time or has stopped.
    #[error("container {id}: the log copier did not answer")]
    CopierGone {
        /// The container.
        id: String,
    },
    /// The FIFOs could not be made or opened.
    #[error("container {id}: log FIFOs in {dir}: {message}")]
    Fifo {
        /// The container.
        id: String,
        /// Its FIFO directory.
        dir: String,
        /// What failed.
        message: String,
    },
}

/// A request to a copier.
enum Control {
    /// Drain what the FIFOs hold into the log, then answer.
    Sync(oneshot::Sender<()>),
    /// Drain, then reopen the log file (after log rotation moved it).
    Reopen(oneshot::Sender<io::Result<()>>),
    /// Drain, write trailing partial lines, stop.
    Stop(oneshot::Sender<()>),
}

static COPIERS: LazyLock<Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry() -> std::sync::MutexGuard<'static, HashMap<String, mpsc::UnboundedSender<Control>>> {
    COPIERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stdout and stderr FIFO paths given to `Tasks.Create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FifoPaths {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl ContainerdBackend {
    fn log_key(&self, id: &str) -> String {
        format!("{}/{id}", self.config().namespace)
    }

    fn fifo_dir(&self, id: &str) -> PathBuf {
        settings().fifo_root.join(&self.config().namespace).join(id)
    }

    /// Makes the container's FIFOs, creates its log file and starts a copier reading both
    /// FIFOs (before `Tasks.Create`: the shim's open blocks until a reader exists). A
    /// leftover copier or directory of an earlier attempt is replaced.
    pub(crate) async fn prepare_log_io(
        &self,
        id: &str,
        log_path: &str,
    ) -> Result<FifoPaths, LogError> {
        self.release_logs(id).await;
        let dir = self.fifo_dir(id);
        let fifo_err = |message: String| LogError::Fifo {
            id: id.to_owned(),
            dir: dir.display().to_string(),
            message,
        };
        create_log_file(Path::new(log_path)).map_err(|m| fifo_err(m.clone()))?;
        // An empty namespace directory is removed with its last container; a removal racing
        // this creation shows as NotFound, and creating again fixes it.
        let mut attempts = 0;
        loop {
            match make_fifo_dir(&dir, log_path) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(fifo_err(e.to_string())),
            }
        }
        self.attach(id, &dir, PathBuf::from(log_path))
            .map_err(|e| fifo_err(format!("open FIFOs: {e}")))?;
        Ok(FifoPaths {
            stdout: dir.join("stdout").display().to_string(),
            stderr: dir.join("stderr").display().to_string(),
        })
    }

    /// Starts a copier on the FIFOs in `dir` unless one runs already.
    fn attach(&self, id: &str, dir: &Path, log_path: PathBuf) -> io::Result<()> {
        let key = self.log_key(id);
        let mut copiers = registry();
        if copiers.get(&key).is_some_and(|tx| !tx.is_closed()) {
            return Ok(());
        }
        let open = |name: &str| {
            pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(dir.join(name))
        };
        let stdout = open("stdout")?;
        let stderr = open("stderr")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let copier = Copier::new(id.to_owned(), log_path, settings().max_line_bytes);
        tokio::spawn(copier.run(stdout, stderr, rx));
        copiers.insert(key, tx);
        Ok(())
    }

    /// Re-attaches a copier to a task whose FIFOs exist but that no copier of this process
    /// reads (berth restarted while the task lived). Errors are logged: a log must never
    /// make a task call fail.
    pub(crate) fn ensure_logs_attached(&self, id: &str) {
        if registry()
            .get(&self.log_key(id))
            .is_some_and(|tx| !tx.is_closed())
        {
            return;
        }
        let dir = self.fifo_dir(id);
        let Ok(log_path) = std::fs::read_to_string(dir.join(LOG_PATH_FILE)) else {
            return;
        };
        match self.attach(id, &dir, PathBuf::from(log_path.trim_end_matches('\n'))) {
            Ok(()) => tracing::info!(container = id, "log copier re-attached to its FIFOs"),
            Err(e) => {
                tracing::warn!(container = id, error = %e, "cannot re-attach the log copier")
            }
        }
    }

    /// Waits until what the container's FIFOs hold now is in its log (after an exit).
    pub(crate) async fn sync_logs(&self, id: &str) {
        let Some(tx) = registry().get(&self.log_key(id)).cloned() else {
            return;
        };
        let (ack, done) = oneshot::channel();
        if tx.send(Control::Sync(ack)).is_ok()
            && tokio::time::timeout(DRAIN_TIMEOUT, done).await.is_err()
        {
            tracing::warn!(container = id, "log copier did not drain in time");
        }
    }

    /// Stops the container's copier after a last drain and removes its FIFO directory
    /// (after `Tasks.Delete`, or before a new `Tasks.Create`).
    pub(crate) async fn release_logs(&self, id: &str) {
        let tx = registry().remove(&self.log_key(id));
        if let Some(tx) = tx {
            let (ack, done) = oneshot::channel();
            if tx.send(Control::Stop(ack)).is_ok()
                && tokio::time::timeout(DRAIN_TIMEOUT, done).await.is_err()
            {
                tracing::warn!(container = id, "log copier did not stop in time");
            }
        }
        let dir = self.fifo_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(container = id, dir = %dir.display(), error = %e, "cannot remove log FIFOs")
            }
            _ => {}
        }
        // The namespace's directory goes with its last container (fails while not empty).
        if let Some(ns_dir) = dir.parent() {
            let _ = std::fs::remove_dir(ns_dir);
        }
    }

    /// CRI `ReopenContainerLog`: the copier drains, then closes and reopens the log file
    /// (creating it), so a file moved away by log rotation is followed by a new one.
    pub async fn reopen_container_log(&self, id: &str) -> Result<(), LogError> {
        self.ensure_logs_attached(id);
        let Some(tx) = registry().get(&self.log_key(id)).cloned() else {
            return Err(LogError::NotAttached { id: id.to_owned() });
        };
        let (ack, done) = oneshot::channel();
        let gone = || LogError::CopierGone { id: id.to_owned() };
        tx.send(Control::Reopen(ack)).map_err(|_| gone())?;
        match tokio::time::timeout(DRAIN_TIMEOUT, done).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(LogError::Reopen {
                id: id.to_owned(),
                path: std::fs::read_to_string(self.fifo_dir(id).join(LOG_PATH_FILE))
                    .unwrap_or_default(),
                message: e.to_string(),
            }),
            _ => Err(gone()),
        }
    }

    /// Stops every copier of this backend's namespace after a last drain, writing trailing
    /// partial lines but keeping the FIFOs, so a later berth re-attaches to them (graceful
    /// shutdown; the shims keep the FIFOs and buffer what the containers write meanwhile).
    pub async fn detach_logs(&self) {
        let prefix = format!("{}/", self.config().namespace);
        let copiers: Vec<_> = {
            let mut reg = registry();
            let keys: Vec<String> = reg
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            keys.into_iter().filter_map(|k| reg.remove(&k)).collect()
        };
        for tx in copiers {
            let (ack, done) = oneshot::channel();
            if tx.send(Control::Stop(ack)).is_ok() {
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, done).await;
            }
        }
    }
}

/// Makes a container's FIFO directory: the two FIFOs (0600) and the log path file.
fn make_fifo_dir(dir: &Path, log_path: &str) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for name in ["stdout", "stderr"] {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.join(name),
            rustix::fs::Mode::from(0o600),
        )
        .map_err(io::Error::from)?;
    }
    std::fs::write(dir.join(LOG_PATH_FILE), log_path)
}

/// Creates the log file (and its parent directories) if missing, mode [`LOG_FILE_MODE`].
pub(crate) fn create_log_file(path: &Path) -> Result<File, String> {
    if !path.is_absolute() {
        return Err(format!("log path {} is not absolute", path.display()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("create log directory {}: {e}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
        .map_err(|e| format!("create log file {}: {e}", path.display()))
}

/// Which stream a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl LogStream {
    /// The CRI name (`stdout`, `stderr`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// Splits one stream into CRI log records (containerd's `redirectLogs`): a line ending in
/// `\n` (or `\r\n`, both dropped) is an `F` record; content past `max_line_bytes` goes out
/// in `P` records of exactly that size; [`LineSplitter::finish`] writes what is left of an
/// unterminated line as a `P` record.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    stream: LogStream,
    max: usize,
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter for `stream` with records of at most `max_line_bytes` content bytes (at
    /// least 1).
    pub fn new(stream: LogStream, max_line_bytes: usize) -> Self {
        LineSplitter {
            stream,
            max: max_line_bytes.max(1),
            pending: Vec::new(),
        }
    }

    /// Feeds bytes read from the stream; complete records are appended to `out`, each
    /// stamped `timestamp`.
    pub fn feed(&mut self, mut data: &[u8], timestamp: &str, out: &mut Vec<u8>) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    if self.pending.last() == Some(&b'\r') {
                        self.pending.pop();
                    }
                    let start = self.emit_long(timestamp, out);
                    self.record(b'F', start, self.pending.len(), timestamp, out);
                    self.pending.clear();
                }
                None => {
                    self.pending.extend_from_slice(data);
                    data = &[];
                    let start = self.emit_long(timestamp, out);
                    self.pending.drain(..start);
                }
            }
        }
    }

    /// Writes a trailing unterminated line, if any, as a `P` record (end of the stream).
    pub fn finish(&mut self, timestamp: &str, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            self.record(b'P', 0, self.pending.len(), timestamp, out);
            self.pending.clear();
        }
    }

    /// Emits `P` records while more than `max` bytes are pending; returns where the rest
    /// starts.
    fn emit_long(&self, timestamp: &str, out: &mut Vec<u8>) -> usize {
        let mut start = 0;
        while self.pending.len() - start > self.max {
            self.record(b'P', start, start + self.max, timestamp, out);
            start += self.max;
        }
        start
    }

    fn record(&self, tag: u8, from: usize, to: usize, timestamp: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(timestamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.stream.as_str().as_bytes());
        out.push(b' ');
        out.push(tag);
        out.push(b' ');
        out.extend_from_slice(&self.pending[from..to]);
        out.push(b'\n');
    }
}

/// RFC 3339 with nanoseconds in UTC, the CRI log timestamp
/// (`2006-01-02T15:04:05.000000000Z07:00` in containerd, always 9 digits).
pub fn rfc3339_nanos(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_timestamp() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    rfc3339_nanos(nanos)
}

/// One container's copier: both streams into one log file.
struct Copier {
    id: String,
    path: PathBuf,
    file: Option<File>,
    out: LineSplitter,
    err: LineSplitter,
    buf: Vec<u8>,
    warned: bool,
}

impl Copier {
    fn new(id: String, path: PathBuf, max_line_bytes: usize) -> Self {
        let mut c = Copier {
            id,
            path,
            file: None,
            out: LineSplitter::new(LogStream::Stdout, max_line_bytes),
            err: LineSplitter::new(LogStream::Stderr, max_line_bytes),
            buf: Vec::with_capacity(READ_CHUNK + 256),
            warned: false,
        };
        if let Err(e) = c.open() {
            c.warn(&e);
        }
        c
    }

    fn open(&mut self) -> io::Result<()> {
        self.file = None;
        let file = create_log_file(&self.path).map_err(io::Error::other)?;
        self.file = Some(file);
        self.warned = false;
        Ok(())
    }

    fn warn(&mut self, e: &dyn std::fmt::Display) {
        if !self.warned {
            tracing::warn!(container = %self.id, log = %self.path.display(), error = %e,
                "cannot write the container log; output is dropped until it can");
            self.warned = true;
        }
    }

    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let result = match self.file.as_mut() {
            Some(f) => f.write_all(&self.buf),
            None => Err(io::Error::other("log file is not open")),
        };
        if let Err(e) = result {
            self.warn(&e);
        }
        self.buf.clear();
    }

    fn consume(&mut self, stream: LogStream, data: &[u8]) {
        let ts = now_timestamp();
        match stream {
            LogStream::Stdout => self.out.feed(data, &ts, &mut self.buf),
            LogStream::Stderr => self.err.feed(data, &ts, &mut self.buf),
        }
        self.write_out();
    }

    fn finish(&mut self) {
        let ts = now_timestamp();
        self.out.finish(&ts, &mut self.buf);
        self.err.finish(&ts, &mut self.buf);
        self.write_out();
    }

    /// Reads whatever the FIFOs hold now, without waiting.
    fn drain(&mut self, streams: [&pipe::Receiver; 2], chunk: &mut [u8]) {
        for (stream, rx) in [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .zip(streams)
        {
            loop {
                match rx.try_read(chunk) {
                    Ok(0) => break,
                    Ok(n) => self.consume(stream, &chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
    }

    async fn run(
        mut self,
        mut stdout: pipe::Receiver,
        mut stderr: pipe::Receiver,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let mut out_buf = vec![0u8; READ_CHUNK];
        let mut err_buf = vec![0u8; READ_CHUNK];
        let (mut out_open, mut err_open) = (true, true);
        loop {
            tokio::select! {
                r = stdout.read(&mut out_buf), if out_open => match r {
                    Ok(n) if n > 0 => self.consume(LogStream::Stdout, &out_buf[..n]),
                    _ => out_open = false,
                },
                r = stderr.read(&mut err_buf), if err_open => match r {
                    Ok(n) if n > 0 => self.consume(LogStream::Stderr, &err_buf[..n]),
                    _ => err_open = false,
                },
                c = control.recv() => {
                    self.drain([&stdout, &stderr], &mut out_buf);
                    match c {
                        Some(Control::Sync(ack)) => {
                            let _ = ack.send(());
                        }
                        Some(Control::Reopen(ack)) => {
                            let _ = ack.send(self.open());
                        }
                        Some(Control::Stop(ack)) => {
                            self.finish();
                            let _ = ack.send(());
                            return;
                        }
                        None => {
                            self.finish();
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]], finish: bool) -> String {
        let mut s = LineSplitter::new(LogStream::Stdout, max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, "T", &mut out);
        }
        if finish {
            s.finish("T", &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn whole_lines_are_f_records() {
        assert_eq!(
            split(16, &[b"a\nbc\n"], false),
            "T stdout F a\nT stdout F bc\n"
        );
        assert_eq!(split(16, &[b"\n"], false), "T stdout F \n", "empty line");
        assert_eq!(split(16, &[b"crlf\r\n"], false), "T stdout F crlf\n");
    }

    #[test]
    fn lines_across_reads_are_joined() {
        assert_eq!(
            split(16, &[b"hel", b"lo\nwor", b"ld\n"], false),
            "T stdout F hello\nT stdout F world\n"
        );
    }

    #[test]
    fn long_lines_are_split_into_p_records() {
        assert_eq!(
            split(4, &[b"abcdefghij\n"], false),
            "T stdout P abcd\nT stdout P efgh\nT stdout F ij\n"
        );
        assert_eq!(
            split(4, &[b"abcd\n"], false),
            "T stdout F abcd\n",
            "exactly max is whole"
        );
        assert_eq!(
            split(4, &[b"ab", b"cdef", b"gh", b"\n"], false),
            "T stdout P abcd\nT stdout F efgh\n",
            "split across reads"
        );
    }

    #[test]
    fn an_unterminated_tail_is_a_p_record_at_the_end() {
        assert_eq!(split(16, &[b"a\nrest"], false), "T stdout F a\n");
        assert_eq!(
            split(16, &[b"a\nrest"], true),
            "T stdout F a\nT stdout P rest\n"
        );
        assert_eq!(split(16, &[], true), "", "nothing pending, nothing written");
    }

    #[test]
    fn stderr_records_name_their_stream() {
        let mut s = LineSplitter::new(LogStream::Stderr, 8);
        let mut out = Vec::new();
        s.feed(b"x\n", "T", &mut out);
        assert_eq!(out, b"T stderr F x\n");
    }

    #[test]
    fn timestamps_are_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }
}
