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
