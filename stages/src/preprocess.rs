//! The `preprocess` kind: IDX -> validated, split, compact dataset.

use crate::contract::{
    CLASSES, DATASET_FILE, DATA_SUMMARY_FILE, NPY_IMAGES_SUFFIX, NPY_LABELS_SUFFIX,
};
use crate::{Kind, Phase, RunContext, StageError};
use learn::data::dataset::{Dataset, Split};
use learn::data::idx::{self, Images};
use learn::data::npy;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The artifact's file name inside the stage's output directory.

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessParams {
    #[serde(default = "half")]
    pub mean: f32,
    #[serde(default = "half")]
    pub std: f32,
    /// Images taken from the training set for validation, stratified.
    #[serde(default = "default_validation")]
    pub validation: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Optional per-split caps, stratified (for quick experiments).
    #[serde(default)]
    pub limit: Limit,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<usize>,
}

fn half() -> f32 {
    0.5
}
fn default_validation() -> usize {
    5000
}
fn default_seed() -> u64 {
    42
}

/// The per-split facts written next to the artifact.
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    pub format_version: u32,
    pub rows: usize,
    pub cols: usize,
    pub mean: f32,
    pub std: f32,
    pub seed: u64,
    pub splits: Vec<SplitSummary>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SplitSummary {
    pub name: String,
    pub count: usize,
    pub per_class: Vec<usize>,
}

fn find_input(ctx: &RunContext<'_>, name: &str) -> Result<PathBuf, StageError> {
    let downloads: Vec<&crate::Input> = ctx
        .inputs
        .iter()
        .filter(|i| i.kind == Kind::Download)
        .collect();
    let Some(input) = downloads.first() else {
        return Err(StageError::Params(
            "preprocess needs a download stage: add `needs: [<download stage>]`".into(),
        ));
    };
    Ok(input
        .paths
        .first()
        .map(|p| p.join(name))
        .unwrap_or_default())
}

impl crate::context::Params for PreprocessParams {
    fn validate(&self) -> Result<(), String> {
        if !self.mean.is_finite() {
            return Err(format!("mean must be a number, got {}", self.mean));
        }
        if !(self.std.is_finite() && self.std > 0.0) {
            return Err(format!("std must be positive, got {}", self.std));
        }
        // Training selects the best epoch on the validation split.
        if self.validation == 0 {
            return Err("validation must be at least 1: models are selected on it".into());
        }
        for (name, v) in [
            ("train", self.limit.train),
            ("validation", self.limit.validation),
            ("test", self.limit.test),
        ] {
            if v == Some(0) {
                return Err(format!(
                    "limit.{name} must be at least 1 (leave it out for no limit)"
                ));
            }
        }
        Ok(())
    }
}

pub fn run(ctx: &RunContext<'_>) -> Result<(), StageError> {
    let params: PreprocessParams = crate::context::parse_params(ctx.params)?;
    let path = |n: &str| find_input(ctx, n);
    let progress = |phase, f: f64| {
        (ctx.progress)(crate::Progress {
            step: crate::Step::Phase { phase },
            fraction: Some(f),
        })
    };
    progress(Phase::Decoding, 0.0);
    let (train, test) = rayon::join(
        || {
            load_pair(
                &path("train-images-idx3-ubyte.gz")?,
                &path("train-labels-idx1-ubyte.gz")?,
            )
        },
        || {
            load_pair(
                &path("t10k-images-idx3-ubyte.gz")?,
                &path("t10k-labels-idx1-ubyte.gz")?,
            )
        },
    );
    let (train_images, train_labels) = train?;
    let (test_images, test_labels) = test?;
    if (train_images.rows, train_images.cols) != (test_images.rows, test_images.cols) {
        return Err(StageError::Failed(format!(
            "training images are {}x{} but test images are {}x{}",
            train_images.rows, train_images.cols, test_images.rows, test_images.cols
        )));
    }
    progress(Phase::Splitting, 0.6);
    let dataset = build(
        &params,
        &train_images,
        &train_labels,
        &test_images,
        &test_labels,
    )
    .map_err(StageError::Failed)?;
    progress(Phase::Writing, 0.8);
    let file = ctx.out_dir.join(DATASET_FILE);
    std::fs::write(&file, dataset.to_bytes()).map_err(|e| StageError::io("write", &file, e))?;
    write_npy(ctx.out_dir, &dataset)?;
    let summary = Summary {
        format_version: learn::data::dataset::VERSION,
        rows: dataset.rows,
        cols: dataset.cols,
        mean: dataset.mean,
        std: dataset.std,
        seed: params.seed,
        splits: dataset
            .splits
            .iter()
            .map(|s| SplitSummary {
                name: s.name.clone(),
                count: s.len(),
                per_class: per_class(&s.labels),
            })
            .collect(),
    };
    let file = ctx.out_dir.join(DATA_SUMMARY_FILE);
    let text =
        serde_json::to_vec_pretty(&summary).map_err(|e| StageError::Failed(e.to_string()))?;
    std::fs::write(&file, text).map_err(|e| StageError::io("write", &file, e))
}

