//! What a device is, as its runtime describes itself in the handshake: CPU model, cores, RAM,
//! kernel, runtime target and kernels (ISA). Its fingerprint tells two boards apart that share
//! an inventory name (a Pi replaced by a Pi 5 under the same host name is a new device in the
//! history), and ties one board's measurements together across runs.

use formats::wire::Hello;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// `AMD EPYC 9654 96-Core Processor`, `Raspberry Pi 5 Model B Rev 1.0`, empty if unknown.
    pub cpu_model: String,
    pub cores: u32,
    pub ram_bytes: u64,
    /// `uname -r`.
    pub kernel: String,
    /// The runtime's target triple.
    pub target: String,
    /// The kernels the runtime chose (`avx512+vnni`, `neon+dotprod`, ...).
    pub isa: String,
}

impl Hardware {
    pub fn from_hello(h: &Hello) -> Hardware {
        Hardware {
            cpu_model: h.cpu_model.clone(),
            cores: h.cores,
            ram_bytes: h.total_ram_bytes,
            kernel: h.kernel.clone(),
            target: h.target.clone(),
            isa: h.isa.clone(),
        }
    }

    /// 16 hex digits of the SHA-256 of every field. RAM counts in whole MiB, rounded: the
    /// kernel's total moves by a few KiB between boots of one board (reserved memory), which
    /// is not another board.
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.cpu_model,
            self.cores,
            (self.ram_bytes + (1 << 19)) >> 20,
            self.kernel,
            self.target,
            self.isa
        );
        Sha256::digest(text.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `AMD EPYC (2 cores, 23.4 GiB, avx512+vnni)`.
    pub fn summary(&self) -> String {
        format!(
            "{} ({} cores, {:.1} GiB, {})",
            if self.cpu_model.is_empty() {
                "unknown CPU"
            } else {
                &self.cpu_model
            },
            self.cores,
            self.ram_bytes as f64 / (1u64 << 30) as f64,
            self.isa
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hw() -> Hardware {
        Hardware {
            cpu_model: "Raspberry Pi 5 Model B Rev 1.0".into(),
            cores: 4,
            ram_bytes: 8 << 30,
            kernel: "6.6.31+rpt-rpi-2712".into(),
            target: "aarch64-unknown-linux-musl".into(),
            isa: "neon+dotprod".into(),
        }
    }

    #[test]
    fn fingerprint_changes_with_the_hardware_not_with_reserved_kib() {
        let a = hw();
        assert_eq!(a.fingerprint().len(), 16);
        let mut b = a.clone();
        b.ram_bytes -= 4096;
        assert_eq!(a.fingerprint(), b.fingerprint());
        for change in [
            |h: &mut Hardware| h.cores = 2,
            |h: &mut Hardware| h.kernel = "6.6.40".into(),
            |h: &mut Hardware| h.cpu_model = "Raspberry Pi 4 Model B Rev 1.4".into(),
            |h: &mut Hardware| h.isa = "neon".into(),
            |h: &mut Hardware| h.ram_bytes = 4 << 30,
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert_ne!(a.fingerprint(), c.fingerprint(), "{c:?}");
        }
    }
}
