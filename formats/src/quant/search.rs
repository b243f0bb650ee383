//! The scale searches of ggml's quantizers (`ggml-quants.c`), named as ggml names them, and the
//! C arithmetic they rest on: one implementation of each, shared by the legacy quants, IQ4_NL
//! and the K-quants.
//!
//! Bit-exactness with ggml rests on doing every `f32` operation in ggml's order: ggml-base is
//! built for baseline x86-64 without FMA contraction, so each `*` and `+` rounds on its own, and
//! C's `int` operands are converted to `f32` exactly where C converts them. Keep the grouping of
//! every expression as it is here. C's `MIN`/`MAX` macros (`a < b ? a : b`) differ from
//! `f32::min`/`f32::max` for NaN, so [`c_min`] and [`c_max`] reproduce them; [`nearest_int`]
//! reproduces ggml's magic-number rounding for every input, which keeps each integer it returns
//! in `-2^22..2^22`: NaN-derived values are clamped or truncated exactly as the C clamps or
//! truncates them, and never index anything.

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below it quantizes to zeros.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// `fabsf`: clears the sign bit (NaN stays NaN).
#[inline]
pub(crate) fn fabsf(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7fff_ffff)
}

/// C's `MIN(a, b)` for floats: `a < b ? a : b` (so `b` when either is NaN).
#[inline]
pub(crate) fn c_min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// C's `MAX(a, b)` for floats: `a > b ? a : b` (so `b` when either is NaN).
#[inline]
pub(crate) fn c_max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// `sqrtf`, correctly rounded (IEEE 754), as the `sqrtss` instruction ggml's C compiles to.
#[inline]
pub(crate) fn sqrtf(x: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        x.sqrt()
    }
    #[cfg(not(feature = "std"))]
    {
        soft_sqrtf(x)
    }
}

/// Correctly rounded square root without `std`: integer square root of the significand.
#[cfg_attr(feature = "std", allow(dead_code))]
pub(crate) fn soft_sqrtf(x: f32) -> f32 {
    if x.is_nan() || x == 0.0 || x == f32::INFINITY {
        return x; // NaN, +-0 and +inf are their own square roots
    }
    if x < 0.0 {
        return f32::NAN;
    }
    let bits = x.to_bits();
    let biased = (bits >> 23) as i32;
    // x = m * 2^e with m an integer below 2^24 (normalized below for subnormals).
    let (mut m, mut e) = if biased == 0 {
        (u64::from(bits & 0x7f_ffff), -149)
    } else {
        (u64::from((bits & 0x7f_ffff) | 0x80_0000), biased - 150)
    };
    while m < 0x80_0000 {
        m <<= 1;
        e -= 1;
    }
    if e & 1 != 0 {
        m <<= 1;
        e -= 1;
    }
    // m in [2^23, 2^25): m * 2^26 has a square root in [2^24.5, 2^25.5), at least two bits more
    // than f32 keeps; s + 0.5 stands for an inexact root (its rounding is the same as the true
    // root's, the rounding boundaries being integers), then one rounding to f32.
    let big = m << 26;
    let s = big.isqrt();
    let r = if s * s == big {
        s as f64
    } else {
        s as f64 + 0.5
    };
    // Scale by 2^((e - 26) / 2), exactly, in f64 (the exponent stays in -100..=65).
    let k = (e - 26) / 2;
    let scale = f64::from_bits(((1023 + k) as u64) << 52);
    (r * scale) as f32
}

/// `roundf`: to the nearest integer, halfway cases away from zero.
#[inline]
pub(crate) fn roundf(x: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        x.round()
    }
    #[cfg(not(feature = "std"))]
    {
        soft_roundf(x)
    }
}

/// `roundf` without `std`.
#[cfg_attr(feature = "std", allow(dead_code))]
pub(crate) fn soft_roundf(x: f32) -> f32 {
    // From 2^23 on every f32 is an integer; NaN and the infinities are their own rounding.
    if x.is_nan() || fabsf(x) >= 8_388_608.0 {
        return x;
    }
    let t = x as i32 as f32; // truncation, exact here
    let r = if fabsf(x - t) >= 0.5 {
        t + if x < 0.0 { -1.0 } else { 1.0 }
    } else {
        t
    };
    r.copysign(x) // roundf(-0.3) is -0
}

