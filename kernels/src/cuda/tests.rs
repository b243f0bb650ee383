//! Every CUDA kernel against a reference computed here on the CPU (issue #21). They run on the
//! emulator (`Gpu::emulated`, the `cuda-emulator` feature) in the test suite, and on a real GPU
//! with `SINTRA_TEST_GPU=cuda` (`scripts/gpu-check.sh`): the same tests, the same tolerances.

use super::*;
use formats::quant::{self, fp16_bits_to_fp32 as f16_to_f32, fp32_to_fp16_bits as f32_to_f16};

fn gpu() -> Gpu {
    match std::env::var("SINTRA_TEST_GPU").as_deref() {
        Ok("cuda") => Gpu::open().unwrap_or_else(|e| panic!("SINTRA_TEST_GPU=cuda: {e}")),
        _ => Gpu::emulated(),
    }
}

/// A small deterministic generator (xorshift64*), values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        v as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

fn read(g: &Gpu, b: &DeviceBuf<f32>) -> Vec<f32> {
    let mut out = vec![0.0; b.len()];
    g.read(b, 0, &mut out).unwrap();
    out
}

/// `|got - want| <= tol * scale` for each value, or a panic naming the first that is not.
fn close(what: &str, got: &[f32], want: &[f64], scale: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * s.max(1e-30),
            "{what}: value {i} is {g}, expected {w} (tolerance {tol} x {s})"
        );
    }
}

/// A weight matrix of type `ty` (random values, quantized by `formats`) and its dequantized
/// values.
fn matrix(ty: GgmlType, n_in: usize, n_out: usize, rng: &mut Rng) -> (Vec<u8>, Vec<f32>) {
    let w = rng.vec(n_in * n_out);
    let bytes = match ty {
        GgmlType::F32 => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => quant::quantize(ty, &w, n_in, None).unwrap(),
    };
    let deq = quant::dequantize(ty, &bytes).unwrap();
    (bytes, deq)
}

#[test]
fn every_weight_type_dequantizes_and_multiplies_as_the_reference() {
    let g = gpu();
    let mut rng = Rng(0x5eed);
    // 13 rows: not a multiple of the 4 rows a block takes; 512 values: two K super-blocks.
    let (n_in, n_out) = (512, 13);
    for ty in GgmlType::ALL.iter().copied().filter(|&t| supported(t)) {
        let (bytes, deq) = matrix(ty, n_in, n_out, &mut rng);
        let m = g.upload_matrix(ty, &bytes, n_in, n_out).unwrap();

        // Row lookup: the reference dequantizer's values (f32 arithmetic both sides; a GPU may
        // fuse a multiply-add, hence the relative tolerance of a few ulps).
        let rows = [3i32, 0, 12];
        let ids = g.upload(&rows).unwrap();
        let out = g.zeros::<f32>(rows.len() * n_in).unwrap();
        g.get_rows(&m, ids.all(), out.all()).unwrap();
        let want: Vec<f64> = rows
            .iter()
            .flat_map(|&r| &deq[r as usize * n_in..(r as usize + 1) * n_in])
            .map(|&v| v as f64)
            .collect();
        let scale: Vec<f64> = want.iter().map(|v| v.abs().max(1e-3)).collect();
        close(
            &format!("get_rows {ty}"),
            &read(&g, &out),
            &want,
            &scale,
            1e-6,
        );

        // Products with 1 token (the matrix-vector kernel), 3 (one partial tile of the tiled
        // kernel) and 11 (a whole tile and a partial one).
        for n_tok in [1, 3, 11] {
            let x = rng.vec(n_tok * n_in);
            let xd = g.upload(&x).unwrap();
            let y = g.zeros::<f32>(n_tok * n_out).unwrap();
            g.matmul(&m, xd.all(), y.all(), n_tok).unwrap();
            let (mut want, mut scale) = (Vec::new(), Vec::new());
            for t in 0..n_tok {
                for r in 0..n_out {
                    let (w, xr) = (&deq[r * n_in..(r + 1) * n_in], &x[t * n_in..(t + 1) * n_in]);
                    want.push(w.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum());
                    scale.push(
                        w.iter()
                            .zip(xr)
                            .map(|(&a, &b)| (a as f64 * b as f64).abs())
                            .sum(),
                    );
                }
            }
            close(
                &format!("matmul {ty} x {n_tok}"),
                &read(&g, &y),
                &want,
                &scale,
                1e-5,
            );
        }
    }
}

