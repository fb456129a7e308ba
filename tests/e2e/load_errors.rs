//! Invalid pipelines: exit 2, the whole message (file, line and column,
//! the line itself, the fix), the same from `status` and `run`, and
//! nothing written.

use crate::common::*;
use std::fs;

/// `pipeline` (bytes) is refused by `status` and `run` alike with exactly
/// `stderr`, and no cache is created.
fn refused(pipeline: &[u8], stderr: &str) {
    let p = Project::new();
    p.file("pipeline.yaml", pipeline);
    for cmd in ["status", "run"] {
        p.run(&[cmd]).exits(2).stdout_is("").stderr_is(stderr);
    }
    assert!(!p.path("cache").exists(), "nothing written");
}

macro_rules! refused {
    ($($name:ident: $pipeline:expr => $stderr:expr;)*) => {
        $(
            #[test]
            fn $name() {
                refused($pipeline, $stderr);
            }
        )*
    };
}

refused! {
    syntax_error: b"stages:\n  a: [1, 2\n"
        => "error: pipeline.yaml:2:6: stages.a: invalid type: sequence, expected struct RawStage\n 2 |   a: [1, 2\n   |      ^\n";
    unknown_field: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    dpes: [x]\n"
        => "error: pipeline.yaml:5:5: stages.a: unknown field `dpes`, expected one of `kind`, `desc`, `cmd`, `deps`, `outs`, `predictions`, `needs`, `params`, `variants`, `foreach`, `seeds`, `matrix`, `search`, `threads`, `resources`, `device`, `slurm`\n 5 |     dpes: [x]\n   |     ^\n";
    unknown_kind: b"stages:\n  a:\n    kind: shel\n"
        => "error: pipeline.yaml:3:11: stages.a.kind: unknown variant `shel`, expected one of `cmd`, `download`, `preprocess`, `train`, `evaluate`, `compare`, `search`, `confirm`\n 3 |     kind: shel\n   |           ^\n  help: `kind` must be one of the kinds listed above\n";
    missing_cmd: b"stages:\n  a:\n    kind: cmd\n"
        => "error: pipeline.yaml:2:3: stage `a` is of kind cmd but has no `cmd`\n 2 |   a:\n   |   ^\n  help: add `cmd: \"<shell command>\"` to the stage\n";
    unknown_need: b"stages:\n  prep:\n    kind: cmd\n    cmd: x\n  b:\n    kind: cmd\n    cmd: y\n    needs: [prepp]\n"
        => "error: pipeline.yaml:8:5: stage `b` needs `prepp`, but there is no such stage\n 8 |     needs: [prepp]\n   |     ^\n  help: did you mean `prep`?\n";
    cycle: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    needs: [b]\n  b:\n    kind: cmd\n    cmd: y\n    needs: [a]\n"
        => "error: pipeline.yaml:2:3: the stages form a cycle: a -> b -> a\n 2 |   a:\n   |   ^\n  help: a stage cannot need, directly or through others, a stage that needs it; remove one of these dependencies (`needs`, `foreach`, or a dep on another stage's output)\n";
    duplicate_stage: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n  a:\n    kind: cmd\n    cmd: y\n"
        => "error: pipeline.yaml:5:3: stages: duplicate name `a` (lines 2 and 5): each name may appear once\n 5 |   a:\n   |   ^\n";
    duplicate_param: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    params:\n      lr: 0.1\n      epochs: 3\n      lr: 0.2\n"
        => "error: pipeline.yaml:8:7: stages.a.params: duplicate key `lr` (lines 6 and 8): each key may appear once\n 8 |       lr: 0.2\n   |       ^\n";
    duplicate_param_in_a_flow_mapping: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    params: {lr: 0.1, lr: 0.2}\n"
        => "error: pipeline.yaml:5:13: stages.a.params: duplicate key `lr` (twice on line 5): each key may appear once\n 5 |     params: {lr: 0.1, lr: 0.2}\n   |             ^\n";
    duplicate_variant_override: b"stages:\n  t:\n    kind: cmd\n    cmd: x\n    params: {lr: 1}\n    variants:\n      fast:\n        lr: 2\n        lr: 3\n"
        => "error: pipeline.yaml:9:9: stages.t.variants.fast: duplicate key `lr` (lines 8 and 9): each key may appear once\n 9 |         lr: 3\n   |         ^\n";
    merge_into_a_stage: b"anchors:\n  c: &c {kind: cmd}\nstages:\n  a:\n    <<: *c\n    cmd: x\n"
        => "error: pipeline.yaml:5:5: stages.a: unknown field `<<`, expected one of `kind`, `desc`, `cmd`, `deps`, `outs`, `predictions`, `needs`, `params`, `variants`, `foreach`, `seeds`, `matrix`, `search`, `threads`, `resources`, `device`, `slurm`\n 5 |     <<: *c\n   |     ^\n  help: `<<` merges work inside `params` and variant overrides; write this mapping's fields out\n";
    merge_of_a_scalar: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    params:\n      <<: 3\n"
        => "error: pipeline.yaml:6:7: stages.a.params: `<<` merges a mapping (`<<: *name`) or a list of them (`<<: [*a, *b]`)\n 6 |       <<: 3\n   |       ^\n";
    unknown_variant_param: b"stages:\n  t:\n    kind: cmd\n    cmd: x\n    params: {lr: 1}\n    variants:\n      fast: {lrr: 2}\n"
        => "error: pipeline.yaml:7:7: variant `fast` of stage `t` overrides `lrr`, which is not a parameter of the stage\n 7 |       fast: {lrr: 2}\n   |       ^\n  help: did you mean `lr`?\n";
    foreach_without_variants: b"stages:\n  t:\n    kind: cmd\n    cmd: x\n  e:\n    kind: cmd\n    cmd: y\n    foreach: t\n"
        => "error: pipeline.yaml:8:5: stage `e` has `foreach: t`, but `t` has no variants\n 8 |     foreach: t\n   |     ^\n  help: declare `variants` on `t`, or write `needs: [t]` instead\n";
    empty: b""
        => "error: pipeline.yaml: the pipeline file is empty\n  help: declare stages under a top-level `stages:` mapping (see README.md)\n";
    not_utf8: b"stages:\n  a:\n    kind: cmd\n    cmd: \"\xff\"\n"
        => "error: pipeline.yaml:4:11: the file is not valid UTF-8\n  help: save pipeline.yaml as UTF-8 text\n";
    output_outside: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    outs: [../escape.txt]\n"
        => "error: pipeline.yaml:5:5: stage `a`: output `../escape.txt` is outside the project directory\n 5 |     outs: [../escape.txt]\n   |     ^\n  help: outputs must be inside the project directory\n";
    nan_param: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    params:\n      lr: .nan\n"
        => "error: pipeline.yaml:6:11: stages.a.params.lr: `NaN` is not a finite number; parameters must be finite (write it as a string if it is not a number)\n 6 |       lr: .nan\n   |           ^\n";
    max_batches_zero: b"stages:\n  t:\n    kind: train\n    params:\n      max_batches: 0\n"
        => "error: pipeline.yaml:4:5: stage `t`: invalid params: max_batches must be at least 1 (or null: every batch of each epoch)\n 4 |     params:\n   |     ^\n";
    bad_time: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    resources: {time: 3x}\n"
        => "error: pipeline.yaml:5:16: stages.a.resources: time: `3x` is not a duration; write e.g. `30m`, `1h30m`, `2d`, `90s`, or as Slurm does `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`\n 5 |     resources: {time: 3x}\n   |                ^\n";
    zero_cpus: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    resources: {cpus: 0}\n"
        => "error: pipeline.yaml:5:5: stage `a`: resources.cpus must be at least 1\n 5 |     resources: {cpus: 0}\n   |     ^\n";
    threads_and_cpus: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    threads: 2\n    resources: {cpus: 2}\n"
        => "error: pipeline.yaml:5:5: stage `a` gives both `threads` and `resources.cpus`\n 5 |     threads: 2\n   |     ^\n  help: keep `resources: {cpus: N}` (`threads: N` is its older spelling)\n";
    unknown_resource: b"stages:\n  a:\n    kind: cmd\n    cmd: x\n    resources: {gpu: 1}\n"
        => "error: pipeline.yaml:5:17: stages.a.resources: unknown field `gpu`, expected one of `cpus`, `gpus`, `mem_mb`, `time`\n 5 |     resources: {gpu: 1}\n   |                 ^\n";
    unknown_executor: b"settings:\n  executor: slurmm\nstages:\n  a:\n    kind: cmd\n    cmd: x\n"
        => "error: pipeline.yaml:2:3: settings.executor: unknown executor `slurmm`\n 2 |   executor: slurmm\n   |   ^\n  help: use `local` or `slurm`\n";
    slurm_extra_not_a_flag: b"settings:\n  slurm: {extra: [qos=normal]}\nstages:\n  a:\n    kind: cmd\n    cmd: x\n"
        => "error: pipeline.yaml:2:3: settings.slurm.extra: `qos=normal` is not an sbatch flag\n 2 |   slurm: {extra: [qos=normal]}\n   |   ^\n  help: write each flag whole, with its value: `--qos=normal`\n";
}

