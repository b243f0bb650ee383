//! Issue #20, item 3: a full disk. `$SINTRA_HOME` and the output directory on a 24 MiB tmpfs
//! (mounted by the test: needs root, as CI has) that a real run fills when it writes its first
//! candidate (SmolLM2 in Q4_0 is about 75 MiB). The run must stop with an error naming the file
//! and saying how to go on, leave no temporary file and no half-written model, keep the
//! database intact and record no experiment for the write that failed; once the tmpfs is
//! grown, `--resume` finishes the run with every iteration measured once.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every file under `dir`.

#[test]
fn a_full_disk_stops_the_run_cleanly_and_resume_finishes_it() {
    let _loading = sintra_tests::loading_lock();
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), "24m");
    let home = disk.0.join("home");
    let sintra = crate::planner::release_sintra(&home, &disk.0);
    let args = [
        "--auto-detect",
        "--max-iters",
        "2",
        "--no-sensitivity",
        "--target-accuracy",
        "0.5",
        "--output-dir",
        "out",
    ];
    let out = sintra(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the run fit on 24 MiB: {stdout}");
    assert!(
        stderr.contains("No space left on device")
            && stderr.contains(".candidate-1.gguf")
            && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let left = sintra_tests::files_under(&disk.0);
    for f in &left {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            !name.ends_with(".tmp") && !name.ends_with(".part") && !name.ends_with(".gguf"),
            "left behind: {}",
            f.display()
        );
    }
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    crate::planner::assert_whole(&db, "after the disk filled");
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM experiments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "the failed write was recorded as an experiment");
    drop(db);

    disk.resize("512m");
    let out = sintra(&["--resume", "--max-iters", "2"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let iterations: Vec<u32> = db
        .prepare("SELECT iteration FROM experiments ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(iterations, [1, 2], "{stdout}");
    let run_dirs: Vec<_> = std::fs::read_dir(disk.0.join("out"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(run_dirs.len(), 1);
    let run_dir = run_dirs[0].path();
    assert!(run_dir.join("model.gguf").is_file() && run_dir.join("report.md").is_file());
    for f in sintra_tests::files_under(&disk.0) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp") && !name.starts_with(".candidate"),
            "{name}"
        );
    }
}
