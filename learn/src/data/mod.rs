//! Data: the IDX file format, the preprocessed dataset artifact,
//! augmentation and batching.

pub mod augment;
pub mod batch;
pub mod dataset;
pub mod idx;
pub mod npy;