/// A build without CUDA refuses it when the pipeline loads: nothing runs
/// first. (A CUDA build accepts it, and checks for the GPU when a run
/// starts; ci/cuda-build.sh tests that.)
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_says_how_to_build_it() {
    refused(
        b"stages:\n  t:\n    kind: train\n    params: {epochs: 1}\n    device: \"cuda:1\"\n",
        "error: pipeline.yaml:5:5: stage `t`: device `cuda:1`: this build has no CUDA support\n 5 |     device: \"cuda:1\"\n   |     ^\n  help: rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit and the NVIDIA driver), or use `cpu`\n",
    );
}

#[test]
fn a_missing_pipeline_file() {
    Project::new()
        .run(&["status", "--file", "nope.yaml"])
        .exits(2)
        .stderr_is("error: nope.yaml: pipeline file not found\n  help: run fmnist-pipe in the project directory, or pass --file PATH\n");
}

#[test]
fn an_unknown_command() {
    Project::new()
        .run(&["frobnicate"])
        .exits(2)
        .has("unrecognized subcommand 'frobnicate'");
}

#[test]
fn a_directory_as_the_pipeline_file_is_a_usage_error() {
    let p = example();
    fs::create_dir_all(p.path("sub")).unwrap();
    p.run(&["status", "--file", "sub"])
        .exits(2)
        .stderr_is("error: sub: is a directory, not a pipeline file\n  help: pass the file itself, e.g. --file sub/pipeline.yaml\n");
}

