//! A training's state after a completed epoch, saved so that an
//! interrupted run resumes after it and ends bit-identical to an
//! uninterrupted one: weights, batch-norm buffers, the optimizer's state
//! (Adam's moments, or SGD's momentum buffers) and step, the averaged
//! weights (`ema`),
//! the learning rate, the best epoch's snapshot, the plateau and
//! early-stopping counters, the history, and how many values dropout has
//! drawn from the device's generator (replayed on resume).
//!
//! Layout: magic | header length (u64) | header (JSON) | f32 vectors,
//! little-endian, in the header's order | blake3 of everything before.

use super::EpochRecord;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"FMNPRS1\0";
pub const STATE_FILE: &str = "state.fmnr";

/// Why a saved state cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("not a saved training state")]
    NotAState,
    #[error("checksum mismatch")]
    Checksum,
    #[error("truncated")]
    Truncated,
    #[error("truncated header")]
    TruncatedHeader,
    #[error("trailing data")]
    Trailing,
    #[error("{0}")]
    Header(serde_json::Error),
    /// Reading the state failed (other than its not being there).
    #[error("{0}")]
    Read(std::io::Error),
    #[error("{}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Parameters and batch-norm buffers, layer by layer.
pub type Snapshot = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Everything the training loop carries from one epoch to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub epochs_done: usize,
    pub master: Vec<Vec<f32>>,
    pub buffers: Vec<Vec<f32>>,
    pub adam_step: i32,
    pub adam_m: Vec<Vec<f32>>,
    pub adam_v: Vec<Vec<f32>>,
    pub lr: f32,
    /// The best epoch's parameters and buffers.
    pub best: Option<Snapshot>,
    pub best_acc: f64,
    pub best_epoch: usize,
    pub plateau_best: f64,
    pub bad_epochs: usize,
    pub since_best: usize,
    pub history: Vec<EpochRecord>,
    /// Values drawn from the device's generator (one per dropout call).
    pub draws: u64,
    /// The averaged weights and buffers (`ema`).
    pub ema: Option<Snapshot>,
}

/// Scalars exactly (floats as bits: infinities included).
#[derive(Serialize, Deserialize)]
struct Header {
    epochs_done: usize,
    adam_step: i32,
    lr_bits: u32,
    best_acc_bits: u64,
    best_epoch: usize,
    plateau_best_bits: u64,
    bad_epochs: usize,
    since_best: usize,
    draws: u64,
    history: Vec<EpochRecord>,
    /// Lengths of the vectors that follow, group by group.
    master: Vec<usize>,
    buffers: Vec<usize>,
    has_best: bool,
    /// Lengths of the optimizer's second state group (SGD has none);
    /// absent in states saved before other optimizers: the weights'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    second: Option<Vec<usize>>,
    #[serde(default)]
    has_ema: bool,
}