#[test]
fn activations_are_rounded_as_the_cpu_kernels_quantize_them() {
    let g = gpu();
    let mut rng = Rng(3);
    let n = 512;
    let x: Vec<f32> = rng
        .vec(n)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1 + i % 7) as f32)
        .collect();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q4_K,
        GgmlType::F16,
    ] {
        let (xd, out) = (g.upload(&x).unwrap(), g.zeros::<f32>(n).unwrap());
        assert!(g.round_activations(ty, xd.all(), out.all()).unwrap());
        // The CPU kernels' quantized activation, read back as values.
        let mut bytes = vec![0u8; crate::activation_bytes(ty, n).unwrap()];
        crate::quantize_activation(ty, &x, &mut bytes).unwrap();
        let want: Vec<f64> = match crate::vec_dot_type(ty) {
            GgmlType::Q8_K => bytes
                .chunks_exact(292) // f32 d, 256 i8, 16 i16 sums
                .flat_map(|b| {
                    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    b[4..260].iter().map(move |&q| (q as i8) as f64 * d as f64)
                })
                .collect(),
            t => quant::dequantize(t, &bytes)
                .unwrap()
                .iter()
                .map(|&v| v as f64)
                .collect(),
        };
        let scale: Vec<f64> = want.iter().map(|v| v.abs().max(1e-2)).collect();
        close(
            &format!("activations for {ty}"),
            &read(&g, &out),
            &want,
            &scale,
            1e-6,
        );
    }
    let (xd, out) = (g.upload(&x).unwrap(), g.zeros::<f32>(n).unwrap());
    assert!(!g
        .round_activations(GgmlType::F32, xd.all(), out.all())
        .unwrap());
}

#[test]
fn a_matrix_of_the_wrong_size_or_type_is_refused_before_any_launch() {
    let g = gpu();
    let e = g
        .upload_matrix(GgmlType::Q4_0, &[0u8; 17], 32, 1)
        .unwrap_err();
    assert!(e.to_string().contains("17 bytes, expected 18"), "{e}");
    let e = g
        .upload_matrix(GgmlType::Q2_K, &[0u8; 84], 256, 1)
        .unwrap_err();
    assert!(e.to_string().contains("no GPU kernel for Q2_K"), "{e}");
    let m = g
        .upload_matrix(GgmlType::Q8_0, &[0u8; 34 * 2], 32, 2)
        .unwrap();
    let (x, y) = (g.zeros::<f32>(32).unwrap(), g.zeros::<f32>(1).unwrap());
    let e = g.matmul(&m, x.all(), y.all(), 1).unwrap_err();
    assert!(
        e.to_string().contains("matmul output: 2 values needed"),
        "{e}"
    );
    // Row ids live on the device: one outside the matrix reads nothing and gives zeros.
    let ones = quant::quantize(GgmlType::Q8_0, &[1.0; 64], 32, None).unwrap();
    let m = g.upload_matrix(GgmlType::Q8_0, &ones, 32, 2).unwrap();
    let (ids, out) = (
        g.upload(&[1i32, 7, -1]).unwrap(),
        g.zeros::<f32>(96).unwrap(),
    );
    g.get_rows(&m, ids.all(), out.all()).unwrap();
    let got = read(&g, &out);
    assert!(
        got[..32].iter().all(|&v| (v - 1.0).abs() < 1e-3),
        "{:?}",
        &got[..32]
    ); // (f16 scale)
    assert!(got[32..].iter().all(|&v| v == 0.0), "{:?}", &got[32..]);
}

