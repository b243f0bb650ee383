// llama.cpp's prompt (ppN) and generation (tgN) speed on a GGUF, measured as llama-bench does
// (an empty cache each repetition, a prompt decoded as one batch, then tokens one at a time,
// after one discarded warm-up), for scripts/gpu-check.sh: the vendored llama.cpp that
// llama-cpp-sys-2 ships has no llama-bench sources, and the GPU machine has no Rust.
//
//   llama-pp-tg MODEL N_PROMPT N_GEN REPETITIONS N_GPU_LAYERS THREADS
//
// Prints one line per test: `llama.cpp ppN: median M t/s (min A, max B; samples ...)`.

#include "llama.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static void report(const char *test, int n, std::vector<double> tps) {
    std::sort(tps.begin(), tps.end());
    double median = tps.size() % 2 ? tps[tps.size() / 2]
                                   : (tps[tps.size() / 2 - 1] + tps[tps.size() / 2]) / 2;
    std::string list;
    for (double v : tps) list += (list.empty() ? "" : ", ") + std::to_string(v);
    printf("llama.cpp %s%d: median %.2f t/s (min %.2f, max %.2f; samples %s)\n", test, n, median,
           tps.front(), tps.back(), list.c_str());
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s MODEL N_PROMPT N_GEN REPETITIONS N_GPU_LAYERS THREADS\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int n_prompt = atoi(argv[2]), n_gen = atoi(argv[3]), reps = atoi(argv[4]);
    int ngl = atoi(argv[5]), threads = atoi(argv[6]);

    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_prompt + n_gen + 8;
    cp.n_batch = std::max(n_prompt, 1);
    cp.n_ubatch = std::max(n_prompt, 1);
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot make a context\n");
        return 1;
    }
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    // Arbitrary tokens, as llama-bench feeds: speed does not depend on which.
    std::vector<llama_token> tokens(std::max(n_prompt, 1));
    for (size_t i = 0; i < tokens.size(); i++) tokens[i] = (llama_token)((i * 7919 + 13) % n_vocab);

    auto pp = [&]() {
        llama_memory_clear(llama_get_memory(ctx), true);
        auto t0 = std::chrono::steady_clock::now();
        if (llama_decode(ctx, llama_batch_get_one(tokens.data(), n_prompt)) != 0) exit(1);
        llama_synchronize(ctx);
        return n_prompt / seconds_since(t0);
    };
    auto tg = [&]() {
        llama_memory_clear(llama_get_memory(ctx), true);
        llama_token t = tokens[0];
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < n_gen; i++) {
            if (llama_decode(ctx, llama_batch_get_one(&t, 1)) != 0) exit(1);
            llama_synchronize(ctx);
            t = (llama_token)((t * 31 + 7) % n_vocab);
        }
        return n_gen / seconds_since(t0);
    };
    if (n_prompt > 0) {
        pp();  // warm-up
        std::vector<double> s;
        for (int r = 0; r < reps; r++) s.push_back(pp());
        report("pp", n_prompt, s);
    }
    if (n_gen > 0) {
        tg();
        std::vector<double> s;
        for (int r = 0; r < reps; r++) s.push_back(tg());
        report("tg", n_gen, s);
    }
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
