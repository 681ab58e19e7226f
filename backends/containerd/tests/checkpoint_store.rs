//! `FsCheckpointStore` on real file systems (docs/architecture.md §3.6): round trips, crashes
//! mid-write,
//! corrupt files, orphans, a full and a read-only tmpfs (root: the tests mount one and fail,
//! never skip, when they cannot), concurrent writers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use berth_backend::{CheckpointStore, LoadError, StoreErrorKind};
use berth_containerd::store::{FsCheckpointStore, STATUS_FILE, TEMP_PREFIX};
use berth_core::{CheckpointError, ContainerId, Status, encode_checkpoint};
use berth_testkit::TmpfsMount;

fn id(s: &str) -> ContainerId {
    ContainerId::new(s).expect("valid id")
}

fn status(pid: u32) -> Status {
    Status {
        pid,
        created_at: 1_795_407_741_827_751_552,
        started_at: if pid > 0 {
            1_795_407_742_192_091_964
        } else {
            0
        },
        reason: format!("r{pid}"),
        ..Status::default()
    }
}

/// Every entry of a container's directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn round_trip_with_layout_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsCheckpointStore::open(tmp.path().join("state")).unwrap();
    assert_eq!(mode(store.containers_dir()), 0o755);
    let c = id("c1");
    let s = status(42);
    store.write(&c, &s).await.unwrap();
    assert_eq!(store.load(&c).await.unwrap(), s);
    let path = store.status_path(&c);
    assert_eq!(path, tmp.path().join("state/containers/c1/status"));
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&store.container_dir(&c)), 0o755);
    assert_eq!(std::fs::read(&path).unwrap(), encode_checkpoint(&s));
    assert_eq!(entries(&store.container_dir(&c)), vec![STATUS_FILE]);
    assert_eq!(store.list().await.unwrap(), vec!["c1"]);
    store.sync().await.unwrap();

    // Reopening an existing store sees the same records.
    let again = FsCheckpointStore::open(tmp.path().join("state")).unwrap();
    assert_eq!(again.load(&c).await.unwrap(), s);
}

#[tokio::test]
async fn overwrite_replaces_and_leaves_one_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsCheckpointStore::open(tmp.path().to_path_buf()).unwrap();
    let c = id("over");
    for pid in [1, 2, 3, 0] {
        store.write(&c, &status(pid)).await.unwrap();
        assert_eq!(store.load(&c).await.unwrap(), status(pid));
    }
    let unknown = Status::unknown(7);
    store.write(&c, &unknown).await.unwrap();
    assert_eq!(store.load(&c).await.unwrap(), unknown);
    assert_eq!(entries(&store.container_dir(&c)), vec![STATUS_FILE]);
}

#[tokio::test]
async fn crash_mid_write_keeps_the_old_record_and_next_write_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsCheckpointStore::open(tmp.path().to_path_buf()).unwrap();
    let c = id("crashy");
    let old = status(10);
    store.write(&c, &old).await.unwrap();

    // What a crash leaves at each point before the rename: an empty temp file (after
    // create), a partial one (mid-write), a complete unsynced one (before rename).
    let dir = store.container_dir(&c);
    let new = encode_checkpoint(&status(11));
    std::fs::write(dir.join(format!("{TEMP_PREFIX}1")), b"").unwrap();
    std::fs::write(dir.join(format!("{TEMP_PREFIX}2")), &new[..new.len() / 2]).unwrap();
    std::fs::write(dir.join(format!("{TEMP_PREFIX}3")), &new).unwrap();

    // After the "restart": the old record, and the temp files are neither records nor dirs.
    let reopened = FsCheckpointStore::open(tmp.path().to_path_buf()).unwrap();
    assert_eq!(reopened.load(&c).await.unwrap(), old);
    assert_eq!(reopened.list().await.unwrap(), vec!["crashy"]);

    let newer = status(12);
    reopened.write(&c, &newer).await.unwrap();
    assert_eq!(reopened.load(&c).await.unwrap(), newer);
    assert_eq!(entries(&dir), vec![STATUS_FILE], "stale temp files left");
}

