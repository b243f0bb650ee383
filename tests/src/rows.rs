//! Deterministic test rows: a small PRNG (splitmix64) and the row families the differential
//! tests quantize. No `rand` dependency: the values must be identical on every machine.

/// splitmix64: tiny, deterministic, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The families of rows every quantizer is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Normal,
    /// Student-t with 2 degrees of freedom: rare huge outliers, like real weight rows.
    HeavyTailed,
    Zero,
    Constant,
    /// Normal scaled by 1e-30 (f16 scales underflow) and some subnormals.
    Tiny,
    /// Normal scaled by 1e30 (f16 scales overflow).
    Huge,
    /// Mostly zero with a few spikes; the all-zero sub-block path.
    Sparse,
}

impl RowKind {
    pub const ALL: [RowKind; 7] = [
        RowKind::Normal,
        RowKind::HeavyTailed,
        RowKind::Zero,
        RowKind::Constant,
        RowKind::Tiny,
        RowKind::Huge,
        RowKind::Sparse,
    ];
}

/// `n` values of the given kind.
pub fn make_row(kind: RowKind, n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|i| match kind {
            RowKind::Normal => rng.normal() as f32,
            RowKind::HeavyTailed => {
                let z = rng.normal();
                let chi2 = rng.normal().powi(2) + rng.normal().powi(2);
                (z / (chi2 / 2.0).sqrt().max(1e-6)) as f32
            }
            RowKind::Zero => 0.0,
            RowKind::Constant => 0.731,
            RowKind::Tiny => {
                if i % 7 == 0 {
                    f32::from_bits((rng.next_u64() % 0x7f_ffff) as u32 + 1) // subnormal
                } else {
                    (rng.normal() * 1e-30) as f32
                }
            }
            RowKind::Huge => (rng.normal() * 1e30) as f32,
            RowKind::Sparse => {
                if rng.uniform() < 0.05 {
                    (rng.normal() * 4.0) as f32
                } else {
                    0.0
                }
            }
        })
        .collect()
}

/// Importance weights as an imatrix holds them: positive mean squared activations, spread over
/// several orders of magnitude, with a few exact zeros (dead columns).
pub fn make_importance(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if rng.uniform() < 0.02 {
                0.0
            } else {
                (rng.normal() * 1.5).exp() as f32
            }
        })
        .collect()
}