#[test]
fn norms_rope_activations_and_elementwise_steps_match_the_reference() {
    let g = gpu();
    let mut rng = Rng(7);
    let (rows, n, eps) = (5, 320, 1e-5f32);
    let x = rng.vec(rows * n);
    let w = rng.vec(n);
    let (xd, wd, out) = (
        g.upload(&x).unwrap(),
        g.upload(&w).unwrap(),
        g.zeros::<f32>(rows * n).unwrap(),
    );
    g.rmsnorm(out.all(), xd.all(), wd.all(), rows, eps).unwrap();
    let mut want = Vec::new();
    for r in x.chunks(n) {
        let ms = r.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
        let s = 1.0 / (ms + eps as f64).sqrt();
        want.extend(r.iter().zip(&w).map(|(&v, &w)| v as f64 * s * w as f64));
    }
    let scale: Vec<f64> = want.iter().map(|v| v.abs().max(1e-3)).collect();
    close("rmsnorm", &read(&g, &out), &want, &scale, 1e-5);
    // In place, rows of one head (the per-head Q/K norms).
    g.rmsnorm(
        xd.all(),
        xd.all(),
        wd.at(0..64).unwrap(),
        rows * n / 64,
        eps,
    )
    .unwrap();
    let got = read(&g, &xd);
    for (h, head) in x.chunks(64).enumerate() {
        let ms = head.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / 64.0;
        let s = 1.0 / (ms + eps as f64).sqrt();
        let want: Vec<f64> = head
            .iter()
            .zip(&w)
            .map(|(&v, &w)| v as f64 * s * w as f64)
            .collect();
        let scale: Vec<f64> = want.iter().map(|v| v.abs().max(1e-3)).collect();
        close(
            "rmsnorm per head",
            &got[h * 64..(h + 1) * 64],
            &want,
            &scale,
            1e-5,
        );
    }

    // RoPE, both pairings, on a rotated part shorter than the head (rope_dim 32 of 64).
    let (n_tok, n_head, hd, rd) = (3, 2, 64, 32);
    for neox in [false, true] {
        let v = rng.vec(n_tok * n_head * hd);
        let cache: Vec<f32> = (0..n_tok * rd / 2)
            .flat_map(|i| {
                let t = i as f32 * 0.37;
                [t.cos(), t.sin()]
            })
            .collect();
        let (vd, cd) = (g.upload(&v).unwrap(), g.upload(&cache).unwrap());
        g.rope(vd.all(), cd.all(), n_tok, n_head, hd, rd, neox)
            .unwrap();
        let mut want: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        for t in 0..n_tok {
            for h in 0..n_head {
                let base = (t * n_head + h) * hd;
                for p in 0..rd / 2 {
                    let (a, b) = if neox {
                        (p, p + rd / 2)
                    } else {
                        (2 * p, 2 * p + 1)
                    };
                    let (c, s) = (
                        cache[t * rd + 2 * p] as f64,
                        cache[t * rd + 2 * p + 1] as f64,
                    );
                    let (x0, x1) = (v[base + a] as f64, v[base + b] as f64);
                    want[base + a] = x0 * c - x1 * s;
                    want[base + b] = x0 * s + x1 * c;
                }
            }
        }
        let scale = vec![1.0; want.len()];
        close(
            &format!("rope neox={neox}"),
            &read(&g, &vd),
            &want,
            &scale,
            1e-6,
        );
    }

    // SiLU- and GELU-gated products, and the element-wise steps.
    let gate: Vec<f32> = rng.vec(300).iter().map(|v| v * 12.0).collect();
    let up = rng.vec(300);
    for gelu in [false, true] {
        let (gd, ud) = (g.upload(&gate).unwrap(), g.upload(&up).unwrap());
        g.glu(gd.all(), ud.all(), gelu).unwrap();
        let want: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&x, &u)| {
                let act = if !gelu {
                    x as f64 / (1.0 + (-x as f64).exp())
                } else if x <= -10.0 {
                    0.0
                } else if x >= 10.0 {
                    x as f64
                } else {
                    // ggml's table: GELU of the gate rounded to f16, rounded to f16.
                    let h = f16_to_f32(f32_to_f16(x)) as f64;
                    let g =
                        0.5 * h * (1.0 + (0.797_884_560_8 * h * (1.0 + 0.044715 * h * h)).tanh());
                    f16_to_f32(f32_to_f16(g as f32)) as f64
                };
                act * u as f64
            })
            .collect();
        let scale: Vec<f64> = want.iter().map(|v| v.abs().max(1e-2)).collect();
        // GELU saturates to x past |x| >= 10 (ggml's cut-off), within 1e-5 of the tanh form.
        close(
            &format!("glu gelu={gelu}"),
            &read(&g, &gd),
            &want,
            &scale,
            2e-5,
        );
    }
    let (a, b) = (rng.vec(100), rng.vec(100));
    let (ad, bd) = (g.upload(&a).unwrap(), g.upload(&b).unwrap());
    g.add(ad.all(), bd.all()).unwrap();
    g.add_bias(ad.all(), bd.at(0..20).unwrap()).unwrap();
    g.scale(ad.all(), 0.5).unwrap();
    g.softcap(ad.all(), 0.8).unwrap();
    let want: Vec<f64> = (0..100)
        .map(|i| {
            let v = ((a[i] + b[i]) + b[i % 20]) * 0.5;
            (v as f64 / 0.8).tanh() * 0.8
        })
        .collect();
    close(
        "add, add_bias, scale, softcap",
        &read(&g, &ad),
        &want,
        &vec![1.0; 100],
        1e-6,
    );
}