#[tokio::test]
async fn corrupt_files_give_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsCheckpointStore::open(tmp.path().to_path_buf()).unwrap();
    let c = id("bad");

    match store.load(&c).await {
        Err(LoadError::Missing { id }) => assert_eq!(id, c),
        other => panic!("expected Missing, got {other:?}"),
    }

    store.write(&c, &status(5)).await.unwrap();
    let full = encode_checkpoint(&status(5));
    type Expect = fn(&CheckpointError) -> bool;
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (Vec::new(), |e| matches!(e, CheckpointError::Empty)),
        (full[..full.len() - 3].to_vec(), |e| {
            matches!(e, CheckpointError::Truncated { .. })
        }),
        (b"\x00\x01garbage".to_vec(), |e| {
            matches!(e, CheckpointError::Garbage { .. })
        }),
        (br#"{"Version":"v9","Pid":1}"#.to_vec(), |e| {
            *e == CheckpointError::UnknownVersion {
                version: "v9".into(),
            }
        }),
        (br#"{"Pid":1}"#.to_vec(), |e| {
            matches!(e, CheckpointError::MissingVersion)
        }),
        (vec![b' '; berth_core::MAX_CHECKPOINT_BYTES + 10], |e| {
            matches!(e, CheckpointError::TooLarge { .. })
        }),
    ];
    for (bytes, expected) in cases {
        std::fs::write(store.status_path(&c), &bytes).unwrap();
        match store.load(&c).await {
            Err(LoadError::Corrupt { id, error }) => {
                assert_eq!(id, c);
                assert!(expected(&error), "unexpected error {error:?}");
            }
            other => panic!("expected Corrupt for {} bytes, got {other:?}", bytes.len()),
        }
    }

    // A directory where the file should be is an I/O error, not a missing record.
    std::fs::remove_file(store.status_path(&c)).unwrap();
    std::fs::create_dir(store.status_path(&c)).unwrap();
    match store.load(&c).await {
        Err(LoadError::Io(e)) => {
            assert_eq!(e.kind, StoreErrorKind::Io);
            assert!(e.path.ends_with("bad/status"), "{}", e.path);
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

#[tokio::test]
async fn list_delete_and_remove_orphan() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsCheckpointStore::open(tmp.path().to_path_buf()).unwrap();
    for name in ["b", "a", "c.1"] {
        store.write(&id(name), &status(1)).await.unwrap();
    }
    let containers = store.containers_dir().to_path_buf();
    std::fs::write(containers.join("stray-file"), b"x").unwrap();
    std::fs::create_dir(containers.join(".tmp-something")).unwrap();
    std::os::unix::fs::symlink("/etc", containers.join("link")).unwrap();
    std::fs::create_dir(containers.join("orphan-1")).unwrap();
    std::fs::write(containers.join("orphan-1/status"), b"{}").unwrap();
    std::fs::create_dir(containers.join("orphan-1/nested")).unwrap();
    assert_eq!(
        store.list().await.unwrap(),
        vec!["a", "b", "c.1", "orphan-1"]
    );

    store.delete(&id("a")).await.unwrap();
    assert!(!containers.join("a").exists());
    assert!(matches!(
        store.load(&id("a")).await,
        Err(LoadError::Missing { .. })
    ));
    store.delete(&id("a")).await.unwrap(); // idempotent
    store.delete(&id("never")).await.unwrap();
    // A container directory with no record (a crash between unlink and rmdir) deletes too.
    std::fs::create_dir(containers.join("half")).unwrap();
    std::fs::write(containers.join(format!("half/{TEMP_PREFIX}9")), b"{").unwrap();
    store.delete(&id("half")).await.unwrap();
    assert!(!containers.join("half").exists());
    // Nothing of a deleted container is left beside the others.
    let mut left = entries(&containers);
    left.retain(|n| !n.starts_with('.'));
    assert_eq!(left, vec!["b", "c.1", "link", "orphan-1", "stray-file"]);

    store.remove_orphan("orphan-1").await.unwrap();
    assert!(!containers.join("orphan-1").exists());
    store.remove_orphan("orphan-1").await.unwrap(); // already gone
    for bad in ["..", "a/b", "../x", "", ".", "/etc", "b/../..", "x\0y"] {
        let e = store.remove_orphan(bad).await.expect_err(bad);
        assert!(e.message.contains("refused"), "{bad:?}: {e}");
        assert_eq!(e.what, "remove_orphan");
    }
    assert!(tmp.path().exists() && Path::new("/etc/passwd").exists());
    assert_eq!(store.list().await.unwrap(), vec!["b", "c.1"]);
    // A symlink is removed as a link, never followed.
    store.remove_orphan("link").await.unwrap();
    assert!(!containers.join("link").exists() && Path::new("/etc").is_dir());
    assert_eq!(store.load(&id("b")).await.unwrap(), status(1));
}

/// Fills the file system under `dir` until ENOSPC; returns the filler file.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xAAu8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // Partial pages: fill byte by byte until nothing fits.
    while f.write_all(&[0u8]).is_ok() {}
    path
}

