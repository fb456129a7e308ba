//! Per-thread scratch buffers kept between calls, for the kernels that
//! need large temporaries (Winograd's, the AVX-512 products').

use std::cell::RefCell;

/// Runs `f` on `len` floats of a per-thread buffer, whose contents are
/// whatever the last user left. A nested use on the same thread (a rayon
/// worker that picked up another convolution while waiting) gets a fresh
/// buffer instead.
pub(crate) fn with_buffer<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}
