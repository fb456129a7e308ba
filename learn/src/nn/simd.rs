//! Which vector kernels run: AVX2 with FMA (what the build targets), or
//! AVX-512 where the core has it, chosen when the program runs. Both give
//! the same bits: each output keeps its order of summation and its fused
//! multiply-adds; AVX-512 only computes more outputs side by side.
//! AVX-512 is the default where the core has it: on the development
//! machine (AMD EPYC, Zen 5) its matrix products made a training epoch
//! 1.30 times as fast as AVX2 at two threads and 1.36 at one (`bench
//! --epoch --kernels both`, medians of 3; docs/benchmarks.md).
//! `FMNIST_PIPE_KERNELS=avx2` forces AVX2.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Avx2,
    Avx512,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Avx2 => "AVX2+FMA",
            Family::Avx512 => "AVX-512",
        }
    }
}

/// 0: not decided yet; else 1 + the family's index.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

fn code(f: Family) -> u8 {
    match f {
        Family::Avx2 => 1,
        Family::Avx512 => 2,
    }
}

/// Whether this core can run the AVX-512 kernels.
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The family in use: AVX-512 where the core has it, unless
/// `FMNIST_PIPE_KERNELS=avx2` forces AVX2.
pub fn family() -> Family {
    match CHOSEN.load(Ordering::Relaxed) {
        1 => Family::Avx2,
        2 => Family::Avx512,
        _ => {
            let forced = std::env::var("FMNIST_PIPE_KERNELS").is_ok_and(|v| v == "avx2");
            let f = if avx512_available() && !forced {
                Family::Avx512
            } else {
                Family::Avx2
            };
            CHOSEN.store(code(f), Ordering::Relaxed);
            f
        }
    }
}

/// Chooses the family for this process (tests, benchmarks); AVX-512 only
/// where the core has it. What was chosen.
pub fn choose(f: Family) -> Family {
    let f = if f == Family::Avx512 && !avx512_available() {
        Family::Avx2
    } else {
        f
    };
    CHOSEN.store(code(f), Ordering::Relaxed);
    f
}