impl Saved {
    pub fn to_bytes(&self) -> Result<Vec<u8>, StateError> {
        let lens = |v: &[Vec<f32>]| v.iter().map(Vec::len).collect::<Vec<_>>();
        let header = Header {
            epochs_done: self.epochs_done,
            adam_step: self.adam_step,
            lr_bits: self.lr.to_bits(),
            best_acc_bits: self.best_acc.to_bits(),
            best_epoch: self.best_epoch,
            plateau_best_bits: self.plateau_best.to_bits(),
            bad_epochs: self.bad_epochs,
            since_best: self.since_best,
            draws: self.draws,
            history: self.history.clone(),
            master: lens(&self.master),
            buffers: lens(&self.buffers),
            has_best: self.best.is_some(),
            second: Some(lens(&self.adam_v)),
            has_ema: self.ema.is_some(),
        };
        let h = serde_json::to_vec(&header).map_err(StateError::Header)?;
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&(h.len() as u64).to_le_bytes());
        b.extend_from_slice(&h);
        let mut groups: Vec<&[Vec<f32>]> =
            vec![&self.master, &self.buffers, &self.adam_m, &self.adam_v];
        if let Some((p, bufs)) = &self.best {
            groups.push(p);
            groups.push(bufs);
        }
        if let Some((p, bufs)) = &self.ema {
            groups.push(p);
            groups.push(bufs);
        }
        for v in groups.into_iter().flatten() {
            for x in v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        }
        let sum = blake3::hash(&b);
        b.extend_from_slice(sum.as_bytes());
        Ok(b)
    }

    /// Whether `b` is a whole saved state: its magic and its checksum.
    pub fn check(b: &[u8]) -> Result<(), StateError> {
        if b.len() < 16 + 32 || &b[..8] != MAGIC {
            return Err(StateError::NotAState);
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(StateError::Checksum);
        }
        Ok(())
    }

    pub fn from_bytes(b: &[u8]) -> Result<Saved, StateError> {
        Saved::check(b)?;
        let body = &b[..b.len() - 32];
        let n =
            u64::from_le_bytes(body[8..16].try_into().map_err(|_| StateError::Truncated)?) as usize;
        let h: Header =
            serde_json::from_slice(body.get(16..16 + n).ok_or(StateError::TruncatedHeader)?)
                .map_err(StateError::Header)?;
        let mut floats = body[16 + n..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        let mut group = |lens: &[usize]| -> Result<Vec<Vec<f32>>, StateError> {
            lens.iter()
                .map(|&l| {
                    let v: Vec<f32> = floats.by_ref().take(l).collect();
                    (v.len() == l).then_some(v).ok_or(StateError::Truncated)
                })
                .collect()
        };
        let master = group(&h.master)?;
        let buffers = group(&h.buffers)?;
        let adam_m = group(&h.master)?;
        let adam_v = group(h.second.as_ref().unwrap_or(&h.master))?;
        let best = if h.has_best {
            Some((group(&h.master)?, group(&h.buffers)?))
        } else {
            None
        };
        let ema = if h.has_ema {
            Some((group(&h.master)?, group(&h.buffers)?))
        } else {
            None
        };
        if floats.next().is_some() {
            return Err(StateError::Trailing);
        }
        Ok(Saved {
            epochs_done: h.epochs_done,
            master,
            buffers,
            adam_step: h.adam_step,
            adam_m,
            adam_v,
            lr: f32::from_bits(h.lr_bits),
            best,
            best_acc: f64::from_bits(h.best_acc_bits),
            best_epoch: h.best_epoch,
            plateau_best: f64::from_bits(h.plateau_best_bits),
            bad_epochs: h.bad_epochs,
            since_best: h.since_best,
            history: h.history,
            draws: h.draws,
            ema,
        })
    }

    /// Writes the state whole or not at all.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let bytes = self.to_bytes()?;
        std::fs::create_dir_all(dir).map_err(|source| StateError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, dir.join(STATE_FILE)))
            .map_err(|source| StateError::Write { path: tmp, source })
    }

    /// The saved state in `dir`, if there is one; a damaged one is an error.
    pub fn load(dir: &Path) -> Result<Option<Saved>, StateError> {
        match std::fs::read(dir.join(STATE_FILE)) {
            Ok(b) => Saved::from_bytes(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::Read(e)),
        }
    }
}

/// A small file beside the state, so `status` can say where a run would
/// resume without reading the state itself.
pub const PROGRESS_FILE: &str = "progress.json";

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedProgress {
    pub epoch: usize,
    pub epochs: usize,
}

pub fn write_progress(dir: &Path, epoch: usize, epochs: usize) -> Result<(), StateError> {
    let bytes = serde_json::to_vec(&SavedProgress { epoch, epochs }).map_err(StateError::Header)?;
    let tmp = dir.join(format!("{PROGRESS_FILE}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, dir.join(PROGRESS_FILE)))
        .map_err(|source| StateError::Write { path: tmp, source })
}

/// Where a run with a saved state in `dir` resumes: (epochs done,
/// epochs). None when there is no state, or a damaged one (a truncated
/// file after a crash): that run starts over, and must not be announced
/// as resuming.
pub fn saved_progress(dir: &Path) -> Option<(usize, usize)> {
    let b = std::fs::read(dir.join(PROGRESS_FILE)).ok()?;
    let p: SavedProgress = serde_json::from_slice(&b).ok()?;
    let state = std::fs::read(dir.join(STATE_FILE)).ok()?;
    Saved::check(&state).ok().map(|()| (p.epoch, p.epochs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact_and_damage_is_caught() {
        let s = Saved {
            epochs_done: 3,
            master: vec![vec![1.0, -2.5], vec![0.1]],
            buffers: vec![vec![3.0]],
            adam_step: 40,
            adam_m: vec![vec![0.5, 0.25], vec![1e-9]],
            adam_v: vec![vec![0.1, 0.2], vec![0.3]],
            lr: 0.000_5,
            best: Some((vec![vec![9.0, 8.0], vec![7.0]], vec![vec![6.0]])),
            best_acc: 0.875,
            best_epoch: 2,
            plateau_best: f64::NEG_INFINITY,
            bad_epochs: 1,
            since_best: 1,
            history: vec![],
            draws: 123,
            ema: None,
        };
        let b = s.to_bytes().unwrap();
        assert_eq!(Saved::from_bytes(&b).unwrap(), s);
        // SGD's state (no second group) and averaged weights.
        let sgd = Saved {
            adam_v: vec![vec![], vec![]],
            ema: Some((vec![vec![1.5, 2.5], vec![3.5]], vec![vec![4.5]])),
            ..s.clone()
        };
        assert_eq!(Saved::from_bytes(&sgd.to_bytes().unwrap()).unwrap(), sgd);
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert!(Saved::from_bytes(&bad).is_err());
        assert!(Saved::from_bytes(&b[..b.len() - 4]).is_err());
    }
}
