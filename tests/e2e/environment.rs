//! Full disks and file systems: exit 3 with the path and the fix, and a consistent cache.

use crate::common::*;
use std::fs;
use std::path::Path;

/// Exit 3, what could not be done to which path, the cause and the fix.
fn assert_disk_full(r: &Run, action: &str, path: &str) {
    assert_eq!(r.code(), 3, "{}\n{}", r.stdout(), r.stderr());
    let err = r.stderr();
    assert!(err.contains(action) && err.contains(path), "{err}");
    assert!(
        err.contains("No space left on device") && err.contains("help: the disk is full"),
        "{err}"
    );
}

#[test]
fn full_disk_while_caching_is_reported_and_leaves_the_cache_consistent() {
    let p = Project::with("stages:\n  big:\n    kind: cmd\n    cmd: \"head -c 400000 /dev/zero > big.bin\"\n    outs: [big.bin]\n");
    let Some(mount) = Mount::tmpfs(&p.path("cache"), "256k") else {
        crate::common::skip(
            crate::common::Lacks::Root,
            "cannot mount a tmpfs here (needs root)",
        );
        return;
    };
    assert_disk_full(&p.run(&["run"]), "could not copy into the cache", "big.bin");
    assert_eq!(p.state_of("big").0, "new", "nothing recorded as fresh");
    assert_eq!(
        fs::read_dir(p.path("cache/tmp")).unwrap().count(),
        0,
        "no partial object left in staging"
    );
    // Room made: the record of the interrupted run survives, the stage reruns.
    mount.grow("4m");
    p.run(&["run"]).ok();
    assert_eq!(p.state_of("big").0, "fresh");
    drop(mount);
}

fn download_pipeline(cache: &str, size: usize) -> (String, Vec<u8>) {
    let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let yaml = format!(
        "settings: {{cache: \"{cache}\"}}\nstages:\n  dl:\n    kind: download\n    params:\n      sources: [src]\n      files: {{a.gz: {}}}\n  use:\n    kind: cmd\n    cmd: \"wc -c < outputs/dl/a.gz > out/n.txt\"\n    deps: [outputs/dl]\n    outs: [out/n.txt]\n",
        stages::download::sha256_hex(&body)
    );
    (yaml, body)
}

/// The cache on another file system, named by an absolute path, and the
/// outputs directory on a third: staging, restores and replacement all
/// cross file systems (copy, then rename on the target).
#[test]
fn cache_and_outputs_on_other_file_systems() {
    let elsewhere = tempfile::tempdir().unwrap();
    let Some(cache_mount) = Mount::tmpfs(&elsewhere.path().join("cache"), "8m") else {
        crate::common::skip(
            crate::common::Lacks::Root,
            "cannot mount a tmpfs here (needs root)",
        );
        return;
    };
    let cache = elsewhere.path().join("cache").display().to_string();
    let (yaml, body) = download_pipeline(&cache, 100_000);
    let p = Project::with(&yaml);
    p.file("src/a.gz", "");
    fs::write(p.path("src/a.gz"), &body).unwrap();
    let outputs_mount = Mount::tmpfs(&p.path("outputs"), "8m").unwrap();
    let r = p.run(&["run"]).ok();
    assert!(r.stdout().contains("2 ran"), "{}", r.stdout());
    assert_eq!(fs::read(p.path("outputs/dl/a.gz")).unwrap(), body);
    assert_eq!(p.read("out/n.txt").trim(), "100000");
    // A cache outside the project keeps the project's records in its own
    // home there; what it computed is remembered for every project.
    let homes: Vec<_> = fs::read_dir(Path::new(&cache).join("projects"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(homes.len(), 1, "{homes:?}");
    assert!(homes[0].join("stages/dl.json").is_file());
    assert_eq!(
        fs::read_dir(Path::new(&cache).join("runs"))
            .unwrap()
            .count(),
        2
    );
    assert!(
        !p.path("cache").exists(),
        "nothing in the project's default cache"
    );
    fs::remove_file(p.path("outputs/dl/a.gz")).unwrap();
    let r = p.run(&["run"]).ok();
    assert!(r.stdout().contains("restored dl"), "{}", r.stdout());
    assert_eq!(fs::read(p.path("outputs/dl/a.gz")).unwrap(), body);
    let r = p.run(&["run", "--force-all"]).ok();
    assert!(r.stdout().contains("2 ran"), "{}", r.stdout());
    assert_eq!(fs::read(p.path("outputs/dl/a.gz")).unwrap(), body);
    let leftovers: Vec<_> = fs::read_dir(p.path("outputs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["dl"], "no temporary siblings left");
    drop(outputs_mount);
    drop(cache_mount);
}

/// Out of space while a stage writes its own files, whichever stage: exit
/// 3, the path, and what to do.
#[test]
fn a_full_disk_while_a_stage_writes_exits_3_with_the_path_and_the_fix() {
    // A built-in kind (download) whose staging is on a full cache.
    let (yaml, body) = download_pipeline("cache", 400_000);
    let p = Project::with(&yaml);
    fs::create_dir_all(p.path("src")).unwrap();
    fs::write(p.path("src/a.gz"), &body).unwrap();
    let Some(mount) = Mount::tmpfs(&p.path("cache"), "256k") else {
        crate::common::skip(
            crate::common::Lacks::Root,
            "cannot mount a tmpfs here (needs root)",
        );
        return;
    };
    let r = p.run(&["run"]);
    assert_disk_full(&r, "could not write", "a.gz.partial");
    assert!(
        !r.stderr().contains("apt-get"),
        "no advice about the data source: {}",
        r.stderr()
    );
    drop(mount);

    // A cmd stage writing to a full disk.
    let p = Project::with(
        "stages:\n  big:\n    kind: cmd\n    cmd: \"head -c 400000 /dev/zero > full/big.bin\"\n    outs: [full/big.bin]\n",
    );
    let _mount = Mount::tmpfs(&p.path("full"), "256k").unwrap();
    let r = p.run(&["run"]);
    assert_eq!(r.code(), 3, "{}\n{}", r.stdout(), r.stderr());
    assert!(
        r.stderr()
            .contains("the disk holding ./full is full (stage big failed)")
            && r.stderr().contains("help: free space there"),
        "{}",
        r.stderr()
    );
}