#[test]
fn attention_over_the_f16_cache_is_a_causal_softmax_of_its_keys() {
    let g = gpu();
    let mut rng = Rng(99);
    // 4 query heads of 64 sharing 2 key/value heads, in layer 1 of a cache of 40 positions;
    // 7 tokens at positions 5..12 after 5 cached ones; with and without a window of 4.
    let (n_head, n_kv, hd, n_ctx) = (4, 2, 64, 40);
    let kv_dim = n_kv * hd;
    let (layer, pos0, n_tok) = (1, 5, 7);
    for window in [None, Some(4)] {
        let kc = g.zeros::<u16>(2 * n_ctx * kv_dim).unwrap();
        let vc = g.zeros::<u16>(2 * n_ctx * kv_dim).unwrap();
        let keys = rng.vec((pos0 + n_tok) * kv_dim);
        let values = rng.vec((pos0 + n_tok) * kv_dim);
        // The cached past, then the batch's own keys and values.
        for (first, count) in [(0, pos0), (pos0, n_tok)] {
            let r = first * kv_dim..(first + count) * kv_dim;
            let (k, v) = (
                g.upload(&keys[r.clone()]).unwrap(),
                g.upload(&values[r]).unwrap(),
            );
            let row0 = layer * n_ctx + first;
            g.kv_store(
                k.all(),
                v.all(),
                kc.all(),
                vc.all(),
                count,
                kv_dim,
                row0,
                kv_dim,
            )
            .unwrap();
        }
        let q: Vec<f32> = rng
            .vec(n_tok * n_head * hd)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let (qd, out) = (
            g.upload(&q).unwrap(),
            g.zeros::<f32>(n_tok * n_head * hd).unwrap(),
        );
        let a = Attention {
            n_tok,
            pos0,
            n_head,
            n_head_kv: n_kv,
            head_dim: hd,
            kv_dim,
            layer_row0: layer * n_ctx,
            kq_scale: 0.125,
            window,
        };
        g.attention(&a, qd.all(), kc.all(), vc.all(), out.all())
            .unwrap();

        let r16 = |x: f32| f16_to_f32(f32_to_f16(x)) as f64;
        let mut want = Vec::new();
        for t in 0..n_tok {
            let pos = pos0 + t;
            let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..n_head {
                let qh: Vec<f64> = q[(t * n_head + h) * hd..][..hd]
                    .iter()
                    .map(|&x| r16(x))
                    .collect();
                let kvh = (h / (n_head / n_kv)) * hd;
                let scores: Vec<f64> = (first..=pos)
                    .map(|p| {
                        let k = &keys[p * kv_dim + kvh..][..hd];
                        0.125 * qh.iter().zip(k).map(|(&a, &b)| a * r16(b)).sum::<f64>()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let v: f64 = (first..=pos)
                        .zip(&e)
                        .map(|(p, &w)| w * r16(values[p * kv_dim + kvh + d]))
                        .sum();
                    want.push(v / sum);
                }
            }
        }
        let scale = vec![1.0; want.len()];
        close(
            &format!("attention window={window:?}"),
            &read(&g, &out),
            &want,
            &scale,
            1e-5,
        );
        // The cache holds the keys rounded to f16, in the layer's rows.
        let mut cached = vec![0u16; 2 * n_ctx * kv_dim];
        match &kc.mem {
            Mem::Host(words, _) => {
                let bytes: &[u8] = bytemuck::cast_slice(words);
                for (c, b) in cached.iter_mut().zip(bytes.chunks_exact(2)) {
                    *c = u16::from_le_bytes([b[0], b[1]]);
                }
                let at = (layer * n_ctx + 3) * kv_dim + 17;
                assert_eq!(cached[at], f32_to_f16(keys[3 * kv_dim + 17]));
                assert_eq!(cached[n_ctx * kv_dim - 1], 0, "layer 0 untouched");
            }
            Mem::Cuda(_) => {} // (checked through the attention above)
        }
    }
}
