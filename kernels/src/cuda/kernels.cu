/* sintra-rt's CUDA kernels (issue #21): the forward pass of runtime/src/model/llama/gpu.rs.
 * Compiled to PTX at build time by NVRTC (kernels/build.rs), one text per architecture, after
 * dequant.cuh; every entry point is extern "C" so the runtime finds it by name.
 *
 * Layouts: activations are f32, token-major (row t of a [n_tok, width] buffer at t * width);
 * weight matrices are the GGUF file's rows (n_out rows of row_bytes); the KV cache is f16 bits,
 * (layer, n_ctx, kv_dim) as on the CPU. */

#define WARP 32
#define NEG_INF __int_as_float(0xff800000)

/* Butterfly reductions over a warp: every lane ends with the warp's sum (max). The emulator
 * computes the same butterfly, lane by lane, in one exchange instead of five. */
__device__ __forceinline__ float warp_sum(float v) {
#ifdef SINTRA_EMULATOR
    return emu::warp_butterfly(v, false);
#else
    for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
#endif
}

__device__ __forceinline__ float warp_max(float v) {
#ifdef SINTRA_EMULATOR
    return emu::warp_butterfly(v, true);
#else
    for (int o = WARP / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
#endif
}

__device__ __forceinline__ unsigned short f32_to_f16_bits(float f) {
#ifdef SINTRA_EMULATOR
    return sintra_f32_to_f16(f);
#else
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

/* ---- matrix products: fused dequantize and multiply ---------------------------------------
 * One warp a weight row, four rows a block. Each lane takes 32-value chunks of the row in turn
 * (lane, lane + 32, ...), dequantizes a chunk once into registers and multiplies it with the
 * same 32 inputs of NT token rows; the lanes' sums are reduced at the end. Decoding runs NT = 1
 * (a matrix-vector product); prompts run NT = 8, so that a weight chunk read from memory serves
 * eight tokens (the tiled product). y = [n_tok, n_out]. */
template <void (*DEQUANT)(const unsigned char *, int, float *), int NT>
__device__ __forceinline__ void matmul_rows(const unsigned char *w, int row_bytes, const float *x,
                                            float *y, int n_in, int n_out, int n_tok) {
    int row = blockIdx.x * blockDim.y + threadIdx.y;
    int lane = threadIdx.x;
    int t0 = blockIdx.y * NT;
    if (row >= n_out) return;
    const unsigned char *wr = w + (size_t)row * row_bytes;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    int n_chunks = n_in / 32;
    for (int c = lane; c < n_chunks; c += WARP) {
        float wv[32];
        DEQUANT(wr, c, wv);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t0 + t < n_tok) {
                const float4 *xv = (const float4 *)(x + (size_t)(t0 + t) * n_in + 32 * c);
                float s = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float4 a = xv[j];
                    s = fmaf(wv[4 * j], a.x, s);
                    s = fmaf(wv[4 * j + 1], a.y, s);
                    s = fmaf(wv[4 * j + 2], a.z, s);
                    s = fmaf(wv[4 * j + 3], a.w, s);
                }
                acc[t] += s;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float s = warp_sum(acc[t]);
        if (lane == 0 && t0 + t < n_tok) y[(size_t)(t0 + t) * n_out + row] = s;
    }
}

#define SINTRA_MATMUL(type)                                                                      \
    extern "C" __global__ void matvec_##type(const unsigned char *w, int row_bytes,             \
                                             const float *x, float *y, int n_in, int n_out,     \
                                             int n_tok) {                                       \
        matmul_rows<sintra_dequant_##type, 1>(w, row_bytes, x, y, n_in, n_out, n_tok);           \
    }                                                                                            \
    extern "C" __global__ void matmul_##type(const unsigned char *w, int row_bytes,             \
                                             const float *x, float *y, int n_in, int n_out,     \
                                             int n_tok) {                                       \
        matmul_rows<sintra_dequant_##type, 8>(w, row_bytes, x, y, n_in, n_out, n_tok);           \
    }

SINTRA_MATMUL(f32)
SINTRA_MATMUL(f16)
SINTRA_MATMUL(q4_0)
SINTRA_MATMUL(q4_1)
SINTRA_MATMUL(q5_0)
SINTRA_MATMUL(q5_1)
SINTRA_MATMUL(q8_0)
SINTRA_MATMUL(iq4_nl)
SINTRA_MATMUL(q4_k)
SINTRA_MATMUL(q5_k)
SINTRA_MATMUL(q6_k)

/* Activations rounded as the CPU kernels quantize them before a product with a weight type
 * (its vec_dot type), so that both multiply the same activation values: kind 0 is Q8_0 / Q8_1
 * (blocks of 32, scale amax / 127 kept as f16, nearest even), 1 is Q8_K (blocks of 256, scale
 * -127 / the value of largest magnitude, in f32), 2 is f16. Without it the GPU's products of
 * f32 activations differ from the CPU's by the activations' 8-bit rounding: a KL divergence of
 * 0.003 on SmolLM2 Q8_0, 30 times the rest of the difference. One thread a block. */
