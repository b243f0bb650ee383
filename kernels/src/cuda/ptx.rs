//! The PTX texts `build.rs` made with NVRTC, one per virtual architecture, and the choice of
//! one for a GPU.

/// (architecture, its compute capability, the PTX), oldest first.
const TEXTS: [(&str, (u32, u32), &str); 4] = [
    (
        "compute_61",
        (6, 1),
        include_str!(concat!(env!("OUT_DIR"), "/sintra_compute_61.ptx")),
    ),
    (
        "compute_80",
        (8, 0),
        include_str!(concat!(env!("OUT_DIR"), "/sintra_compute_80.ptx")),
    ),
    (
        "compute_87",
        (8, 7),
        include_str!(concat!(env!("OUT_DIR"), "/sintra_compute_87.ptx")),
    ),
    (
        "compute_90",
        (9, 0),
        include_str!(concat!(env!("OUT_DIR"), "/sintra_compute_90.ptx")),
    ),
];

/// The oldest architecture built.
pub const OLDEST: &str = TEXTS[0].0;

/// The newest PTX a GPU of compute capability `cc` runs (the driver compiles a virtual
/// architecture's PTX for any GPU at or above it), or `None` for a GPU older than them all.
pub fn for_capability(cc: (u32, u32)) -> Option<(&'static str, &'static str)> {
    TEXTS
        .iter()
        .rev()
        .find(|(_, min, _)| *min <= cc)
        .map(|&(arch, _, text)| (arch, text))
}

/// Every embedded text, for the build's own checks.
#[cfg(test)]
fn all() -> impl Iterator<Item = (&'static str, &'static str)> {
    TEXTS.iter().map(|&(arch, _, text)| (arch, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gpu_gets_the_newest_ptx_not_above_it() {
        assert_eq!(for_capability((5, 3)), None); // Jetson Nano: too old
        assert_eq!(for_capability((7, 5)).unwrap().0, "compute_61");
        assert_eq!(for_capability((8, 6)).unwrap().0, "compute_80");
        assert_eq!(for_capability((8, 7)).unwrap().0, "compute_87");
        assert_eq!(for_capability((8, 9)).unwrap().0, "compute_87");
        assert_eq!(for_capability((9, 0)).unwrap().0, "compute_90");
        assert_eq!(for_capability((12, 0)).unwrap().0, "compute_90");
    }

    #[test]
    fn every_text_is_ptx_for_its_architecture_with_every_kernel() {
        for (arch, text) in all() {
            let target = arch.replace("compute_", "sm_");
            assert!(
                text.contains(".version 8.5"),
                "{arch}: PTX ISA 8.5 expected"
            );
            assert!(text.contains(&format!(".target {target}")), "{arch}");
            for name in [
                "rmsnorm",
                "attention",
                "rope",
                "kv_store",
                "matvec_q4_k",
                "matmul_iq4_nl",
                "get_rows_q6_k",
            ] {
                assert!(
                    text.contains(&format!(".entry {name}(")),
                    "{arch}: no kernel {name}"
                );
            }
        }
    }
}
