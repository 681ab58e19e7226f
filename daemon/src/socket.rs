//! The CRI socket: bound with mode 0660, a stale socket file replaced, a live one refused.
//!
//! 1. An exclusive `flock` on `<socket>.lock` keeps two berthds from racing each other.
//! 2. If the socket path exists: a non-socket is refused (berthd never deletes a file it
//!    did not make); a socket that accepts a connection belongs to a live server and is
//!    refused; one that refuses (ECONNREFUSED) is stale and removed.
//! 3. The socket is bound under a temporary name, given mode 0660 and renamed into place,
//!    so it is never reachable with a wider mode.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdListener;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Mode of the CRI socket.
pub const SOCKET_MODE: u32 = 0o660;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another berthd holds the lock.
    #[error("another berthd is running on {socket} (lock {lock} is held)")]
    Locked {
        /// The socket.
        socket: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A live server answers on the socket.
    #[error("{socket} is in use: a server accepts connections on it; refusing to replace it")]
    InUse {
        /// The socket.
        socket: PathBuf,
    },
    /// The path exists and is not a socket.
    #[error("{socket} exists and is not a unix socket; refusing to replace it")]
    NotASocket {
        /// The path.
        socket: PathBuf,
    },
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What failed.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A bound CRI socket. Dropping it removes the socket file and releases the lock.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    _lock: File,
}

impl BoundSocket {
    /// The listener (taken once, by the server).
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        // The lock is still held here, so the file is ours.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the CRI socket at `path` (see the module docs). Must run inside a tokio runtime.
pub fn bind(path: &Path) -> Result<BoundSocket, SocketError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock_path = PathBuf::from(lock_name);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open lock file", &lock_path))?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            return Err(SocketError::Locked {
                socket: path.to_owned(),
                lock: lock_path,
            });
        }
        Err(e) => return Err(io_err("lock", &lock_path)(e.into())),
    }
    remove_stale(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = StdListener::bind(&tmp).map_err(io_err("bind", &tmp))?;
    let result = (|| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(io_err("chmod", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("rename socket to", path))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("set non-blocking", path))?;
        UnixListener::from_std(listener).map_err(io_err("register", path))
    })();
    match result {
        Ok(listener) => Ok(BoundSocket {
            listener: Some(listener),
            path: path.to_owned(),
            _lock: lock,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Removes a stale socket at `path`; refuses a live one or a non-socket.
fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            socket: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            socket: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing a stale socket file");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io_err("remove stale socket", path)(e))
                }
                _ => Ok(()),
            }
        }
        Err(e) => Err(io_err("probe existing socket", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_with_mode_0660_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        let s = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(s);
        assert!(!path.exists(), "dropping removes the socket file");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        // Stale: bound, then the listener closed without removing the file.
        drop(StdListener::bind(&path).unwrap());
        assert!(path.exists());
        let s = bind(&path).unwrap();
        // Live (held by `s`, lock held too): refused by the lock.
        assert!(matches!(bind(&path), Err(SocketError::Locked { .. })));
        drop(s);
        // Live without the lock (another program's server): refused by the probe.
        let live = StdListener::bind(&path).unwrap();
        assert!(matches!(bind(&path), Err(SocketError::InUse { .. })));
        assert!(path.exists(), "a live socket is never removed");
        drop(live);
    }

    #[tokio::test]
    async fn a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        std::fs::write(&path, b"precious").unwrap();
        assert!(matches!(bind(&path), Err(SocketError::NotASocket { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }
}
