//! download + preprocess through the real binary: synthetic data always,
//! the real Fashion-MNIST files where Debian's package installed them.

use learn::data::dataset::Dataset;
use learn::data::idx;
use stages::download::sha256_hex;
use std::fs;
use std::path::Path;

use crate::common::{real_data, Project};

/// Writes the four files for `per_class` training and `test_per_class` test
/// images per class (8x8 pixels) and returns their SHA-256 by name.
fn synthetic(dir: &Path, per_class: usize, test_per_class: usize) -> Vec<(String, String)> {
    fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    for (prefix, per) in [("train", per_class), ("t10k", test_per_class)] {
        let n = per * 10;
        let labels: Vec<u8> = (0..n).map(|i| ((i * 3) % 10) as u8).collect();
        let pixels: Vec<u8> = (0..n * 64).map(|i| (i % 251) as u8).collect();
        let img = idx::gzip(&idx::encode(&[n as u32, 8, 8], &pixels));
        let lab = idx::gzip(&idx::encode(&[n as u32], &labels));
        for (name, bytes) in [
            (format!("{prefix}-images-idx3-ubyte.gz"), img),
            (format!("{prefix}-labels-idx1-ubyte.gz"), lab),
        ] {
            fs::write(dir.join(&name), &bytes).unwrap();
            files.push((name, sha256_hex(&bytes)));
        }
    }
    files
}

fn pipeline(source: &str, files: &[(String, String)], extra: &str) -> String {
    let files: String = files
        .iter()
        .map(|(n, h)| format!("        {n}: {h}\n"))
        .collect();
    format!(
        "stages:\n  download:\n    kind: download\n    params:\n      sources: [\"{source}\"]\n      files:\n{files}  preprocess:\n    kind: preprocess\n    needs: [download]\n    params:\n      validation: 20\n{extra}"
    )
}

