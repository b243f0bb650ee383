//! The statistics of the measurement protocol: the median of repeated speed samples, its
//! confidence interval, outliers, and when enough repetitions were taken.
//!
//! Speed samples on a shared machine are skewed (a descheduled thread makes one repetition slow,
//! nothing makes one fast), so the figure is the **median**, its uncertainty the distribution-free
//! 95% interval of the median from order statistics (ranks `n/2 ∓ 0.98 √n`), and a sample is an
//! **outlier** when it lies further from the median than [`OUTLIER_MADS`] scaled median absolute
//! deviations and [`OUTLIER_MIN_REL`] of the median: it is left out and its round is re-run.

use serde::{Deserialize, Serialize};

/// Outlier threshold, in median absolute deviations (scaled by 1.4826 to a normal sd).
pub const OUTLIER_MADS: f64 = 5.0;
/// ...and never closer to the median than this share of it (identical samples have MAD 0).
pub const OUTLIER_MIN_REL: f64 = 0.05;
/// A measurement has settled when its 95% interval of the median is within this share of the
/// median on either side.
pub const SETTLED_REL: f64 = 0.05;
/// Samples a settled measurement needs at least (after outliers are left out).
pub const MIN_SAMPLES: usize = 6;

/// Repeated samples of one figure, summarized.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// 95% interval of the median (order statistics).
    pub ci_lo: f64,
    pub ci_hi: f64,
    /// Samples kept.
    pub n: u32,
    /// Samples left out as outliers.
    pub outliers: u32,
}

impl Spread {
    /// The summary of `samples` (finite, positive ones; outliers left out). `None` when none.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = samples
            .iter()
            .copied()
            .filter(|x| x.is_finite() && *x > 0.0)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let med = median_sorted(&v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
        dev.sort_by(f64::total_cmp);
        let mad = 1.4826 * median_sorted(&dev);
        let limit = (OUTLIER_MADS * mad).max(OUTLIER_MIN_REL * med);
        let before = v.len();
        v.retain(|x| (x - med).abs() <= limit);
        let outliers = (before - v.len()) as u32;
        let n = v.len();
        let median = median_sorted(&v);
        let half = 0.98 * (n as f64).sqrt();
        let lo = ((n as f64 / 2.0 - half).round() as usize).clamp(1, n);
        let hi = ((n as f64 / 2.0 + 1.0 + half).round() as usize).clamp(1, n);
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            ci_lo: v[lo - 1],
            ci_hi: v[hi - 1],
            n: n as u32,
            outliers,
        })
    }

    /// Enough samples, and the median known to within [`SETTLED_REL`].
    pub fn settled(&self) -> bool {
        self.n as usize >= MIN_SAMPLES
            && self.ci_hi - self.median <= SETTLED_REL * self.median
            && self.median - self.ci_lo <= SETTLED_REL * self.median
    }

    /// Half the min-max range as a share of the median.
    pub fn rel_range(&self) -> f64 {
        (self.max - self.min) / 2.0 / self.median
    }

    /// `41.3 tok/s (median of 9, 95% CI 40.8-41.9, range 39.9-42.4, 1 outlier re-run)`.
    pub fn describe(&self, unit: &str) -> String {
        format!(
            "{:.2} {unit} (median of {}, 95% CI {:.2}-{:.2}, range {:.2}-{:.2}{})",
            self.median,
            self.n,
            self.ci_lo,
            self.ci_hi,
            self.min,
            self.max,
            match self.outliers {
                0 => String::new(),
                1 => ", 1 outlier re-run".to_string(),
                k => format!(", {k} outliers re-run"),
            }
        )
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_interval_outliers_and_settling() {
        let s = Spread::of(&[10.0, 10.2, 9.9, 10.1, 10.0, 3.0]).unwrap();
        assert_eq!((s.n, s.outliers), (5, 1), "{s:?}");
        assert_eq!(s.median, 10.0);
        assert_eq!((s.min, s.max), (9.9, 10.2));
        assert!(!s.settled(), "5 samples are too few: {s:?}");
        let s = Spread::of(&[10.0, 10.2, 9.9, 10.1, 10.0, 10.05, 9.95]).unwrap();
        assert!(s.settled(), "{s:?}");
        assert!(s.ci_lo <= s.median && s.median <= s.ci_hi);
        // A wide spread is not settled however many samples there are.
        let wide: Vec<f64> = (0..12).map(|i| 8.0 + i as f64 * 0.4).collect();
        let s = Spread::of(&wide).unwrap();
        assert_eq!(s.outliers, 0);
        assert!(!s.settled(), "{s:?}");
        assert!(Spread::of(&[f64::NAN, 0.0]).is_none());
        assert!(s.describe("tok/s").contains("median of 12"));
    }
}
