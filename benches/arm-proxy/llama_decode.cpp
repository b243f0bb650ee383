// llama.cpp's side of the ARM speed proxy (benches/arm-proxy.sh, issue #14): what
// `sintra-rt bench -p 0 -n N -t T -r 1` does, through llama.cpp's public API. Load the model,
// decode min(N, 16) tokens one at a time as a discarded warm-up, clear the cache, decode N
// tokens one at a time from position 0. Under QEMU's instruction-counting plugin the
// difference between two N is the instructions of the decode steps alone. With `pp`, what
// `sintra-rt bench -p N -n 0 -r 1` does: a warm-up batch of min(N, 64) prompt tokens, then one
// batch of N.
//
//   llama-decode MODEL N THREADS [pp]
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static void quiet(enum ggml_log_level, const char *, void *) {}

int main(int argc, char ** argv) {
    if (argc != 4 && !(argc == 5 && std::string(argv[4]) == "pp")) {
        fprintf(stderr, "usage: llama-decode MODEL N THREADS [pp]\n");
        return 2;
    }
    const bool prompt = argc == 5;
    const int n = atoi(argv[2]);
    const int threads = atoi(argv[3]);
    if (n <= 0 || threads <= 0) {
        fprintf(stderr, "llama-decode: N and THREADS must be positive\n");
        return 2;
    }
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) {
        fprintf(stderr, "llama-decode: cannot load %s\n", argv[1]);
        return 1;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = std::max(n, 16) + 16;
    cp.n_batch = prompt ? std::max(n, 16) : 16;
    cp.n_ubatch = cp.n_batch;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llama-decode: cannot create a context\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    // The same token sequence as sintra-rt bench's (any fixed sequence would do).
    auto decode = [&](int count) {
        llama_memory_clear(llama_get_memory(ctx), true);
        for (int i = 0; i < count; i++) {
            llama_token t = (llama_token) (((unsigned) i * 7919u + 13u) % (unsigned) n_vocab);
            if (llama_decode(ctx, llama_batch_get_one(&t, 1)) != 0) {
                fprintf(stderr, "llama-decode: decode failed at %d\n", i);
                exit(1);
            }
        }
    };
    // One batch of `count` prompt tokens from an empty cache.
    auto prefill = [&](int count) {
        llama_memory_clear(llama_get_memory(ctx), true);
        std::vector<llama_token> tokens(count);
        for (int i = 0; i < count; i++) {
            tokens[i] = (llama_token) (((unsigned) i * 7919u + 13u) % (unsigned) n_vocab);
        }
        if (llama_decode(ctx, llama_batch_get_one(tokens.data(), count)) != 0) {
            fprintf(stderr, "llama-decode: prompt batch failed\n");
            exit(1);
        }
    };
    if (prompt) {
        prefill(std::min(n, 64));
        prefill(n);
    } else {
        decode(std::min(n, 16));
        decode(n);
    }
    printf("%s\n", llama_print_system_info());
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
