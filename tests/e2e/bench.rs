//! `bench --epoch` runs a real training epoch on the pipeline's dataset
//! (no timing is asserted: this checks that it runs and says what it did).

use std::fs;

use crate::common::{tiny_study, write_data, Project};

#[test]
fn an_epoch_bench_trains_on_the_pipelines_dataset() {
    let t = Project::new();
    let files = write_data(&t.dir().join("data"));
    fs::write(
        t.dir().join("pipeline.yaml"),
        tiny_study(&files, "      main: {}\n      slow: {lr: 0.0003}\n", "main"),
    )
    .unwrap();
    t.run(&["bench", "--epoch", "--no-torch"])
        .exits(2)
        .has("run `fmnist-pipe run preprocess` first");
    t.run(&["run", "preprocess"]).ok();
    let out = t
        .run(&["bench", "--epoch", "--no-torch", "--repeat", "2"])
        .ok()
        .stdout();
    assert!(out.contains("run 2: fmnist-pipe "), "{out}");
    // The machine the figures come from, first.
    let cpu = out.lines().next().unwrap_or_default();
    assert!(
        cpu.starts_with("cpu: ") && cpu.contains(" cores; kernels: "),
        "{out}"
    );
    assert!(
        out.contains("one training epoch, 600 images, batch 64, 1 thread(s)"),
        "{out}"
    );
    // AVX2 and the automatic choice, alternated in each round.
    let out = t
        .run(&[
            "bench",
            "--epoch",
            "--no-torch",
            "--repeat",
            "1",
            "--kernels",
            "both",
        ])
        .ok()
        .stdout();
    assert!(out.contains("run 1: fmnist-pipe (AVX2+FMA) "), "{out}");
    let wide = learn::nn::simd::avx512_available();
    assert_eq!(
        out.matches("run 1: fmnist-pipe (").count(),
        if wide { 2 } else { 1 },
        "{out}"
    );
    if !wide {
        crate::common::skip(
            crate::common::Lacks::Avx512,
            "this CPU has no AVX-512: --kernels both measured AVX2 alone",
        );
    }
}
