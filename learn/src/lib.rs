//! The neural-network library of fmnist-pipe: kernels and layers
//! ([`nn`]), models declared layer by layer, the fast CPU path and the
//! dfdx path, checkpoints; the dataset format, IDX files, batches and
//! augmentation ([`data`]); a person's pictures classified ([`predict`]);
//! models written for PyTorch and ONNX ([`export`]). It knows nothing of
//! pipelines, stages or caches.

pub mod data;
pub mod export;
pub mod nn;
pub mod predict;
pub mod train;

/// Fashion-MNIST's classes, in label order.
pub const CLASSES: usize = 10;
pub const CLASS_NAMES: [&str; CLASSES] = [
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

/// Softmax of logits rows, in place.
pub fn softmax(logits: &mut [f32], classes: usize) {
    for row in logits.chunks_mut(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
}
