//! Invalid pipelines: exit 2, the file, line and column, and nothing written.

mod common;
use common::*;
use std::fs;

/// Each invalid pipeline: exit 2 and a message naming the file and place.
#[test]
fn invalid_pipelines_are_located_and_exit_2() {
    let cases: &[(&str, &[u8], &[&str])] = &[
        ("syntax error", b"stages:\n  a: [1, 2\n", &["pipeline.yaml:"]),
        ("unknown field", b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    dpes: [x]\n", &["pipeline.yaml:5:5", "unknown field `dpes`"]),
        ("unknown kind", b"stages:\n  a:\n    kind: shel\n", &["pipeline.yaml:3:11", "unknown variant `shel`"]),
        ("missing cmd", b"stages:\n  a:\n    kind: cmd\n", &["pipeline.yaml:2:3", "has no `cmd`"]),
        ("unknown need", b"stages:\n  prep:\n    kind: cmd\n    cmd: x\n  b:\n    kind: cmd\n    cmd: y\n    needs: [prepp]\n", &["pipeline.yaml:8:5", "did you mean `prep`?"]),
        ("cycle", b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    needs: [b]\n  b:\n    kind: cmd\n    cmd: y\n    needs: [a]\n", &["pipeline.yaml:2:3", "a -> b -> a"]),
        ("duplicate", b"stages:\n  a:\n    kind: cmd\n    cmd: x\n  a:\n    kind: cmd\n    cmd: y\n", &["pipeline.yaml:", "duplicate name `a`"]),
        ("unknown variant param", b"stages:\n  t:\n    kind: cmd\n    cmd: x\n    params: {lr: 1}\n    variants:\n      fast: {lrr: 2}\n", &["pipeline.yaml:7:7", "overrides `lrr`"]),
        ("foreach without variants", b"stages:\n  t:\n    kind: cmd\n    cmd: x\n  e:\n    kind: cmd\n    cmd: y\n    foreach: t\n", &["pipeline.yaml:8:5", "has no variants"]),
        ("empty", b"", &["pipeline.yaml: the pipeline file is empty"]),
        ("not utf-8", b"stages:\n  a:\n    kind: cmd\n    cmd: \"\xff\"\n", &["pipeline.yaml:4:11", "not valid UTF-8"]),
        ("output outside", b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    outs: [../escape.txt]\n", &["pipeline.yaml:5:5", "outside the project directory"]),
    ];
    for (name, text, expected) in cases {
        let p = Project::with("");
        fs::write(p.path("pipeline.yaml"), text).unwrap();
        for args in [&["status"][..], &["run"][..]] {
            let r = p.run(args);
            assert_eq!(r.code(), 2, "{name}: {}", r.stderr());
            for e in *expected {
                assert!(
                    r.stderr().contains(e),
                    "{name}: expected {e:?} in\n{}",
                    r.stderr()
                );
            }
        }
        assert!(!p.path("cache").exists(), "{name}: nothing written");
    }
    let p = Project::with("");
    let r = p.run(&["status", "--file", "nope.yaml"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("nope.yaml: pipeline file not found"),
        "{}",
        r.stderr()
    );
    let r = p.run(&["frobnicate"]);
    assert_eq!(r.code(), 2);
}

#[test]
fn a_directory_as_the_pipeline_file_is_a_usage_error() {
    let p = example();
    fs::create_dir_all(p.path("sub")).unwrap();
    let r = p.run(&["status", "--file", "sub"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("sub: is a directory, not a pipeline file"),
        "{}",
        r.stderr()
    );
}
