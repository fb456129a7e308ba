//! Process-level settings the compute kinds need: which devices this
//! build can use, the allocator's tuning, the process's peak memory.

use crate::StageError;

/// Refuses devices this build cannot use, saying how to get one that can.
pub fn check_device(device: &str) -> Result<(), StageError> {
    match device {
        "cpu" | "cpu-reference" => Ok(()),
        d if is_cuda(d) && cfg!(feature = "cuda") => Ok(()),
        d if is_cuda(d) => Err(StageError::Failed(
            "device cuda: this build has no CUDA support; rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit and the NVIDIA driver), or use device: cpu".into(),
        )),
        other => Err(StageError::Params(format!(
            "unknown device `{other}`: use cpu, cpu-reference or cuda"
        ))),
    }
}

pub fn is_cuda(device: &str) -> bool {
    device == "cuda" || device.starts_with("cuda:")
}

/// What makes a GPU usable where none is.
const FIX: &str = "run on a machine with an NVIDIA GPU and its driver, or use device: cpu";

/// Why the GPU a stage names cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {device}: not a GPU number")]
    NotANumber { device: String },
    #[error("device {device}: no usable NVIDIA driver here ({detail}); {FIX}")]
    NoDriver { device: String, detail: String },
    #[error("device {device}: the driver lists no GPU ({detail}); {FIX}")]
    NoGpuListed { device: String, detail: String },
    #[error("device {device}: this machine has {count} GPU{}; {FIX}", if *count == 1 { "" } else { "s" })]
    Missing { device: String, count: i32 },
    #[error("device {device}: CUDA could not start: {detail}")]
    Start { device: String, detail: String },
    #[error("device {device}: this build has no CUDA support")]
    NoCuda { device: String },
}

/// The GPU `device` names (`cuda` is `cuda:0`), its generator seeded.
/// The driver is asked first, through its own calls: dfdx's
/// initialisation unwraps the driver's errors, and formatting one needs a
/// working driver (with a stub, the panic itself panics and aborts).
#[cfg(feature = "cuda")]
pub fn cuda(device: &str, seed: u64) -> Result<dfdx::tensor::Cuda, DeviceError> {
    use cudarc::driver::result;
    let named = || device.to_string();
    let ordinal = match device.strip_prefix("cuda:") {
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| DeviceError::NotANumber { device: named() })?,
        None => 0,
    };
    result::init().map_err(|e| DeviceError::NoDriver {
        device: named(),
        detail: format!("{:?}", e.0),
    })?;
    let count = result::device::get_count().map_err(|e| DeviceError::NoGpuListed {
        device: named(),
        detail: format!("{:?}", e.0),
    })?;
    if ordinal >= count.max(0) as usize {
        return Err(DeviceError::Missing {
            device: named(),
            count,
        });
    }
    dfdx::tensor::Cuda::try_build(ordinal, seed).map_err(|e| DeviceError::Start {
        device: named(),
        detail: format!("{e:?}"),
    })
}

/// Allocator settings for training, measured on the main CNN: one arena
/// (per-thread arenas mmap and unmap the large per-step buffers: 0.5x the
/// eval throughput at 2 threads), a large top pad and no trimming (the
/// heap is not given back and faulted in again every step), and large
/// buffers kept off mmap. Call once, before threads start.
pub fn tune_allocator() {
    // SAFETY: mallopt only changes glibc allocator parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 512 << 20);
    }
}

/// The process's peak resident memory (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// This machine's CPU as a speed figure or a report must name it: the
/// model and the vector extensions that decide how fast the kernels run
/// (`AMD EPYC 9454 (AVX-512 F/BW/VL/VNNI/BF16)`).
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    describe_cpu(&info)
}

fn describe_cpu(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let mut model = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    // A virtual machine may show only "AMD EPYC": the family and model
    // numbers then say which generation of cores ran it.
    if !model.chars().any(|c| c.is_ascii_digit()) {
        if let (Some(f), Some(m)) = (field("cpu family"), field("model")) {
            model = format!("{model}, family {f} model {m}");
        }
    }
    let flags: Vec<String> = field("flags")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let has = |f: &str| flags.iter().any(|x| x == f);
    let wide: Vec<&str> = [
        ("avx512f", "F"),
        ("avx512bw", "BW"),
        ("avx512vl", "VL"),
        ("avx512_vnni", "VNNI"),
        ("avx512_bf16", "BF16"),
    ]
    .iter()
    .filter(|(f, _)| has(f))
    .map(|(_, n)| *n)
    .collect();
    let vector = if has("avx512f") {
        format!("AVX-512 {}", wide.join("/"))
    } else if has("avx2") {
        if has("fma") { "AVX2, FMA" } else { "AVX2" }.to_string()
    } else if flags.is_empty() {
        return model;
    } else {
        "no AVX2".to_string()
    };
    format!("{model} ({vector})")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cpu_is_named_with_its_widest_vector_extensions() {
        let epyc = "processor\t: 0\nmodel name\t: AMD EPYC 9454 48-Core Processor\nflags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16\n";
        assert_eq!(
            super::describe_cpu(epyc),
            "AMD EPYC 9454 48-Core Processor (AVX-512 F/BW/VL/VNNI/BF16)"
        );
        let haswell =
            "model name\t: Intel(R) Xeon(R) CPU E5-2680 v3\nflags\t\t: sse2 avx avx2 fma\n";
        assert_eq!(
            super::describe_cpu(haswell),
            "Intel(R) Xeon(R) CPU E5-2680 v3 (AVX2, FMA)"
        );
        assert_eq!(super::describe_cpu(""), std::env::consts::ARCH);
        let vm =
            "cpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nflags\t\t: avx2 fma avx512f\n";
        assert_eq!(
            super::describe_cpu(vm),
            "AMD EPYC, family 26 model 2 (AVX-512 F)"
        );
    }
}
