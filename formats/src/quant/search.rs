//! Scale searches shared by the quantizers, named as ggml names them in `ggml-quants.c`.
//!
//! Bit-exactness with ggml rests on doing every `f32` operation in ggml's order: ggml-base is
//! built for baseline x86-64 without FMA contraction, so each `*` and `+` rounds on its own, and
//! C's `int` operands are converted to `f32` exactly where C converts them. Keep the grouping of
//! every expression as it is here.

use super::k_search::sqrtf;

/// Upper bound of the group sizes the searches are called with (a K-quant super-block).
const MAX_GROUP: usize = 256;

/// A group whose largest magnitude is below this is all zeros (ggml's `GROUP_MAX_EPS`).
pub const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to the nearest integer, ties to even, by ggml's trick: adding 1.5 * 2^23 leaves the
/// integer in the low mantissa bits. Exact for `|fval| <= 4194303`; any other input (infinite,
/// NaN, huge) yields some value in `-2^22..2^22` as in ggml, never a panic.
#[inline]
pub fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// The largest magnitude of `x` and the signed value that has it, the first on ties (0 and 0
/// for an empty or all-NaN group).
#[inline]
pub fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// Index of the entry of the sorted table `val` nearest to `x` (ggml's `best_index_int8`);
/// on a tie between two neighbours the upper one wins.
#[inline]
pub fn best_index_int8(val: &[i8], x: f32) -> usize {
    let n = val.len();
    if x <= f32::from(val[0]) {
        return 0;
    }
    if x >= f32::from(val[n - 1]) {
        return n - 1;
    }
    let (mut ml, mut mu) = (0, n - 1);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < f32::from(val[mav]) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - f32::from(val[mu - 1]) < f32::from(val[mu]) - x {
        mu - 1
    } else {
        mu
    }
}

/// Symmetric quantization of `x` to `L[i] in 0..2*nmax` (value `L[i] - nmax`), returning the
/// scale (ggml's `make_qx_quants`).
///
/// `rmse_type` 0 is plain rounding at `-nmax / max`; otherwise the error weights are `qw` when
/// given, else `x^2` (1), 1 (2), `|x|` (3) or `sqrt|x|` (4), and 19 candidate scales around the
/// first are tried. A negative `rmse_type` returns early with the average of the first two
/// estimates.
pub fn make_qx_quants(
    nmax: i32,
    x: &[f32],
    l_out: &mut [i8],
    rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let n = x.len();
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let clamp = |l: i32| l.min(nmax - 1).max(-nmax);
    let mut iscale = -nmax_f / max;
    if rmse_type == 0 {
        for (li, &xi) in l_out.iter_mut().zip(x) {
            *li = (nmax + clamp(nearest_int(iscale * xi))) as i8;
        }
        return 1.0 / iscale;
    }
    let (rmse_type, return_early) = if rmse_type < 0 {
        (-rmse_type, true)
    } else {
        (rmse_type, false)
    };
    let weight = |i: usize| -> f32 {
        match qw {
            Some(qw) => qw[i],
            None => match rmse_type {
                1 => x[i] * x[i],
                2 => 1.0,
                3 => x[i].abs(),
                _ => sqrtf(x[i].abs()),
            },
        }
    };
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..n {
        let l = clamp(nearest_int(iscale * x[i]));
        l_out[i] = (l + nmax) as i8;
        let w = weight(i);
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax_f + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let lf = clamp(nearest_int(iscale * x[i])) as f32;
            let w = weight(i);
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &xi) in l_out.iter_mut().zip(x) {
                *li = (nmax + clamp(nearest_int(iscale * xi))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Asymmetric quantization of `x` to `L[i] in 0..=nmax` with value `scale * L[i] - min`,
/// minimising the weighted squared (or, with `use_mad`, absolute) error over `nstep + 1`
/// candidate scales `(nmax + rmin + rdelta * is) / (max - min)` (ggml's `make_qkx3_quants`).
///
/// The weights are `weights` when given, else `x^2`. Returns `(scale, the_min)` where
/// `the_min` is ggml's `*the_min` (the negated offset, `>= 0`). `x.len()` is at most 256.
pub fn make_qkx3_quants(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut laux_buf = [0u8; MAX_GROUP];
    let laux = &mut laux_buf[..n];
    let weight = |i: usize| -> f32 {
        match weights {
            Some(w) => w[i],
            None => x[i] * x[i],
        }
    };
    let nmax_f = nmax as f32;

    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weight(0);
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weight(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = l.min(nmax).max(0) as u8;
        let diff = scale * f32::from(l_out[i]) + min - x[i];
        let diff = if use_mad { diff.abs() } else { diff * diff };
        best_mad += weight(i) * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            // min is the best fit so far and can be at or near max, so v can be inf, NaN or
            // out of range for nearest_int.
            let v = iscale * (x[i] - min);
            let l = if v > 0.0 {
                nearest_int(if v < nmax_f { v } else { nmax_f })
            } else {
                0
            };
            laux[i] = l as u8;
            let w = weight(i);
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                let diff = if use_mad { diff.abs() } else { diff * diff };
                mad += weight(i) * diff;
            }
            if mad < best_mad {
                l_out[..n].copy_from_slice(laux);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-7.49), -7);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
        // No panic on anything.
        for v in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -f32::MAX,
        ] {
            let _ = nearest_int(v);
        }
    }

    #[test]
    fn best_index_picks_nearest_and_upper_on_tie() {
        let vals: [i8; 4] = [-10, 0, 10, 20];
        assert_eq!(best_index_int8(&vals, -100.0), 0);
        assert_eq!(best_index_int8(&vals, 100.0), 3);
        assert_eq!(best_index_int8(&vals, 4.0), 1);
        assert_eq!(best_index_int8(&vals, 5.0), 2);
        assert_eq!(best_index_int8(&vals, 16.0), 3);
        assert_eq!(best_index_int8(&vals, f32::NAN), 3);
    }

    #[test]
    fn make_qx_quants_reconstructs_a_ramp() {
        let x: [f32; 32] = core::array::from_fn(|i| i as f32 - 16.0);
        let mut l = [0i8; 32];
        let d = make_qx_quants(16, &x, &mut l, 1, None);
        for (li, xi) in l.iter().zip(x) {
            assert!((d * (*li as f32 - 16.0) - xi).abs() <= d.abs() * 0.51 + 1e-6);
        }
    }

    #[test]
    fn make_qkx3_quants_handles_constant_and_positive_groups() {
        let mut l = [0u8; 32];
        let (scale, the_min) =
            make_qkx3_quants(15, &[-2.0; 32], None, &mut l, -0.9, 0.05, 36, false);
        assert_eq!((scale, the_min), (0.0, 2.0));
        let x: [f32; 32] = core::array::from_fn(|i| 1.0 + i as f32);
        let (scale, the_min) = make_qkx3_quants(15, &x, None, &mut l, -0.9, 0.05, 36, false);
        for (li, xi) in l.iter().zip(x) {
            assert!(
                (scale * f32::from(*li) - the_min - xi).abs() <= 2.5,
                "{scale} {the_min}"
            );
        }
    }
}