fn temp_files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in walk(dir) {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            found.push(e.display().to_string());
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test]
async fn full_file_system_gives_no_space_and_keeps_the_old_record() {
    let fs = TmpfsMount::new(64 * 1024)
        .expect("mounting a tmpfs needs root; this test must not be skipped");
    let store = FsCheckpointStore::open(fs.path().join("berth")).unwrap();
    let c = id("full");
    let old = status(1);
    store.write(&c, &old).await.unwrap();

    let filler = fill(fs.path());
    let e = store
        .write(&c, &status(2))
        .await
        .expect_err("write on a full fs");
    assert_eq!(e.kind, StoreErrorKind::NoSpace, "{e}");
    assert_eq!(e.what, "write");
    assert!(e.path.contains("/berth/containers/full/"), "{}", e.path);
    assert_eq!(store.load(&c).await.unwrap(), old);
    assert!(
        temp_files_under(fs.path()).is_empty(),
        "temp left: {:?}",
        temp_files_under(fs.path())
    );
    assert_eq!(entries(&store.container_dir(&c)), vec![STATUS_FILE]);

    // A new container on a full fs: no record, no temp file, no empty directory.
    let e = store
        .write(&id("new"), &status(3))
        .await
        .expect_err("new on a full fs");
    assert_eq!(e.kind, StoreErrorKind::NoSpace, "{e}");
    assert!(!store.container_dir(&id("new")).exists());
    assert_eq!(store.list().await.unwrap(), vec!["full"]);
    assert!(temp_files_under(fs.path()).is_empty());

    // Space back: writes work again.
    std::fs::remove_file(filler).unwrap();
    store.write(&c, &status(4)).await.unwrap();
    assert_eq!(store.load(&c).await.unwrap(), status(4));
}

#[tokio::test]
async fn read_only_file_system_gives_read_only() {
    let fs = TmpfsMount::new(64 * 1024)
        .expect("mounting a tmpfs needs root; this test must not be skipped");
    let store = FsCheckpointStore::open(fs.path().join("berth")).unwrap();
    let c = id("ro");
    let old = status(1);
    store.write(&c, &old).await.unwrap();

    fs.remount_ro().expect("remount read-only");
    for (what, result) in [
        ("write", store.write(&c, &status(2)).await),
        ("write", store.write(&id("fresh"), &status(2)).await),
        ("delete", store.delete(&c).await),
        ("remove_orphan", store.remove_orphan("ro").await),
    ] {
        let e = result.expect_err(what);
        assert_eq!(e.kind, StoreErrorKind::ReadOnly, "{what}: {e}");
        assert_eq!(e.what, what);
    }
    // Reads still work and see the old record.
    assert_eq!(store.load(&c).await.unwrap(), old);
    assert_eq!(store.list().await.unwrap(), vec!["ro"]);

    fs.remount_rw().expect("remount read-write");
    store.write(&c, &status(3)).await.unwrap();
    assert_eq!(store.load(&c).await.unwrap(), status(3));
    assert!(temp_files_under(fs.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_to_fifty_ids_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsCheckpointStore::open(tmp.path().to_path_buf()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let c = id(&format!("c-{i:02}"));
            // Three writes each; the last must win.
            for round in 0..3 {
                store.write(&c, &status(i * 10 + round)).await?;
            }
            Ok::<_, berth_backend::StoreError>(())
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("write");
    }
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 50);
    for i in 0..50u32 {
        let c = id(&format!("c-{i:02}"));
        assert_eq!(listed[i as usize], c.as_str());
        assert_eq!(store.load(&c).await.unwrap(), status(i * 10 + 2));
        assert_eq!(entries(&store.container_dir(&c)), vec![STATUS_FILE]);
    }

    // Concurrent writes to one id: every one succeeds, the survivor is one of them, and no
    // temp file of a racing write is taken for stale.
    let c = id("hot");
    let writes: Vec<_> = (0..20u32)
        .map(|n| {
            let store = store.clone();
            let c = c.clone();
            tokio::spawn(async move { store.write(&c, &status(1000 + n)).await })
        })
        .collect();
    for w in writes {
        w.await.expect("task").expect("write");
    }
    let got = store.load(&c).await.unwrap();
    assert!((1000..1020).contains(&got.pid), "{got:?}");
    assert_eq!(entries(&store.container_dir(&c)), vec![STATUS_FILE]);
}
