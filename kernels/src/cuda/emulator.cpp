// A CPU emulation of CUDA's execution model, to run kernels.cu where no GPU is (issue #21): the
// `cuda-emulator` feature, for the test suite. Not a product path.
//
// Every CUDA thread of a block is a fiber on the calling thread (a hand-written stack switch on
// x86-64, ucontext elsewhere); blocks run one after another. `__syncthreads()` parks a fiber until every live thread of its block is parked there;
// a warp shuffle parks it until every lane of its warp is (and fails the launch if a lane has
// exited: the GPU's behaviour is then undefined). `__shared__` variables are function statics:
// one copy, which is right while blocks run one at a time. A barrier no thread can pass fails
// the launch instead of hanging. Arithmetic is the host's f32, so results match a GPU's within
// rounding, not bit for bit.

#include <cmath>
#include <math.h>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <ucontext.h>
#include <utility>
#include <vector>

struct uint3_ { unsigned x, y, z; };
struct float4 { float x, y, z, w; };

// One OS thread runs every fiber: the scheduler sets threadIdx before resuming each.
static uint3_ threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define SINTRA_DEVICE static inline

namespace emu {
void sync_block();
float shfl_xor(float v, int mask);
float warp_butterfly(float v, bool max);
}  // namespace emu

static inline void __syncthreads() { emu::sync_block(); }
static inline float __shfl_xor_sync(unsigned, float v, int mask) { return emu::shfl_xor(v, mask); }
static inline float __int_as_float(unsigned v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }





// IEEE half <-> float, round to nearest even (PTX's cvt.rn.f16.f32 and cvt.f32.f16).
static inline float sintra_f16(unsigned short h) {
    unsigned sign = (unsigned)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        float f = man * (1.0f / 16777216.0f);
        std::memcpy(&bits, &f, 4);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

static inline unsigned short sintra_f32_to_f16(float f) {
    unsigned x;
    std::memcpy(&x, &f, 4);
    unsigned sign = (x >> 16) & 0x8000;
    unsigned ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0);  // inf, nan
    if (ax >= 0x477ff000u) return sign | 0x7c00;  // rounds past the largest half: inf
    if (ax < 0x38800000u) {  // a half subnormal (or zero): round x * 2^24 to an integer
        float a;
        std::memcpy(&a, &ax, 4);
        return sign | (unsigned short)std::nearbyint(a * 16777216.0f);
    }
    unsigned m = ax + 0xfff + ((ax >> 13) & 1);  // round to nearest even at bit 13
    return sign | (unsigned short)((m - 0x38000000u) >> 13);
}

#define SINTRA_EMULATOR 1
#include "dequant.cuh"
#include "kernels.cu"

namespace emu {

static void entry();

#if defined(__x86_64__)
// switch_stack(save, to): push the callee-saved registers, store the stack pointer in *save,
// load `to`, pop its registers and return into it. (swapcontext also saves the signal mask, a
// system call per switch: most of the emulator's time.)
extern "C" void sintra_emu_switch(void **save, void *to);
asm(R"(
    .text
    .globl sintra_emu_switch
    .type sintra_emu_switch, @function
sintra_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size sintra_emu_switch, .-sintra_emu_switch
)");

struct Context {
    void *sp = nullptr;
};

static void start_fiber(Context &c, std::vector<char> &stack) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack.data()) + stack.size()) & ~uintptr_t(15);
    void **sp = reinterpret_cast<void **>(top);
    *--sp = nullptr;                              // entry's return address: never used
    *--sp = reinterpret_cast<void *>(&entry);     // where the first switch returns to
    for (int i = 0; i < 6; i++) *--sp = nullptr;  // the six registers the switch pops
    c.sp = sp;
}

static void switch_to(Context &from, Context &to) { sintra_emu_switch(&from.sp, to.sp); }
#else
struct Context {
    ucontext_t uc;
};

static void start_fiber(Context &c, std::vector<char> &stack) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack.data();
    c.uc.uc_stack.ss_size = stack.size();
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}

static void switch_to(Context &from, Context &to) { swapcontext(&from.uc, &to.uc); }
#endif

struct Fiber {
    Context ctx;
    std::vector<char> stack;
    unsigned tid;
    bool done = false;
    int waiting = 0;  // 0: runnable; 1: at a block barrier; 2: at a warp barrier
};

static Context scheduler;
static std::vector<Fiber> fibers;
static Fiber *current = nullptr;
static std::vector<float> exchange;
static std::string error;
static void (*body)(void **) = nullptr;
static void **body_args = nullptr;

static void park(int kind) {
    current->waiting = kind;
    switch_to(current->ctx, scheduler);
}

void sync_block() { park(1); }

float shfl_xor(float v, int mask) {
    unsigned tid = current->tid;
    exchange[tid] = v;
    park(2);
    float r = exchange[(tid & ~31u) | ((tid & 31u) ^ (unsigned)mask)];
    park(2);  // everyone has read before the slots are written again
    return r;
}

static void set_thread(unsigned tid) {
    threadIdx.x = tid % blockDim.x;
    threadIdx.y = (tid / blockDim.x) % blockDim.y;
    threadIdx.z = tid / (blockDim.x * blockDim.y);
}

