//! Data: the IDX file format, the preprocessed dataset artifact,
//! augmentation and batching.

pub mod augment;
pub mod batch;
pub mod dataset;
pub mod idx;

/// Fashion-MNIST's classes, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