extern "C" __global__ void round_activations(const float *x, float *out, int n, int kind) {
    int len = kind == 1 ? 256 : kind == 2 ? 1 : 32;
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if ((long long)b * len >= n) return;
    const float *xb = x + (size_t)b * len;
    float *ob = out + (size_t)b * len;
    if (kind == 2) {
        ob[0] = sintra_f16(f32_to_f16_bits(xb[0]));
        return;
    }
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < len; j++) {
        float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (kind == 0) {
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        float dh = sintra_f16(f32_to_f16_bits(d));
        for (int j = 0; j < len; j++) ob[j] = rintf(xb[j] * id) * dh;
    } else if (amax == 0.0f) {
        for (int j = 0; j < len; j++) ob[j] = 0.0f;
    } else {
        float iscale = -127.0f / max, d = 1.0f / iscale;
        for (int j = 0; j < len; j++) {
            float q = rintf(iscale * xb[j]);
            ob[j] = (q > 127.0f ? 127.0f : q) * d;
        }
    }
}

/* Dequantize rows (the embedding lookup and the kernel tests): out = [n_rows, n_in] for the
 * rows listed in `rows`; a listed row outside 0..n_out gives zeros (the ids are on the device,
 * where the host cannot check them before the launch). One block a row, one thread a chunk. */
#define SINTRA_GET_ROWS(type)                                                                    \
    extern "C" __global__ void get_rows_##type(const unsigned char *w, int row_bytes,           \
                                               const int *rows, float *out, int n_in,           \
                                               int n_out) {                                     \
        int r = rows[blockIdx.x];                                                               \
        const unsigned char *wr = w + (size_t)(r >= 0 && r < n_out ? r : 0) * row_bytes;        \
        for (int c = threadIdx.x; c < n_in / 32; c += blockDim.x) {                             \
            float v[32];                                                                        \
            sintra_dequant_##type(wr, c, v);                                                    \
            for (int j = 0; j < 32; j++)                                                        \
                out[(size_t)blockIdx.x * n_in + 32 * c + j] = r >= 0 && r < n_out ? v[j] : 0.0f; \
        }                                                                                        \
    }

SINTRA_GET_ROWS(f32)
SINTRA_GET_ROWS(f16)
SINTRA_GET_ROWS(q4_0)
SINTRA_GET_ROWS(q4_1)
SINTRA_GET_ROWS(q5_0)
SINTRA_GET_ROWS(q5_1)
SINTRA_GET_ROWS(q8_0)
SINTRA_GET_ROWS(iq4_nl)
SINTRA_GET_ROWS(q4_k)
SINTRA_GET_ROWS(q5_k)
SINTRA_GET_ROWS(q6_k)

/* ---- per-row steps ------------------------------------------------------------------------ */

/* RMSNorm of each row of x (n values; one block of 256 threads a row) into out (which may be
 * x): x / sqrt(mean(x^2) + eps) * w. Per-head Q/K norms run it with rows = heads. */
extern "C" __global__ void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    __shared__ float partial[WARP];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s = fmaf(xr[i], xr[i], s);
    s = warp_sum(s);
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (lane == 0) partial[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < (int)(blockDim.x / WARP) ? partial[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) partial[0] = s;
    }
    __syncthreads();
    float scale = rsqrtf(partial[0] / n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * scale * w[i];
}

/* x[i] += d[i]. */
extern "C" __global__ void add(float *x, const float *d, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += d[i];
}

/* x[i] += b[i % width] (Q/K/V biases over token rows). */
extern "C" __global__ void add_bias(float *x, const float *b, int n, int width) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += b[i % width];
}

/* x[i] *= s. */
extern "C" __global__ void scale(float *x, float s, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

/* x = cap * tanh(x / cap) (gemma's final logit soft-cap). */
extern "C" __global__ void softcap(float *x, float cap, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = tanhf(x[i] * (1.0f / cap)) * cap;
}

/* gate = silu(gate) * up. */
extern "C" __global__ void swiglu(float *gate, const float *up, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* gate = gelu(gate) * up as ggml's CPU backend computes it (the CPU path's `geglu`): 0 at or
 * below -10, the gate itself at or above 10, otherwise GELU's tanh form at the gate rounded to
 * f16, rounded to f16 (ggml looks it up in a table of halves). */
extern "C" __global__ void geglu(float *gate, const float *up, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = gate[i], g;
        if (x <= -10.0f) {
            g = 0.0f;
        } else if (x >= 10.0f) {
            g = x;
        } else {
            float h = sintra_f16(f32_to_f16_bits(x));
            float t = tanhf(0.7978845608f * h * fmaf(0.044715f * h, h, 1.0f));
            g = sintra_f16(f32_to_f16_bits(0.5f * h * (1.0f + t)));
        }
        gate[i] = g * up[i];
    }
}