/// ggml's `nearest_int`: round to nearest (ties to even) by adding 1.5 * 2^23 and reading the
/// low mantissa bits. Exact for |x| <= 2^22; for anything else (huge, inf, NaN) it returns the
/// same value in `-2^22..2^22` that the C returns, never a panic.
#[inline]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// C's `MAX(-nmax, MIN(nmax - 1, l))`: the range of a symmetric quant before its `+ nmax`.
#[inline]
pub(crate) fn clamp_symmetric(l: i32, nmax: i32) -> i32 {
    l.min(nmax - 1).max(-nmax)
}

/// The largest magnitude of `x` and the signed value that has it, the first on ties (0 and 0
/// for an empty or all-NaN group): the loop that opens ggml's symmetric searches.
#[inline]
pub(crate) fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        let ax = fabsf(v);
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    (amax, max)
}

/// The opening of ggml's symmetric searches: the signed value of largest magnitude of `x`, or
/// `None` with the quants `l_out[..x.len()]` zeroed when the group is all zeros (its largest
/// magnitude below [`GROUP_MAX_EPS`]).
#[inline]
pub(crate) fn nonzero_group_max(x: &[f32], l_out: &mut [i8]) -> Option<f32> {
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l_out[..x.len()].fill(0);
        return None;
    }
    Some(max)
}

