#!/usr/bin/env python3
"""Cross-check the HF checkpoints exported by the test suite (tests/src/hf_export.rs) against
the source GGUFs, with the real Hugging Face `transformers` library on one side and sintra-rt
(whose logits equal llama.cpp's) on the other.

For each model:
  1. token ids: HF tokenizer vs `sintra-rt tokenize` on a few prompts, and HF vs sintra-rt on
     the whole evaluated window of eval.txt (the ids sintra-rt stores with --save-logits);
  2. greedy: `sintra-rt generate -n 32` (greedy) vs transformers `generate(do_sample=False)`,
     compared as text, reporting the first generated token where they part;
  3. teacher forcing: `sintra-rt perplexity --save-logits` (log-probs, f16, of the second half
     of each window) vs transformers' log-softmax on the same input ids: top-1 agreement,
     mean KL(sintra || HF), max |delta log-prob| on the top tokens, and both perplexities.

Usage: venv/bin/python crosscheck.py [--repo /work/main] [--only NAME ...]
Needs: torch, transformers, numpy; target/release/sintra-rt built
(`cargo build --release -p runtime`).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "def fibonacci(n):\n    ",
]

# name, HF dir (under target/test-hf), GGUF (under target/test-models), runs
# runs: list of (label, ctx, chunks) for teacher forcing; gen_ctx: -c for generate (None: default)
MODELS = [
    dict(name="SmolLM2-135M (llama)", hf="SmolLM2-135M-Instruct.Q4_1-float32-v2",
         gguf="SmolLM2-135M-Instruct.F32.from-Q4_1.gguf", runs=[("ctx512", 512, 2)], gen_ctx=None, negative="llama",
         also_same=["SmolLM2-135M-Instruct.Q4_1-float32-shards209715200-v2"]),
    dict(name="gemma-3-270m (gemma3)", hf="gemma-3-270m-q4_k_m-float32-v2",
         gguf="gemma-3-270m.F32.from-Q4_K_M.gguf", runs=[("ctx512", 512, 2)], gen_ctx=None,
         negative="gemma"),
    dict(name="synthetic qwen3", hf="synthetic-qwen3-v7.Q8_0-float32-v2",
         gguf="synthetic-qwen3-v7.Q8_0.F32.gguf", runs=[("ctx512", 512, 2)], gen_ctx=None),
    # LongRoPE: sintra-rt/llama.cpp take the long factors when n_ctx > 256 (original context),
    # transformers when the sequence is longer than 256. ctx 256 -> both short; ctx 512 (511
    # input tokens) -> both long. Greedy runs with -c 256 so both use the short factors.
    dict(name="synthetic phi3 (LongRoPE)", hf="synthetic-phi3-v7.Q8_0-float32-v2",
         gguf="synthetic-phi3-v7.Q8_0.F32.gguf",
         runs=[("ctx256 short factors", 256, 4), ("ctx512 long factors", 512, 2)], gen_ctx=256,
         negative="phi3"),
]


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return r


def rt_tokenize(rt, gguf, text):
    out = sh([rt, "tokenize", "-m", gguf, "-p", text]).stdout.decode()
    return [int(line.split("\t", 1)[0]) for line in out.splitlines() if line]


def rt_generate(rt, gguf, prompt, n, ctx):
    cmd = [rt, "generate", "-m", gguf, "-p", prompt, "-n", str(n), "--kv-f32"]
    if ctx:
        cmd += ["-c", str(ctx)]
    out = sh(cmd).stdout.decode("utf-8", errors="replace")
    assert out.startswith(prompt), "sintra-rt generate output does not start with the prompt"
    if out.endswith("\n"):
        out = out[:-1]  # the newline written after the last piece
    return out


def read_logits(path):
    """sintra-rt --save-logits: 'SNTRLGT1', u64 n_ctx, n_vocab, n_tokens, u32 tokens, then
    f16 log-prob rows for positions n_ctx/2 .. n_ctx-2 of each window."""
    with open(path, "rb") as f:
        assert f.read(8) == b"SNTRLGT1"
        n_ctx, n_vocab, n_tok = struct.unpack("<3Q", f.read(24))
        tokens = np.frombuffer(f.read(4 * n_tok), dtype="<u4").astype(np.int64).copy()
        rows = np.frombuffer(f.read(), dtype="<f2").reshape(-1, n_vocab)
    return n_ctx, n_vocab, tokens, rows


def teacher(model, tokens, rows, n_ctx, bos_id, max_chunks=None):
    """Top-1 agreement, KL and perplexity of HF against sintra-rt's saved log-prob rows."""
    first = n_ctx // 2
    per = n_ctx - 1 - first
    agree = agree_tol = 0
    kls, maxd, nll_hf = [], 0.0, []
    n_chunks = len(tokens) // n_ctx
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    for c in range(n_chunks):
        win = tokens[c * n_ctx:(c + 1) * n_ctx]
        inp = win[: n_ctx - 1].copy()
        if bos_id is not None:
            inp[0] = bos_id
        with torch.no_grad():
            logits = model(torch.from_numpy(inp)[None]).logits[0].double()
        hf_lp = torch.log_softmax(logits, -1)[first:].numpy()
        rt_lp = rows[c * per:(c + 1) * per].astype(np.float64)
        for j in range(per):
            h, r = hf_lp[j], rt_lp[j]
            ha, ra = int(h.argmax()), int(r.argmax())
            agree += ha == ra
            # f16 storage rounds log-probs to ~0.004-0.008 near -10: count as agreeing
            # when HF's top token is within 0.02 of sintra-rt's top in sintra-rt's row
            agree_tol += r[ha] >= r[ra] - 0.02
            pr = np.exp(r)
            kls.append(float((pr * (r - h)).sum()))
            top = np.argsort(-r)[:10]
            maxd = max(maxd, float(np.abs(h[top] - r[top]).max()))
            nll_hf.append(-h[win[first + j + 1]])
    n = len(kls)
    return dict(positions=n, top1=agree / n, top1_tol=agree_tol / n,
                kl_mean=float(np.mean(kls)), kl_max=float(np.max(kls)),
                max_dlogp_top10=maxd, hf_ppl=float(np.exp(np.mean(nll_hf))))


