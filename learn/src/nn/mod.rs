//! Neural networks on dfdx: CPU kernels, differentiable ops on dfdx's tape,
//! model specs and the model zoo, Adam, checkpoints.

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod block;
pub mod checkpoint;
pub mod fast;
#[cfg(target_arch = "x86_64")]
mod gemm512;
pub mod generic;
mod geometry;
pub mod infer;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod optim;
pub mod schedule;
mod scratch;
pub mod simd;
pub mod vector;
mod winograd;
