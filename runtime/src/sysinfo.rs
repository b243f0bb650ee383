//! What the runtime reports about the machine it runs on.

/// The target triple this binary was built for.
pub const TARGET: &str = env!("SINTRA_TARGET");

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Peak resident set size of this process (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Start [`peak_rss_bytes`] afresh from the current resident set (Linux: `5` into
/// `/proc/self/clear_refs`), so that a long-lived `serve` reports each model's own peak rather
/// than the largest model it ever mapped. Best effort: elsewhere the peak stays since start.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time counters (Linux `/proc/stat` and `/proc/self/stat`, clock ticks).
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    /// Ticks the whole machine spent busy (user, nice, system, irq, softirq, steal).
    busy: u64,
    /// Every tick of the whole machine (busy, idle, iowait).
    total: u64,
    /// Ticks this process (all its threads) ran.
    own: u64,
}

/// The counters now, `None` where the OS does not give them.
pub fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let f = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = f(0) + f(1) + f(2) + f(5) + f(6) + f(7);
    let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, so split after its `)`): state is
    // field 3, utime 14 and stime 15.
    let rest: Vec<&str> = own_stat.rsplit_once(')')?.1.split_whitespace().collect();
    let own = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(CpuTimes {
        busy,
        total: busy + f(3) + f(4),
        own,
    })
}

/// The 1-minute load average, `None` where unknown.
pub fn load_avg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What else the machine did since `start` (taken with the load average `load_1m` when a
/// benchmark began): the share of all CPU time that other processes used.
pub fn machine_load(
    start: Option<CpuTimes>,
    load_1m: Option<f64>,
) -> Option<formats::wire::MachineLoad> {
    let (a, b) = (start?, cpu_times()?);
    let total = b.total.saturating_sub(a.total);
    let others = b
        .busy
        .saturating_sub(a.busy)
        .saturating_sub(b.own.saturating_sub(a.own));
    Some(formats::wire::MachineLoad {
        load_avg_1m: load_1m?,
        others_cpu_share: if total == 0 {
            0.0
        } else {
            (others as f64 / total as f64).clamp(0.0, 1.0)
        },
    })
}

/// Apply `SINTRA_KERNELS` (`auto`, or an instruction set's name such as `scalar`, `avx2`,
/// `neon` or `dotprod`, see `kernels::Isa::from_name`) to the
/// kernels' run-time dispatch, so that the scalar oracle can be compared with the SIMD
/// kernels on the same binary. Unset or empty means `auto`.
pub fn select_kernels() -> Result<(), String> {
    let value = match std::env::var("SINTRA_KERNELS") {
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => return Ok(()),
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(format!("SINTRA_KERNELS={v:?} is not valid unicode"))
        }
    };
    if value.is_empty() || value == "auto" {
        return Ok(());
    }
    let names: Vec<&str> = kernels::Isa::ALL.iter().map(|i| i.name()).collect();
    let isa = kernels::Isa::from_name(&value).ok_or_else(|| {
        let names = names.join(", ");
        format!("SINTRA_KERNELS={value} is not auto or one of {names}")
    })?;
    kernels::use_isa(isa).map_err(|e| format!("SINTRA_KERNELS={value}: {e}"))
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes (0 where unknown).
pub fn ram_bytes() -> (u64, u64) {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        return (0, 0);
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// CPU features that matter to the kernels, as this process sees them.
pub fn cpu_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut found: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::is_x86_feature_detected!($f) {
                    found.push($f);
                }
            )*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vnni",
            "avxvnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_aarch64_feature_detected!($f) {
                    found.push($f);
                }
            )*};
        }
        probe!("neon", "dotprod", "fp16", "i8mm", "sve");
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // 32-bit ARM and others: the kernel's list (`Features: half thumb fastmult vfp neon ...`).
        if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
            if let Some(line) = info.lines().find(|l| l.starts_with("Features")) {
                let list = line.split(':').nth(1).unwrap_or("");
                return list.split_whitespace().map(str::to_string).collect();
            }
        }
    }
    found.into_iter().map(str::to_string).collect()
}

/// The runtime's side of the handshake.
pub fn hello() -> formats::wire::Hello {
    let (total, available) = ram_bytes();
    formats::wire::Hello {
        protocol_version: formats::wire::PROTOCOL_VERSION,
        runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        target: TARGET.to_string(),
        isa: kernels::isa_name().to_string(),
        cpu_features: cpu_features(),
        cores: cores() as u32,
        total_ram_bytes: total,
        available_ram_bytes: available,
        cpu_model: cpu_model(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        gpu: crate::gpu::info(),
    }
}

/// The CPU as the system names it: the device tree's board model (`Raspberry Pi 5 Model B
/// Rev 1.0`, `NVIDIA Jetson Orin Nano ...`), else `/proc/cpuinfo`'s `model name` (x86, some
/// ARM kernels), else its ARM `CPU implementer` and `CPU part` (`ARM 0xd0b`); empty when none.
pub fn cpu_model() -> String {
    if let Ok(m) = std::fs::read("/proc/device-tree/model") {
        let m = String::from_utf8_lossy(&m);
        let m = m.trim_end_matches('\0').trim();
        if !m.is_empty() {
            return m.to_string();
        }
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpu_model_from(&info)
}

/// [`cpu_model`]'s reading of `/proc/cpuinfo`.
pub fn cpu_model_from(info: &str) -> String {
    let field = |key: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    };
    if let Some(m) = field("model name").or_else(|| field("Model")) {
        return m;
    }
    match (field("CPU implementer"), field("CPU part")) {
        (Some(i), Some(p)) => {
            let vendor = match i.as_str() {
                "0x41" => "ARM",
                "0x4e" => "NVIDIA",
                "0x51" => "Qualcomm",
                "0x61" => "Apple",
                _ => i.as_str(),
            };
            format!("{vendor} {p}")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_model_from;

    #[test]
    fn cpu_model_from_x86_and_arm_cpuinfo() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu\n";
        assert_eq!(cpu_model_from(x86), "AMD EPYC 9654 96-Core Processor");
        // A Raspberry Pi 5's kernel: no model name, implementer and part per core.
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0b\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd0b\nRevision\t: d04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n";
        assert_eq!(cpu_model_from(pi), "Raspberry Pi 5 Model B Rev 1.0");
        let bare = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n";
        assert_eq!(cpu_model_from(bare), "ARM 0xd08");
        assert_eq!(cpu_model_from(""), "");
        assert_eq!(cpu_model_from("model name\t:\n"), "");
    }
}
