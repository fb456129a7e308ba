//! Which vector kernels run: AVX2 with FMA (what the build targets), or
//! AVX-512 where the core has it, chosen when the program runs. Both give
//! the same bits: each output keeps its order of summation and its fused
//! multiply-adds; AVX-512 only computes more outputs side by side.
//! AVX-512 is the default where the core has it: on the development
//! machine (AMD EPYC, Zen 5) its matrix products made a training epoch
//! 1.30 times as fast as AVX2 at two threads and 1.36 at one (`bench
//! --epoch --kernels both`, medians of 3; docs/benchmarks.md).
//! `FMNIST_PIPE_KERNELS=avx2` forces AVX2.

/// Which kernels a layer's products run. A value that says AVX-512 is
/// only made where the core has it ([`Family::avx512`], [`Family::detected`]),
/// so a layer that carries one may run the AVX-512 kernels safely. It is
/// carried by the model and its layers, not kept in the process: a test
/// or a benchmark runs both families side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family(Wide);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wide {
    Avx2,
    Avx512,
}

impl Family {
    /// AVX2 with FMA: what the build targets.
    pub const AVX2: Family = Family(Wide::Avx2);

    /// AVX-512, where the core has it.
    pub fn avx512() -> Option<Family> {
        avx512_available().then_some(Family(Wide::Avx512))
    }

    /// The widest this core runs.
    pub fn widest() -> Family {
        Family::avx512().unwrap_or(Family::AVX2)
    }

    /// What a model runs unless told otherwise: the widest, unless
    /// `FMNIST_PIPE_KERNELS=avx2` forces AVX2.
    pub fn detected() -> Family {
        if std::env::var("FMNIST_PIPE_KERNELS").is_ok_and(|v| v == "avx2") {
            Family::AVX2
        } else {
            Family::widest()
        }
    }

    pub fn is_avx512(self) -> bool {
        self.0 == Wide::Avx512
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Wide::Avx2 => "AVX2+FMA",
            Wide::Avx512 => "AVX-512",
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avx512_is_only_had_where_the_core_has_it() {
        assert_eq!(Family::avx512().is_some(), avx512_available());
        assert_eq!(Family::widest().is_avx512(), avx512_available());
        assert!(!Family::AVX2.is_avx512());
    }
}