refused! {
    seeds_without_variants: b"stages:\n  t:\n    kind: train\n    seeds: [1, 2]\n"
        => "error: pipeline.yaml:4:5: stage `t` has `seeds` but no variants to replicate\n 4 |     seeds: [1, 2]\n   |     ^\n  help: declare the variants, even a single one: `variants: {main: {}}`\n";
    seed_in_params_beside_seeds: b"stages:\n  t:\n    kind: train\n    seeds: [1, 2]\n    params:\n      seed: 3\n    variants:\n      main: {}\n"
        => "error: pipeline.yaml:6:7: stage `t` sets `seed` in params and `seeds` too\n 6 |       seed: 3\n   |       ^\n  help: remove `seed` from params: `seeds` sets each replicate's seed\n";
    seed_in_a_variant_beside_seeds: b"stages:\n  t:\n    kind: train\n    seeds: [1]\n    variants:\n      fast:\n        seed: 4\n"
        => "error: pipeline.yaml:6:7: stage `t`: variant `fast` sets `seed`, but the stage's `seeds` sets each replicate's seed\n 6 |       fast:\n   |       ^\n  help: remove `seed` from the variant (or the matrix)\n";
    a_seed_listed_twice: b"stages:\n  t:\n    kind: train\n    seeds: [1, 2, 1]\n    variants:\n      main: {}\n"
        => "error: pipeline.yaml:4:5: stage `t`: `seeds` lists 1 twice\n 4 |     seeds: [1, 2, 1]\n   |     ^\n";
    seeds_on_a_kind_without_a_seed: b"stages:\n  t:\n    kind: download\n    seeds: [1]\n    variants:\n      a: {}\n"
        => "error: pipeline.yaml:4:5: stage `t` has `seeds`, but kind download has no `seed` parameter\n 4 |     seeds: [1]\n   |     ^\n  help: `seeds` replicates kinds that take a seed: train, preprocess and cmd\n";
    matrix_of_an_unknown_parameter: b"stages:\n  t:\n    kind: train\n    matrix:\n      lrr: [0.1, 0.01]\n"
        => "error: pipeline.yaml:5:7: the matrix of stage `t` varies `lrr`, which is not a parameter of the stage\n 5 |       lrr: [0.1, 0.01]\n   |       ^\n  help: did you mean `lr`?\n";
    matrix_values_that_cannot_name_a_variant: b"stages:\n  t:\n    kind: train\n    matrix:\n      augment: [[], [{hflip: 0.5}]]\n"
        => "error: pipeline.yaml:5:7: stage `t`: matrix value [] of `augment` cannot name a variant\n 5 |       augment: [[], [{hflip: 0.5}]]\n   |       ^\n  help: give `augment` as a mapping from names to values, e.g. `augment: {none: [], flip: [{hflip: 0.5}]}`\n";
    matrix_and_variant_setting_the_same_key: b"stages:\n  t:\n    kind: train\n    matrix:\n      lr: [0.1, 0.01]\n    variants:\n      fast:\n        lr: 0.1\n"
        => "error: pipeline.yaml:7:7: stage `t`: variant `fast` sets `lr`, which the matrix also varies\n 7 |       fast:\n   |       ^\n  help: remove `lr` from the variant or from the matrix\n";
    matrix_axis_that_is_not_a_list: b"stages:\n  t:\n    kind: train\n    matrix: {lr: 0.1}\n"
        => "error: pipeline.yaml:4:18: stages.t.matrix.lr: invalid type: floating point `0.1`, expected a list of values (`lr: [0.01, 0.001]`) or a mapping of names to values\n 4 |     matrix: {lr: 0.1}\n   |                  ^\n";
    evaluate_without_a_model: b"stages:\n  e:\n    kind: evaluate\n"
        => "error: pipeline.yaml:2:3: stage `e`: evaluate needs the stage whose model it evaluates: a train stage, or a cmd stage that declares `predictions:`; add it to `needs`, or use `foreach: <that stage>`\n 2 |   e:\n   |   ^\n";
}

/// `device` on a kind that runs on none, and a declared `kind: search`
/// (which `search:` makes), are refused at their line with the fix.
#[test]
fn a_device_where_none_is_used_and_a_declared_search_are_refused() {
    let p = Project::with("stages:\n  a:\n    kind: cmd\n    cmd: x\n    device: cuda\n");
    p.run(&["status"])
        .exits(2)
        .has("pipeline.yaml:5:5: stage `a` is of kind cmd, which runs on no device")
        .has("help: `device` is for train and evaluate stages");
    let p = Project::with("stages:\n  s:\n    kind: search\n");
    p.run(&["status"])
        .exits(2)
        .has("pipeline.yaml:3:5: stage `s`: kind search is made by `search:` on a train stage, not declared");
}
