//! `--auto-detect`: a profile for this machine from `/proc` and the CPU's feature flags, with
//! the memory bandwidth measured (a short copy loop). Targets are left empty so that they are
//! derived from the roofline (see `targets.rs`).

use crate::profile::{Constraints, Profile};
use crate::targets::Targets;
use anyhow::{Context, Result};
use std::time::Instant;

/// A profile describing this host.
pub fn detect_host() -> Result<Profile> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let ram_gb = ram_bytes()? as f64 / 1e9;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let has_cuda = std::path::Path::new("/proc/driver/nvidia/gpus").is_dir();
    let bw = measure_bandwidth_gbps();
    tracing::info!(cores, ram_gb, bw, has_cuda, "detected this host");
    Ok(Profile {
        name: format!("host-{host}"),
        description: Some(format!(
            "auto-detected: {} cores, {:.1} GB RAM, {bw:.1} GB/s measured copy bandwidth",
            cores, ram_gb
        )),
        constraints: Constraints {
            vram_gb: 0.0,
            cpu_arch: std::env::consts::ARCH.to_string(),
            has_cuda,
            ram_gb: Some((ram_gb * 10.0).round() / 10.0),
            cores: Some(cores),
            simd: simd_features(),
            memory_bandwidth_gbps: Some((bw * 10.0).round() / 10.0),
        },
        targets: Targets::default(),
        supported_quantizations: vec!["GGUF".into()],
        connection: None,
    })
}

/// `MemTotal` from `/proc/meminfo`, bytes.
fn ram_bytes() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .context("reading /proc/meminfo (auto-detect needs Linux; pass a profile instead)")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .context("/proc/meminfo has no MemTotal line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("/proc/meminfo: cannot read '{line}'"))?;
    Ok(kb * 1024)
}

/// Best of five copies of a 64 MiB buffer, counting bytes read plus bytes written.
pub fn measure_bandwidth_gbps() -> f64 {
    const N: usize = 64 << 20;
    let src = vec![1u8; N];
    let mut dst = vec![0u8; N];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * N as f64 / best.max(1e-9) / 1e9
}

/// SIMD features this CPU has, in the profile's spelling.
pub fn simd_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut out: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let checks: [(&str, bool); 9] = [
            ("sse4.2", std::is_x86_feature_detected!("sse4.2")),
            ("avx", std::is_x86_feature_detected!("avx")),
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("fma", std::is_x86_feature_detected!("fma")),
            ("f16c", std::is_x86_feature_detected!("f16c")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
            ("avx512bw", std::is_x86_feature_detected!("avx512bw")),
            ("avx512vnni", std::is_x86_feature_detected!("avx512vnni")),
            ("avxvnni", std::is_x86_feature_detected!("avxvnni")),
        ];
        out.extend(checks.iter().filter(|c| c.1).map(|c| c.0));
    }
    #[cfg(target_arch = "aarch64")]
    {
        let checks: [(&str, bool); 5] = [
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
            ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
            ("sve", std::arch::is_aarch64_feature_detected!("sve")),
        ];
        out.extend(checks.iter().filter(|c| c.1).map(|c| c.0));
    }
    out.into_iter().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn detects_a_valid_profile() {
        let p = super::detect_host().unwrap();
        let yaml = serde_yaml_ng::to_string(&p).unwrap();
        crate::profile::Profile::from_yaml(&yaml, "detected").unwrap();
        assert!(p.constraints.memory_bandwidth_gbps.unwrap() > 0.0);
    }
}