def permute_rows(w, n_head):
    # convert_hf_to_gguf.py's LlamaModel.permute: what the exporter must undo
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def neg_llama(model):
    c = model.config
    for layer in model.model.layers:
        a = layer.self_attn
        a.q_proj.weight.data = permute_rows(a.q_proj.weight.data, c.num_attention_heads)
        a.k_proj.weight.data = permute_rows(a.k_proj.weight.data, c.num_key_value_heads)


def neg_gemma(model):
    for name, mod in model.named_modules():
        if type(mod).__name__ == "Gemma3RMSNorm":
            mod.weight.data += 1.0  # GGUF's stored (1 + w) copied without subtracting 1


def neg_phi3(model):
    for layer in model.model.layers:
        w = layer.mlp.gate_up_proj.weight.data
        h = w.shape[0] // 2
        layer.mlp.gate_up_proj.weight.data = torch.cat([w[h:], w[:h]])  # gate/up halves swapped


NEGATIVE = {
    "llama": ("Q/K rows left in GGUF (permuted) order", neg_llama),
    "gemma": ("norm weights kept as GGUF's 1+w", neg_gemma),
    "phi3": ("gate_up_proj halves swapped (up, gate)", neg_phi3),
}


def bos_fix_check(hf_dir, tok, rt_prompt_ids):
    """The tokenizer files with a TemplateProcessing post-processor that adds BOS (as the
    original HF gemma-3 tokenizer.json has): do the ids then equal sintra-rt's?"""
    import shutil
    with tempfile.TemporaryDirectory() as td:
        for f in os.listdir(hf_dir):
            if f.startswith("tokenizer") or f in ("config.json", "special_tokens_map.json"):
                shutil.copy(os.path.join(hf_dir, f), td)
        with open(os.path.join(td, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        b, bid = tok.bos_token, tok.bos_token_id
        tj["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": b, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {b: {"id": b, "ids": [bid], "tokens": [b]}},
        }
        with open(os.path.join(td, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        t2 = AutoTokenizer.from_pretrained(td)
        return all(t2(p)["input_ids"] == ids for p, ids in rt_prompt_ids.items())

def first_divergence(tok, full_ids, n_prompt_ids, rt_text):
    """Index (0-based, among generated tokens) of the first HF token whose decoded text is not a
    prefix of sintra-rt's text, or None when all are."""
    for k in range(n_prompt_ids, len(full_ids) + 1):
        s = tok.decode(full_ids[:k], skip_special_tokens=True,
                       clean_up_tokenization_spaces=False).rstrip("\ufffd")
        if not rt_text.startswith(s):
            return k - 1 - n_prompt_ids
    return None


def check_model(m, repo, rt, eval_text, paragraph, report):
    hf_dir = os.path.join(repo, "target/test-hf", m["hf"])
    gguf = os.path.join(repo, "target/test-models", m["gguf"])
    res = dict(name=m["name"], hf=m["hf"], gguf=m["gguf"])
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    res["hf_class"] = type(model).__name__
    res["load_s"] = round(time.time() - t0, 1)

    # 1. token ids on prompts. The model checks below feed transformers sintra-rt's ids, so
    # that they test the weights and config whatever the tokenizer does.
    tokrows = []
    rt_prompt_ids = {}
    for p in PROMPTS + [paragraph]:
        hf_ids = tok(p)["input_ids"]
        rt_ids = rt_prompt_ids[p] = rt_tokenize(rt, gguf, p)
        tokrows.append(dict(prompt=p[:40], n=len(rt_ids), equal=hf_ids == rt_ids,
                            equal_but_bos=hf_ids == rt_ids[1:] or hf_ids[1:] == rt_ids,
                            hf=hf_ids[:12] if hf_ids != rt_ids else None,
                            rt=rt_ids[:12] if hf_ids != rt_ids else None))
    res["tokens"] = tokrows
    res["hf_tokenizer_adds_bos"] = tok("a")["input_ids"][0] == tok.bos_token_id
    res["rt_adds_bos"] = rt_prompt_ids[PROMPTS[0]][0] == model.config.bos_token_id
    if res["rt_adds_bos"] and not res["hf_tokenizer_adds_bos"]:
        res["bos_fix"] = bos_fix_check(hf_dir, tok, rt_prompt_ids)
    # the GGUF's BOS rule, as sintra-rt/llama.cpp apply it
    bos_id = model.config.bos_token_id if res["rt_adds_bos"] else None

    # 2. greedy, 32 tokens
    gens = []
    for p in PROMPTS:
        rt_text = rt_generate(rt, gguf, p, 32, m.get("gen_ctx"))
        ids = torch.tensor([rt_prompt_ids[p]])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=32, do_sample=False, top_p=None, top_k=None,
                                 temperature=None)
        full = out[0].tolist()
        hf_text = tok.decode(full, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        n_new = len(full) - ids.shape[1]
        div = None if hf_text == rt_text else first_divergence(tok, full, ids.shape[1], rt_text)
        if hf_text != rt_text and div is None:
            div = n_new  # HF's text is a strict prefix of sintra-rt's (HF stopped earlier)
        gens.append(dict(prompt=p, n_new=n_new, identical=hf_text == rt_text, first_div=div,
                         hf=hf_text[len(p):], rt=rt_text[len(p):]))
    res["greedy"] = gens

    # 3. teacher forcing on eval.txt
    hf_all = tok(eval_text)["input_ids"]
    if bos_id is not None and not res["hf_tokenizer_adds_bos"]:
        hf_all = [bos_id] + hf_all  # compare the rest (the BOS difference is reported above)
    runs = []
    for label, ctx, chunks in m["runs"]:
        with tempfile.TemporaryDirectory() as td:
            lp = os.path.join(td, "logits.bin")
            tfile = os.path.join(td, "eval.txt")
            with open(tfile, "w") as f:
                f.write(eval_text)
            out = sh([rt, "perplexity", "-m", gguf, "-f", tfile, "-c", str(ctx), "--chunks",
                      str(chunks), "--kv-f32", "--save-logits", lp]).stdout.decode()
            rt_ppl = float(out.split("PPL = ")[1].split()[0])
            n_ctx, n_vocab, tokens, rows = read_logits(lp)
        ids_equal = tokens.tolist() == hf_all[: len(tokens)]
        r = teacher(model, tokens, rows, n_ctx, bos_id)
        runs.append(dict(label=label, ctx=n_ctx, ids_equal=ids_equal, rt_ppl=rt_ppl, **r))
        if m.get("negative") and "neg" not in res:
            # negative control: the symmetric mistake the round trip cannot see, made on the
            # HF side only; the same sintra-rt logits must then disagree
            what, corrupt = NEGATIVE[m["negative"]]
            corrupt(model)
            r = teacher(model, tokens, rows, n_ctx, bos_id, max_chunks=1)
            res["neg"] = dict(mistake=what, run=label, **r)
            model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                                         attn_implementation="eager")
            model.eval()
    res["teacher"] = runs

    # same logits from other exported variants (e.g. sharded) as from the main one
    for other in m.get("also_same", []):
        o = AutoModelForCausalLM.from_pretrained(os.path.join(repo, "target/test-hf", other),
                                                 dtype=torch.float32, attn_implementation="eager")
        ids = torch.tensor([hf_all[:256]])
        with torch.no_grad():
            d = (o(ids).logits - model(ids).logits).abs().max().item()
        res.setdefault("variants", []).append(dict(dir=other, max_abs_logit_diff=d))
        del o
    res["total_s"] = round(time.time() - t0, 1)
    report.append(res)
    print(json.dumps(res, indent=1, ensure_ascii=False), flush=True)
    del model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default="/work/main")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--out", default="crosscheck-results.json")
    a = ap.parse_args()
    rt = os.path.join(a.repo, "target/release/sintra-rt")
    with open(os.path.join(a.repo, ".cache/data/eval.txt"), encoding="utf-8") as f:
        eval_text = f.read()
    paragraph = eval_text.split("\n\n")[1]
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"numpy {np.__version__}, python {sys.version.split()[0]}", flush=True)
    print(sh([rt, "--version"]).stdout.decode().strip(), flush=True)
    report = []
    for m in MODELS:
        if a.only and not any(o in m["hf"] for o in a.only):
            continue
        check_model(m, a.repo, rt, eval_text, paragraph, report)
    with open(a.out, "w") as f:
        json.dump(dict(torch=torch.__version__, transformers=transformers.__version__,
                       models=report), f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
