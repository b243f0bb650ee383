/* Weight blocks to f32, 32 values at a time: the GPU kernels' half of ggml's block layouts
 * (formats::quant owns them; the files under formats/src/quant document each). Plain C, so that the test suite
 * compiles this same file for the CPU and holds every function to formats' dequantizers
 * (tests/tests/cuda.rs); the device build defines SINTRA_DEVICE and sintra_f16 first.
 *
 * `sintra_dequant_<type>(row, chunk, y)` writes values 32*chunk .. 32*chunk+31 of a row that
 * starts at `row`. For 32-value blocks a chunk is a block; for the 256-value K super-blocks it
 * is one of the eight 32-value sub-blocks, each with its own scale. */

#ifndef SINTRA_DEVICE
#define SINTRA_DEVICE static inline
#endif

SINTRA_DEVICE float sintra_f16_at(const unsigned char *p) {
    return sintra_f16((unsigned short)(p[0] | (p[1] << 8)));
}

/* Q4_0: d (f16), 16 bytes of nibbles; low nibbles are values 0..15, high ones 16..31. 18 bytes. */
SINTRA_DEVICE void sintra_dequant_q4_0(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 18 * chunk;
    float d = sintra_f16_at(b);
    for (int j = 0; j < 16; j++) {
        y[j] = ((b[2 + j] & 0xF) - 8) * d;
        y[j + 16] = ((b[2 + j] >> 4) - 8) * d;
    }
}

/* Q4_1: d, m (f16), 16 bytes of nibbles: q * d + m. 20 bytes. */
SINTRA_DEVICE void sintra_dequant_q4_1(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 20 * chunk;
    float d = sintra_f16_at(b), m = sintra_f16_at(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = (b[4 + j] & 0xF) * d + m;
        y[j + 16] = (b[4 + j] >> 4) * d + m;
    }
}

/* Q5_0: d (f16), the fifth bits (u32, value j's at bit j), 16 bytes of nibbles; minus 16. 22 bytes. */
SINTRA_DEVICE void sintra_dequant_q5_0(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 22 * chunk;
    float d = sintra_f16_at(b);
    unsigned int qh = b[2] | (b[3] << 8) | (b[4] << 16) | ((unsigned int)b[5] << 24);
    for (int j = 0; j < 16; j++) {
        int x0 = (b[6 + j] & 0xF) | (((qh >> j) << 4) & 0x10);
        int x1 = (b[6 + j] >> 4) | ((qh >> (j + 12)) & 0x10);
        y[j] = (x0 - 16) * d;
        y[j + 16] = (x1 - 16) * d;
    }
}

/* Q5_1: d, m (f16), the fifth bits, 16 bytes of nibbles: q * d + m. 24 bytes. */
SINTRA_DEVICE void sintra_dequant_q5_1(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 24 * chunk;
    float d = sintra_f16_at(b), m = sintra_f16_at(b + 2);
    unsigned int qh = b[4] | (b[5] << 8) | (b[6] << 16) | ((unsigned int)b[7] << 24);
    for (int j = 0; j < 16; j++) {
        int x0 = (b[8 + j] & 0xF) | (((qh >> j) << 4) & 0x10);
        int x1 = (b[8 + j] >> 4) | ((qh >> (j + 12)) & 0x10);
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
}

/* Q8_0: d (f16), 32 signed bytes. 34 bytes. */
SINTRA_DEVICE void sintra_dequant_q8_0(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 34 * chunk;
    float d = sintra_f16_at(b);
    for (int j = 0; j < 32; j++) {
        y[j] = (signed char)b[2 + j] * d;
    }
}

/* IQ4_NL: d (f16), 16 bytes of nibbles indexing ggml's kvalues_iq4nl. 18 bytes. */
SINTRA_DEVICE void sintra_dequant_iq4_nl(const unsigned char *row, int chunk, float *y) {
    const signed char kvalues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};
    const unsigned char *b = row + 18 * chunk;
    float d = sintra_f16_at(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * kvalues[b[2 + j] & 0xF];
        y[j + 16] = d * kvalues[b[2 + j] >> 4];
    }
}

/* The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K super-block (ggml's get_scale_min_k4). */
SINTRA_DEVICE void sintra_scale_min_k4(int j, const unsigned char *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K: d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 bytes of nibbles: sub-blocks
 * 2p and 2p+1 are the low and high nibbles of bytes 32p..32p+31. 144 bytes a super-block. */
SINTRA_DEVICE void sintra_dequant_q4_k(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 144 * (chunk / 8);
    int s = chunk % 8, sc, m;
    sintra_scale_min_k4(s, b + 4, &sc, &m);
    float d = sintra_f16_at(b) * sc, min = sintra_f16_at(b + 2) * m;
    const unsigned char *q = b + 16 + 32 * (s / 2);
    int shift = 4 * (s % 2);
    for (int l = 0; l < 32; l++) {
        y[l] = d * ((q[l] >> shift) & 0xF) - min;
    }
}

/* Q5_K: Q4_K's header, then 32 bytes of fifth bits (sub-block s's at bit s), then the
 * nibbles. 176 bytes a super-block. */
SINTRA_DEVICE void sintra_dequant_q5_k(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 176 * (chunk / 8);
    int s = chunk % 8, sc, m;
    sintra_scale_min_k4(s, b + 4, &sc, &m);
    float d = sintra_f16_at(b) * sc, min = sintra_f16_at(b + 2) * m;
    const unsigned char *qh = b + 16, *q = b + 48 + 32 * (s / 2);
    int shift = 4 * (s % 2);
    for (int l = 0; l < 32; l++) {
        int v = ((q[l] >> shift) & 0xF) + (((qh[l] >> s) & 1) << 4);
        y[l] = d * v - min;
    }
}

/* Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed 8-bit scales (one
 * per 16 values), d (f16); minus 32. 210 bytes a super-block. Each half of 128 values takes
 * 64 low bytes and 32 high bytes; its quarter k (32 values) the low or high nibbles of low
 * bytes 32(k%2).. and bits 2k, 2k+1 of the high bytes. */
SINTRA_DEVICE void sintra_dequant_q6_k(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 210 * (chunk / 8);
    int s = chunk % 8, half = s / 4, k = s % 4;
    float d = sintra_f16_at(b + 208);
    const unsigned char *ql = b + 64 * half + 32 * (k % 2), *qh = b + 128 + 32 * half;
    const signed char *sc = (const signed char *)(b + 192) + 8 * half + 2 * k;
    int shift = 4 * (k / 2);
    for (int l = 0; l < 32; l++) {
        int v = (((ql[l] >> shift) & 0xF) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
        y[l] = d * sc[l / 16] * v;
    }
}

/* F16 and F32: plain values. */
SINTRA_DEVICE void sintra_dequant_f16(const unsigned char *row, int chunk, float *y) {
    const unsigned char *b = row + 64 * chunk;
    for (int j = 0; j < 32; j++) {
        y[j] = sintra_f16_at(b + 2 * j);
    }
}

SINTRA_DEVICE void sintra_dequant_f32(const unsigned char *row, int chunk, float *y) {
    const float *b = (const float *)(row + 128 * chunk);
    for (int j = 0; j < 32; j++) {
        y[j] = b[j];
    }
}