float warp_butterfly(float v, bool max) {
    unsigned tid = current->tid, lane = tid & 31u, base = tid & ~31u;
    exchange[tid] = v;
    park(2);
    float vals[32], next[32];
    for (unsigned i = 0; i < 32; i++) vals[i] = exchange[base + i];
    for (unsigned o = 16; o > 0; o /= 2) {
        for (unsigned i = 0; i < 32; i++)
            next[i] = max ? fmaxf(vals[i], vals[i ^ o]) : vals[i] + vals[i ^ o];
        std::memcpy(vals, next, sizeof vals);
    }
    park(2);  // everyone has read before the slots are written again
    return vals[lane];
}

static void entry() {
    Fiber *f = current;
    body(body_args);
    f->done = true;
    switch_to(f->ctx, scheduler);  // never resumed
}

// Run one block to completion; false (with `error` set) when a barrier cannot be passed.
static bool run_block() {
    size_t n = fibers.size();
    for (auto &f : fibers) {
        f.done = false;
        f.waiting = 0;
        start_fiber(f.ctx, f.stack);
    }
    for (;;) {
        bool ran = false;
        for (auto &f : fibers) {
            if (f.done || f.waiting) continue;
            current = &f;
            set_thread(f.tid);
            switch_to(scheduler, f.ctx);
            ran = true;
        }
        size_t live = 0, at_block = 0;
        for (auto &f : fibers) {
            live += !f.done;
            at_block += !f.done && f.waiting == 1;
        }
        if (live == 0) return true;
        bool released = false;
        // Warps whose every lane is at a shuffle go on together.
        for (size_t w = 0; w < n; w += 32) {
            size_t end = w + 32 < n ? w + 32 : n, at = 0, exited = 0;
            for (size_t i = w; i < end; i++) {
                at += fibers[i].waiting == 2;
                exited += fibers[i].done;
            }
            if (at == 0) continue;
            if (at + exited == end - w && exited > 0) {
                error = "a warp shuffle with exited lanes";
                return false;
            }
            if (at == end - w) {
                for (size_t i = w; i < end; i++) fibers[i].waiting = 0;
                released = true;
            }
        }
        if (at_block == live) {
            for (auto &f : fibers) f.waiting = 0;
            released = true;
        }
        if (!ran && !released) {
            error = "a barrier no thread can pass (__syncthreads or a shuffle in divergent code)";
            return false;
        }
    }
}

template <typename... A, size_t... I>
static void call(void (*k)(A...), void **args, std::index_sequence<I...>) {
    k(*static_cast<A *>(args[I])...);
}

struct Entry {
    const char *name;
    void (*run)(void **);
};

#define KERNEL(name)                                                                             \
    {#name, [](void **a) { invoke(name, a); }},

template <typename... A>
static void invoke(void (*k)(A...), void **args) {
    call(k, args, std::index_sequence_for<A...>{});
}

#define TYPED(type) KERNEL(matvec_##type) KERNEL(matmul_##type) KERNEL(get_rows_##type)
static const Entry table[] = {
    TYPED(f32) TYPED(f16) TYPED(q4_0) TYPED(q4_1) TYPED(q5_0) TYPED(q5_1) TYPED(q8_0)
    TYPED(iq4_nl) TYPED(q4_k) TYPED(q5_k) TYPED(q6_k)
    KERNEL(rmsnorm) KERNEL(add) KERNEL(add_bias) KERNEL(scale) KERNEL(softcap) KERNEL(swiglu)
    KERNEL(geglu) KERNEL(rope) KERNEL(kv_store) KERNEL(attention) KERNEL(round_activations)
};

}  // namespace emu

extern "C" {

// The message of the last failed launch.
const char *sintra_emu_error() { return emu::error.c_str(); }

// Launch kernel `name` on a grid of grid[0..3] blocks of block[0..3] threads with the
// parameter values args[i] points to (as cuLaunchKernel takes them); 0 when it ran.
int sintra_emu_launch(const char *name, const unsigned *grid, const unsigned *block, void **args) {
    using namespace emu;
    body = nullptr;
    for (const auto &e : table)
        if (std::strcmp(e.name, name) == 0) body = e.run;
    if (!body) {
        error = std::string("no kernel named ") + name;
        return 1;
    }
    body_args = args;
    unsigned threads = block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024) {
        error = "a block of " + std::to_string(threads) + " threads";
        return 1;
    }
    if (fibers.size() != threads) {
        fibers.resize(threads);
        exchange.assign(threads, 0.0f);
    }
    for (unsigned i = 0; i < threads; i++) {
        fibers[i].tid = i;
        if (fibers[i].stack.empty()) fibers[i].stack.resize(64 * 1024);
    }
    blockDim = {block[0], block[1], block[2]};
    gridDim = {grid[0], grid[1], grid[2]};
    for (unsigned z = 0; z < grid[2]; z++)
        for (unsigned y = 0; y < grid[1]; y++)
            for (unsigned x = 0; x < grid[0]; x++) {
                blockIdx = {x, y, z};
                if (!run_block()) return 1;
            }
    return 0;
}
}