/// Each split as NumPy arrays (`<split>-images.npy`, uint8 N×rows×cols,
/// and `<split>-labels.npy`, uint8 N), in the split's order: code outside
/// the tool trains on the same images, and row i of `test-images.npy` is
/// test image i of every evaluation.
fn write_npy(dir: &Path, dataset: &Dataset) -> Result<(), StageError> {
    for s in &dataset.splits {
        let images = dir.join(format!("{}{NPY_IMAGES_SUFFIX}", s.name));
        npy::write_u8(&images, &[s.len(), dataset.rows, dataset.cols], &s.pixels)
            .map_err(|e| StageError::io("write", &images, e))?;
        let labels = dir.join(format!("{}{NPY_LABELS_SUFFIX}", s.name));
        npy::write_u8(&labels, &[s.len()], &s.labels)
            .map_err(|e| StageError::io("write", &labels, e))?;
    }
    Ok(())
}

fn load_pair(images: &Path, labels: &Path) -> Result<(Images, Vec<u8>), StageError> {
    let fail = |e: idx::IdxError| StageError::Failed(e.to_string());
    let (img, lab) = rayon::join(|| idx::read_gz(images), || idx::read_gz(labels));
    let img = idx::decode_images(images, &img.map_err(fail)?).map_err(fail)?;
    let lab = idx::decode_labels(labels, &lab.map_err(fail)?, CLASSES as u8).map_err(fail)?;
    if img.count != lab.len() {
        return Err(StageError::Failed(format!(
            "{} holds {} images but {} holds {} labels",
            images.display(),
            img.count,
            labels.display(),
            lab.len()
        )));
    }
    Ok((img, lab))
}

pub fn per_class(labels: &[u8]) -> Vec<usize> {
    let mut c = vec![0; CLASSES];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

/// Splits `total` as evenly as possible over the classes: the first
/// `total % CLASSES` classes get one more.
fn quota(total: usize, class: usize) -> usize {
    total / CLASSES + usize::from(class < total % CLASSES)
}

/// Validation split (stratified, seeded) off the training set, optional
/// stratified limits, the test set untouched unless limited.
pub fn build(
    p: &PreprocessParams,
    train: &Images,
    train_labels: &[u8],
    test: &Images,
    test_labels: &[u8],
) -> Result<Dataset, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut pools: Vec<Vec<u32>> = vec![Vec::new(); CLASSES];
    for (i, &l) in train_labels.iter().enumerate() {
        pools[l as usize].push(i as u32);
    }
    let mut val = Vec::new();
    let mut rest: Vec<Vec<u32>> = Vec::with_capacity(CLASSES);
    for (c, pool) in pools.iter_mut().enumerate() {
        pool.shuffle(&mut rng);
        let q = quota(p.validation, c);
        if q > pool.len() {
            return Err(format!(
                "a validation split of {} needs {q} images of class {c}, the training set has {}",
                p.validation,
                pool.len()
            ));
        }
        val.extend_from_slice(&pool[..q]);
        rest.push(pool[q..].to_vec());
    }
    let val = match p.limit.validation {
        Some(l) if l < val.len() => take_stratified(&group(&val, train_labels), l),
        _ => val,
    };
    let train_idx = match p.limit.train {
        Some(l) => take_stratified(&rest, l),
        None => rest.concat(),
    };
    let test_idx: Vec<u32> = match p.limit.test {
        Some(l) if l < test_labels.len() => {
            let mut pools: Vec<Vec<u32>> = vec![Vec::new(); CLASSES];
            for (i, &lab) in test_labels.iter().enumerate() {
                pools[lab as usize].push(i as u32);
            }
            for pool in pools.iter_mut() {
                pool.shuffle(&mut rng);
            }
            take_stratified(&pools, l)
        }
        _ => (0..test_labels.len() as u32).collect(),
    };
    let split = |name: &str, mut idx: Vec<u32>, images: &Images, labels: &[u8]| {
        idx.sort_unstable();
        let n = images.rows * images.cols;
        let mut pixels = Vec::with_capacity(idx.len() * n);
        for &i in &idx {
            pixels.extend_from_slice(&images.pixels[i as usize * n..(i as usize + 1) * n]);
        }
        Split {
            name: name.into(),
            labels: idx.iter().map(|&i| labels[i as usize]).collect(),
            indices: idx,
            pixels,
        }
    };
    Ok(Dataset {
        rows: train.rows,
        cols: train.cols,
        mean: p.mean,
        std: p.std,
        splits: vec![
            split("train", train_idx, train, train_labels),
            split("validation", val, train, train_labels),
            split("test", test_idx, test, test_labels),
        ],
    })
}