/// Index of the entry of the sorted table `val` nearest to `x` (ggml's `best_index_int8`);
/// on a tie between two neighbours the upper one wins.
#[inline]
pub(crate) fn best_index_int8(val: &[i8], x: f32) -> usize {
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

/// The weight ggml's `make_qx_quants` gives `x` when called without importance weights.
#[inline]
fn qx_weight(rmse_type: i32, x: f32) -> f32 {
    match rmse_type {
        1 => x * x,
        2 => 1.0,
        3 => fabsf(x),
        _ => sqrtf(fabsf(x)),
    }
}

/// ggml's `make_qx_quants`: symmetric quants `L[i] = q + nmax`, `q` in `-nmax..nmax`, and the
/// returned scale. `rmse_type` 0 is plain rounding at `-nmax / max`; otherwise 18 more scales
/// around it are tried, minimizing the (weighted) squared error, weights `qw` or, without
/// them, `x^2` (1), 1 (2), `|x|` (3), `sqrt|x|` (other); a negative `rmse_type` returns after
/// the first weighted fit with the average of the first two estimates.
pub(crate) fn make_qx_quants(
    nmax: i32,
    x: &[f32],
    l_out: &mut [i8],
    mut rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let Some(max) = nonzero_group_max(x, l_out) else {
        return 0.0;
    };
    let n = x.len();
    let l_out = &mut l_out[..n];
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    if rmse_type == 0 {
        for (q, &v) in l_out.iter_mut().zip(x) {
            *q = (nmax + clamp_symmetric(nearest_int(iscale * v), nmax)) as i8;
        }
        return 1.0 / iscale;
    }
    let return_early = rmse_type < 0;
    if return_early {
        rmse_type = -rmse_type;
    }
    let weight = |i: usize| match qw {
        Some(w) => w[i],
        None => qx_weight(rmse_type, x[i]),
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = clamp_symmetric(nearest_int(iscale * x[i]), nmax);
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
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let lf = clamp_symmetric(nearest_int(iscale * x[i]), nmax) as f32;
            let w = weight(i);
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (q, &v) in l_out.iter_mut().zip(x) {
                *q = (nmax + clamp_symmetric(nearest_int(iscale * v), nmax)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_q3_quants`: like [`make_qx_quants`] with `x^2` weights, and with `do_rmse` a
/// coordinate-descent refinement of the quants (up to 5 passes).
pub(crate) fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8], do_rmse: bool) -> f32 {
    let Some(max) = nonzero_group_max(x, l_out) else {
        return 0.0;
    };
    let n = x.len();
    let l_out = &mut l_out[..n];
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0.0f32;
        let mut suml2 = 0.0f32;
        for (q, &v) in l_out.iter_mut().zip(x) {
            let l = clamp_symmetric(nearest_int(iscale * v), nmax);
            *q = l as i8;
            let w = v * v;
            let lf = l as f32;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        for _ in 0..5 {
            let mut n_changed = 0;
            for (q, &v) in l_out.iter_mut().zip(x) {
                let w = v * v;
                let old = f32::from(*q);
                let mut slx = sumlx - w * v * old;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * old * old;
                    let new_l = clamp_symmetric(nearest_int(v * sl2 / slx), nmax);
                    if new_l != i32::from(*q) {
                        let nf = new_l as f32;
                        slx += w * v * nf;
                        sl2 += w * nf * nf;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            *q = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for q in l_out.iter_mut() {
            *q = q.wrapping_add(nmax as i8);
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for (q, &v) in l_out.iter_mut().zip(x) {
        *q = (clamp_symmetric(nearest_int(iscale * v), nmax) + nmax) as i8;
    }
    1.0 / iscale
}

/// ggml's `make_qkx2_quants` (`V = 2`) and `make_qkx3_quants` (`V = 3`), which ggml writes
/// out twice: asymmetric quants `L[i]` in `0..=nmax` with `x ~ scale * L - min`, searching
/// `nstep + 1` scales `(rmin + rdelta * is + nmax) / (max - min)` for the least weighted error
/// (absolute with `use_mad`, else squared). Returns the scale and stores `min` (positive: the
/// amount subtracted) in `the_min`. `laux` is scratch of `x.len()`.
///
/// The two differ in three places only: `make_qkx2_quants` reads `weights` unconditionally
/// (pass `Some`), `make_qkx3_quants` uses `x^2` when they are `None`; a group is flat at
/// `max == min` for the one, `max <= min` for the other; and `make_qkx3_quants` guards the
/// search's rounding, because the fitted `min` can sit at or past `max`.
pub(crate) fn make_qkx_quants<const V: u8>(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l_out: &mut [u8],
    the_min: &mut f32,
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> f32 {
    const { assert!(V == 2 || V == 3) };
    let n = x.len();
    let (l_out, laux) = (&mut l_out[..n], &mut laux[..n]);
    // Re-slice to n so that every index below is provably in bounds (no checks in hot loops).
    let weights = weights.map(|w| &w[..n]);
    let weight = |i: usize| match weights {
        Some(w) => w[i],
        None => x[i] * x[i],
    };
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
    let flat = if V == 3 { max <= min } else { max == min };
    if flat {
        l_out.fill(0);
        *the_min = -min;
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let err = |d: f32| if use_mad { fabsf(d) } else { d * d };
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = l.min(nmax).max(0) as u8;
        let diff = scale * f32::from(l_out[i]) + min - x[i];
        best_error += weight(i) * err(diff);
    }
    if nstep < 1 {
        *the_min = -min;
        return scale;
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let v = iscale * (x[i] - min);
            let l = if V == 2 {
                nearest_int(v).min(nmax).max(0)
            } else if v > 0.0 {
                // `min` is the best fit so far and may sit at or near `max`: v can be inf, NaN
                // or out of nearest_int's range, hence make_qkx3_quants' guard.
                nearest_int(c_min(v, nmaxf))
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
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur_error += weight(i) * err(diff);
            }
            if cur_error < best_error {
                l_out.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    scale
}

/// ggml's `make_qp_quants`: non-negative quants `L[i]` in `0..=nmax` of non-negative `x` (the
/// sub-block scales and mins) with weights `quant_weights`: a 9-scale search then up to 5
/// passes of coordinate descent. Returns the scale.
pub(crate) fn make_qp_quants(nmax: i32, x: &[f32], l_out: &mut [u8], quant_weights: &[f32]) -> f32 {
    let n = x.len();
    let (l_out, qw) = (&mut l_out[..n], &quant_weights[..n]);
    let mut max = 0.0f32;
    for &v in x {
        max = c_max(max, v);
    }
    if max < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for (q, &v) in l_out.iter_mut().zip(x) {
        *q = nearest_int(iscale * v) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * f32::from(l_out[i]);
        best_mse += qw[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        // Stored as uint8_t in C (a negative l wraps, and the later passes read the wrapped
        // value), but these sums use the int.
        let l = nearest_int(iscale * x[i]).min(nmax);
        l_out[i] = l as u8;
        let w = qw[i];
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = qw[i];
            let old = f32::from(l_out[i]);
            let mut slx = sumlx - w * x[i] * old;
            let mut sl2 = suml2 - w * old * old;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != i32::from(l_out[i]) {
                    let nf = new_l as f32;
                    slx += w * x[i] * nf;
                    sl2 += w * nf * nf;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) from Q4_K/Q5_K's
/// 12 packed bytes.
#[inline]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even_and_never_leaves_its_range() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(-7.49), -7);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
        // What the C computes for inputs outside its domain.
        assert_eq!(nearest_int(f32::NAN), 0);
        assert_eq!(nearest_int(f32::INFINITY), -0x40_0000);
        for v in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -f32::MAX,
            1e30,
            -1e30,
            1e7,
            -3e7,
        ] {
            let l = nearest_int(v);
            assert!((-0x40_0000..0x40_0000).contains(&l), "{v} -> {l}");
        }
    }

    #[test]
    fn c_min_max_return_the_second_operand_for_nan() {
        assert_eq!(c_min(1.0, 2.0), 1.0);
        assert_eq!(c_max(1.0, 2.0), 2.0);
        assert_eq!(c_min(f32::NAN, 2.0), 2.0);
        assert_eq!(c_max(f32::NAN, 2.0), 2.0);
        assert!(c_min(2.0, f32::NAN).is_nan());
        assert!(c_max(2.0, f32::NAN).is_nan());
    }

    /// Deterministic f32 bit patterns (xorshift), positive.
    fn random_bits(n: usize) -> impl Iterator<Item = f32> {
        let mut s = 0x1234_5678u32;
        (0..n).map(move |_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            f32::from_bits(s & 0x7fff_ffff)
        })
    }

    /// Edge cases for the soft `libm` functions; the tests try each with both signs.
    const SPECIAL: [f32; 15] = [
        0.0,
        0.25,
        0.3,
        0.499_999_97,
        0.5,
        1.0,
        1.5,
        2.0,
        2.5,
        8_388_607.5,
        8_388_608.0,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-45,
        f32::INFINITY,
    ];

    /// Check `soft` against `std` on the special values, random bit patterns and every `step`th
    /// f32 in `[1, 4)` (both exponent parities), each with both signs, and on NaN.
    fn check_soft(soft: fn(f32) -> f32, std: fn(f32) -> f32, step: usize) {
        let check = |x: f32| {
            for x in [x, -x] {
                let (a, b) = (soft(x), std(x));
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{x:e}: {a:e} vs {b:e}"
                );
            }
        };
        SPECIAL.into_iter().for_each(check);
        check(f32::NAN);
        random_bits(200_000).for_each(check);
        for bits in (0x3f80_0000u32..0x4080_0000).step_by(step) {
            check(f32::from_bits(bits));
        }
    }

    #[test]
    fn soft_sqrt_is_correctly_rounded() {
        check_soft(soft_sqrtf, f32::sqrt, 7);
    }

    #[test]
    fn soft_round_rounds_half_away_from_zero() {
        check_soft(soft_roundf, f32::round, 5);
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

    /// `make_qkx_quants` with the grids ggml's Q4_1 (`V = 3`, `x^2` weights) and Q2_K
    /// (`V = 2`, unit weights) searches use: `(scale, the_min, quants)`.
    fn qkx<const V: u8>(x: &[f32; 32]) -> (f32, f32, [u8; 32]) {
        let (mut l, mut laux, mut the_min) = ([0u8; 32], [0u8; 32], 0.0);
        let (weights, rmin, rdelta, nstep, use_mad) = if V == 3 {
            (None, -0.9, 0.05, 36, false)
        } else {
            (Some(&[1.0; 32][..]), -0.5, 0.1, 15, true)
        };
        let scale = make_qkx_quants::<V>(
            15,
            x,
            weights,
            &mut l,
            &mut the_min,
            &mut laux,
            rmin,
            rdelta,
            nstep,
            use_mad,
        );
        (scale, the_min, l)
    }

    #[test]
    fn make_qkx_quants_handle_constant_and_positive_groups() {
        let constant = [-2.0; 32];
        assert_eq!(qkx::<3>(&constant), (0.0, 2.0, [0; 32]));
        assert_eq!(qkx::<2>(&constant), (0.0, 2.0, [0; 32]));
        let x: [f32; 32] = core::array::from_fn(|i| 1.0 + i as f32);
        for (scale, the_min, l) in [qkx::<2>(&x), qkx::<3>(&x)] {
            for (li, xi) in l.iter().zip(x) {
                assert!(
                    (scale * f32::from(*li) - the_min - xi).abs() <= 2.5,
                    "{scale} {the_min}"
                );
            }
        }
    }

    #[test]
    fn scale_min_k4_unpacks_six_bit_fields() {
        let q = [0xc1, 2, 3, 4, 0x45, 6, 7, 8, 0x9a, 0, 0, 0];
        assert_eq!(get_scale_min_k4(0, &q), (1, 5));
        assert_eq!(get_scale_min_k4(4, &q), (0x3a, 0x19));
    }
}