/* RoPE on the first rope_dim values of each head of each token row of v ([n_tok, n_head *
 * head_dim]); cache holds each row's (cos, sin) pairs ([n_tok, rope_dim]). neox pairs value i
 * with i + rope_dim / 2; otherwise adjacent values. The CPU's roundings (fmaf). One thread a
 * pair. */
extern "C" __global__ void rope(float *v, const float *cache, int n_tok, int n_head,
                                int head_dim, int rope_dim, int neox) {
    int half = rope_dim / 2;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_tok * n_head * half) return;
    int p = i % half, head = (i / half) % n_head, t = i / (half * n_head);
    float *h = v + ((size_t)t * n_head + head) * head_dim;
    const float *cs = cache + (size_t)t * rope_dim + 2 * p;
    int a = neox ? p : 2 * p, b = neox ? p + half : 2 * p + 1;
    float x0 = h[a], x1 = h[b];
    h[a] = fmaf(x0, cs[0], -(x1 * cs[1]));
    h[b] = fmaf(x0, cs[1], x1 * cs[0]);
}

/* Cache the keys and values of n_tok tokens (rows of width values) as f16 at cache rows
 * row0, row0 + 1, ... (rows of kv_dim; row0 counts rows from the cache's start). */
extern "C" __global__ void kv_store(const float *k, const float *v, unsigned short *kc,
                                    unsigned short *vc, int n_tok, int width, long long row0,
                                    int kv_dim) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_tok * width) return;
    int t = i / width, d = i % width;
    size_t at = (size_t)(row0 + t) * kv_dim + d;
    kc[at] = f32_to_f16_bits(k[i]);
    vc[at] = f32_to_f16_bits(v[i]);
}

/* ---- attention ----------------------------------------------------------------------------
 * Causal attention over the f16 cache, one block (ATT_WARPS warps) per (query head, token).
 * Token t (position pos0 + t) sees positions first..=pos0 + t, first = 0 or the start of its
 * sliding window. Each warp takes every ATT_WARPS-th position with an online softmax (running
 * max, sum and value accumulator; each lane holds head_dim / 32 of the head's values); the
 * warps' partial results are merged at the end. The query is rounded to f16 first, as the CPU
 * path does. head_dim <= 256 and a multiple of 32. */
#define ATT_WARPS 4
#define ATT_MAX_PER_LANE 8

extern "C" __global__ void attention(const float *q, const unsigned short *kc,
                                     const unsigned short *vc, float *out, int pos0, int n_head,
                                     int n_head_kv, int head_dim, int kv_dim, long long layer_row0,
                                     float kq_scale, int window) {
    __shared__ float s_m[ATT_WARPS], s_l[ATT_WARPS];
    __shared__ float s_acc[ATT_WARPS][WARP * ATT_MAX_PER_LANE];
    int head = blockIdx.x, t = blockIdx.y;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    int per_lane = head_dim / WARP;
    int group = n_head / n_head_kv;
    int pos = pos0 + t;
    int first = window > 0 && pos + 1 > window ? pos + 1 - window : 0;
    const float *qh = q + ((size_t)t * n_head + head) * head_dim;
    size_t kv_off = (size_t)(head / group) * head_dim;
    float qv[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
    for (int i = 0; i < per_lane; i++) {
        qv[i] = sintra_f16(f32_to_f16_bits(qh[lane + WARP * i]));
        acc[i] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (int p = first + warp; p <= pos; p += ATT_WARPS) {
        size_t at = (size_t)(layer_row0 + p) * kv_dim + kv_off;
        float s = 0.0f;
        for (int i = 0; i < per_lane; i++) s = fmaf(qv[i], sintra_f16(kc[at + lane + WARP * i]), s);
        s = warp_sum(s) * kq_scale;
        float m_new = fmaxf(m, s);
        float a = expf(m - m_new), e = expf(s - m_new);
        l = l * a + e;
        for (int i = 0; i < per_lane; i++)
            acc[i] = fmaf(acc[i], a, e * sintra_f16(vc[at + lane + WARP * i]));
        m = m_new;
    }
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
    for (int i = 0; i < per_lane; i++) s_acc[warp][lane + WARP * i] = acc[i];
    __syncthreads();
    if (warp == 0) {
        float mm = NEG_INF;
        for (int w = 0; w < ATT_WARPS; w++) mm = fmaxf(mm, s_m[w]);
        float ll = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (s_l[w] > 0.0f) ll += s_l[w] * expf(s_m[w] - mm);
        float *o = out + ((size_t)t * n_head + head) * head_dim;
        for (int i = 0; i < per_lane; i++) {
            float v = 0.0f;
            for (int w = 0; w < ATT_WARPS; w++)
                if (s_l[w] > 0.0f) v += s_acc[w][lane + WARP * i] * expf(s_m[w] - mm);
            o[lane + WARP * i] = v / ll;
        }
    }
}