#[test]
fn synthetic_download_and_preprocess() {
    let t = Project::new();
    let files = synthetic(&t.dir().join("src-a"), 12, 3);
    fs::write(
        t.dir().join("pipeline.yaml"),
        pipeline("src-a", &files, "      limit: {train: 50}\n"),
    )
    .unwrap();
    let o = t.run(&["run"]);
    assert!(o.status.success(), "{}", o.text());
    let d = Dataset::read(&t.dir().join("outputs/preprocess/dataset.fmnd")).unwrap();
    assert_eq!((d.rows, d.cols), (8, 8));
    let count = |s: &str| d.split(s).unwrap().len();
    assert_eq!(
        (count("train"), count("validation"), count("test")),
        (50, 20, 30)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(t.dir().join("outputs/preprocess/summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        summary["splits"][1]["per_class"],
        serde_json::json!([2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    );

    // The same bytes from another source: download reruns, preprocess does not.
    synthetic(&t.dir().join("src-b"), 12, 3);
    fs::write(
        t.dir().join("pipeline.yaml"),
        pipeline("src-b", &files, "      limit: {train: 50}\n"),
    )
    .unwrap();
    let o = t.run(&["run"]);
    let out = o.text();
    assert!(
        out.contains("running  download") && !out.contains("running  preprocess"),
        "{out}"
    );

    // A changed preprocess parameter is explained and reruns preprocess only.
    fs::write(
        t.dir().join("pipeline.yaml"),
        pipeline("src-b", &files, "      limit: {train: 40}\n"),
    )
    .unwrap();
    let st = t.run(&["status"]).text();
    assert!(st.contains("param limit.train changed (50 => 40)"), "{st}");
}

#[test]
fn no_working_source_lists_every_attempt() {
    let t = Project::new();
    let files = synthetic(&t.dir().join("src"), 2, 1);
    let mut y = pipeline("missing-dir", &files, "");
    y = y.replace(
        "sources: [\"missing-dir\"]",
        "sources: [\"missing-dir\", \"http://127.0.0.1:9/\"]",
    );
    fs::write(t.dir().join("pipeline.yaml"), y).unwrap();
    let o = t.run(&["run"]);
    assert_eq!(o.status.code(), Some(1));
    let out = o.text();
    assert!(
        out.contains("could not fetch")
            && out.contains("missing-dir")
            && out.contains("127.0.0.1:9"),
        "{out}"
    );
    assert!(
        out.contains("apt-get install dataset-fashion-mnist"),
        "{out}"
    );
    assert!(out.contains("skipped  preprocess"), "{out}");
    assert!(
        !t.dir().join("outputs/download").exists(),
        "no partial output"
    );
}

#[test]
fn bad_data_files_are_named() {
    type Damage = fn(&Path);
    let cases: &[(&str, Damage)] = &[
        ("truncated", |d| {
            let p = d.join("train-images-idx3-ubyte.gz");
            let raw = idx::read_gz(&p).unwrap();
            fs::write(&p, idx::gzip(&raw[..raw.len() - 10])).unwrap();
        }),
        ("not gzip", |d| {
            fs::write(d.join("t10k-labels-idx1-ubyte.gz"), b"plain").unwrap()
        }),
        ("bad label", |d| {
            fs::write(
                d.join("train-labels-idx1-ubyte.gz"),
                idx::gzip(&idx::encode(&[120], &[11; 120])),
            )
            .unwrap();
        }),
        ("count mismatch", |d| {
            fs::write(
                d.join("t10k-labels-idx1-ubyte.gz"),
                idx::gzip(&idx::encode(&[5], &[1; 5])),
            )
            .unwrap();
        }),
    ];
    let expect = [
        "train-images-idx3-ubyte.gz: truncated",
        "t10k-labels-idx1-ubyte.gz: not a gzip file",
        "label 11 at index 0",
        "holds 30 images but",
    ];
    for ((name, damage), want) in cases.iter().zip(expect) {
        let t = Project::new();
        let src = t.dir().join("src");
        synthetic(&src, 12, 3);
        damage(&src);
        // Checksums of the damaged files, so that the damage reaches preprocess.
        let files: Vec<(String, String)> = fs::read_dir(&src)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    sha256_hex(&fs::read(e.path()).unwrap()),
                )
            })
            .collect();
        fs::write(t.dir().join("pipeline.yaml"), pipeline("src", &files, "")).unwrap();
        let o = t.run(&["run"]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", o.text());
        assert!(
            o.text().contains("FAILED   preprocess") && o.text().contains(want),
            "{name}: {}",
            o.text()
        );
        assert!(
            !t.dir().join("outputs/preprocess").exists(),
            "{name}: nothing half-written"
        );
    }
}

#[test]
fn checksum_mismatch_is_refused() {
    let t = Project::new();
    let mut files = synthetic(&t.dir().join("src"), 2, 1);
    files[0].1 = "0".repeat(64);
    fs::write(t.dir().join("pipeline.yaml"), pipeline("src", &files, "")).unwrap();
    let o = t.run(&["run"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        o.text()
            .contains("checksum mismatch: expected SHA-256 0000"),
        "{}",
        o.text()
    );
}

#[test]
fn real_fashion_mnist_where_installed() {
    let Some(debian) = real_data() else { return };
    let t = Project::new();
    fs::write(
        t.dir().join("pipeline.yaml"),
        format!("stages:\n  download:\n    kind: download\n    params: {{sources: [\"{}\"]}}\n  preprocess:\n    kind: preprocess\n    needs: [download]\n", debian.display()),
    )
    .unwrap();
    let o = t.run(&["run"]);
    assert!(o.status.success(), "{}", o.text());
    // The raw files, decoded.
    let dl = t.dir().join("outputs/download");
    let labels = idx::decode_labels(
        &dl.join("train-labels-idx1-ubyte.gz"),
        &idx::read_gz(&dl.join("train-labels-idx1-ubyte.gz")).unwrap(),
        10,
    )
    .unwrap();
    assert_eq!(labels.len(), 60_000);
    assert_eq!(labels[0], 9, "the first training image is an ankle boot");
    assert_eq!(stages::preprocess::per_class(&labels), vec![6000; 10]);
    let img = idx::decode_images(
        &dl.join("t10k-images-idx3-ubyte.gz"),
        &idx::read_gz(&dl.join("t10k-images-idx3-ubyte.gz")).unwrap(),
    )
    .unwrap();
    assert_eq!((img.count, img.rows, img.cols), (10_000, 28, 28));
    // The artifact.
    let d = Dataset::read(&t.dir().join("outputs/preprocess/dataset.fmnd")).unwrap();
    let (train, val, test) = (
        d.split("train").unwrap(),
        d.split("validation").unwrap(),
        d.split("test").unwrap(),
    );
    assert_eq!(
        (train.len(), val.len(), test.len()),
        (55_000, 5_000, 10_000)
    );
    assert_eq!(stages::preprocess::per_class(&val.labels), vec![500; 10]);
    assert_eq!(stages::preprocess::per_class(&test.labels), vec![1000; 10]);
    assert_eq!(test.labels[0], 9, "the first test image is an ankle boot");
}

#[test]
fn real_data_main_cnn_learns_in_one_short_epoch() {
    let Some(debian) = real_data() else { return };
    let t = Project::new();
    fs::write(
        t.dir().join("pipeline.yaml"),
        format!(
            "stages:\n  download:\n    kind: download\n    params: {{sources: [\"{}\"]}}\n  preprocess:\n    kind: preprocess\n    needs: [download]\n    params: {{limit: {{train: 3000, validation: 1000}}}}\n  train:\n    kind: train\n    needs: [preprocess]\n    params: {{model: main-cnn, epochs: 1}}\n",
            debian.display()
        ),
    )
    .unwrap();
    let o = t.run(&["run"]);
    assert!(o.status.success(), "{}", o.text());
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(t.dir().join("outputs/train/train.json")).unwrap())
            .unwrap();
    assert_eq!(summary["parameters"], 1_701_578);
    let acc = summary["best_val_acc"].as_f64().unwrap();
    assert!(
        acc > 0.75,
        "validation accuracy after one epoch of 3,000 images: {acc}"
    );
}