fn group(idx: &[u32], labels: &[u8]) -> Vec<Vec<u32>> {
    let mut g: Vec<Vec<u32>> = vec![Vec::new(); CLASSES];
    for &i in idx {
        g[labels[i as usize] as usize].push(i);
    }
    g
}

/// Up to `total` items, as evenly over the classes as the pools allow.
fn take_stratified(pools: &[Vec<u32>], total: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(total);
    for (c, pool) in pools.iter().enumerate() {
        out.extend(pool.iter().take(quota(total, c)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 classes x `per` images; each image's pixels all equal its index % 256.
    fn synthetic(per: usize) -> (Images, Vec<u8>) {
        let n = per * CLASSES;
        let labels: Vec<u8> = (0..n).map(|i| (i % CLASSES) as u8).collect();
        let pixels = (0..n)
            .flat_map(|i| std::iter::repeat_n((i % 256) as u8, 4))
            .collect();
        (
            Images {
                count: n,
                rows: 2,
                cols: 2,
                pixels,
            },
            labels,
        )
    }

    fn params() -> PreprocessParams {
        serde_json::from_value(serde_json::json!({"validation": 50})).unwrap()
    }

    #[test]
    fn stratified_disjoint_seeded_split() {
        let (tr, tl) = synthetic(30);
        let (te, tel) = synthetic(7);
        let d = build(&params(), &tr, &tl, &te, &tel).unwrap();
        let (train, val, test) = (
            d.split("train").unwrap(),
            d.split("validation").unwrap(),
            d.split("test").unwrap(),
        );
        assert_eq!(per_class(&val.labels), vec![5; 10]);
        assert_eq!(per_class(&train.labels), vec![25; 10]);
        assert_eq!(test.len(), 70);
        let mut all: Vec<u32> = train.indices.iter().chain(&val.indices).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            300,
            "train and validation are disjoint and cover the training set"
        );
        // Pixels follow their index.
        let k = 3;
        assert_eq!(val.pixels[k * 4], (val.indices[k] % 256) as u8);
        assert_eq!(val.labels[k] as u32, val.indices[k] % 10);
        // Same seed, same split; another seed, another split.
        assert_eq!(build(&params(), &tr, &tl, &te, &tel).unwrap(), d);
        let mut other = params();
        other.seed = 7;
        assert_ne!(
            build(&other, &tr, &tl, &te, &tel)
                .unwrap()
                .split("validation")
                .unwrap()
                .indices,
            val.indices
        );
    }

    #[test]
    fn limits_are_stratified() {
        let (tr, tl) = synthetic(30);
        let (te, tel) = synthetic(7);
        let mut p = params();
        p.limit = Limit {
            train: Some(40),
            validation: Some(20),
            test: Some(35),
        };
        let d = build(&p, &tr, &tl, &te, &tel).unwrap();
        assert_eq!(per_class(&d.split("train").unwrap().labels), vec![4; 10]);
        assert_eq!(
            per_class(&d.split("validation").unwrap().labels),
            vec![2; 10]
        );
        assert_eq!(
            per_class(&d.split("test").unwrap().labels),
            vec![4, 4, 4, 4, 4, 3, 3, 3, 3, 3]
        );
    }

    #[test]
    fn too_large_a_validation_split_is_an_error() {
        let (tr, tl) = synthetic(3);
        let mut p = params();
        p.validation = 40;
        assert!(build(&p, &tr, &tl, &tr, &tl)
            .unwrap_err()
            .contains("needs 4 images of class 0"));
    }
}
