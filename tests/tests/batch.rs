//! Prompt processing in batches (issue #4) against feeding the same tokens one at a time: the
//! logits of every position, and the cache they leave behind, must be bit-identical. Over two
//! batches and 22 tokens of eval.txt (three batches, the last one partial; several classifier
//! chunks), on the
//! original Q4_1 file and on versions in every type the AVX2 matrix kernels specialize (Q8_0,
//! Q4_0, Q5_0 + Q4_K, Q5_1 + Q5_K, Q8_0 + Q6_K), with the f16 and the f32 cache, on one thread
//! and on two. Calibration statistics too.

use formats::gguf::GgufFile;
use formats::quant::GgmlType;
use runtime::calibrate::{self, Calibration};
use runtime::model::{KvType, Llama, ModelError, MAX_BATCH};
use runtime::threads::Pool;
use runtime::tokenizer::Tokenizer;
use sintra_tests::requant;

const N_TOKENS: usize = 2 * MAX_BATCH + 22;

/// Context of the test's models: the tokens and the few decoded after them.
const N_CTX: usize = N_TOKENS + 8;

/// The first logits that differ: (position, first differing index) or `None`.
fn first_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> Option<(usize, usize)> {
    a.iter().zip(b).enumerate().find_map(|(pos, (x, y))| {
        x.iter()
            .zip(y)
            .position(|(p, q)| p.to_bits() != q.to_bits())
            .map(|i| (pos, i))
    })
}

fn check(ty: GgmlType, kv: KvType, threads: usize) {
    let _kernels = sintra_tests::kernels_as_selected();
    let path = requant::smollm2_as(ty);
    let file = GgufFile::open(&path).unwrap();
    let text = std::fs::read_to_string(sintra_tests::data_file("eval.txt")).unwrap();
    let tok = Tokenizer::from_gguf(&file.header).unwrap();
    let tokens = &tok.encode(&text, tok.add_bos(), false)[..N_TOKENS];
    const { assert!(N_TOKENS > 2 * MAX_BATCH) };
    let pool = Pool::new(threads);

    let mut one = Llama::new(&file, N_CTX, kv).unwrap();
    let mut want: Vec<Vec<f32>> = tokens
        .iter()
        .enumerate()
        .map(|(pos, &t)| one.forward(t, pos, &pool).unwrap().to_vec())
        .collect();

    // Logits from position 5 on: the classifier skips the first ones.
    let from = 5;
    let mut batched = Llama::new(&file, N_CTX, kv).unwrap();
    let mut got = Vec::new();
    batched
        .forward_batch(tokens, 0, &pool, from, |i, l| {
            assert_eq!(i, from + got.len());
            got.push(l.to_vec());
            Ok::<(), ModelError>(())
        })
        .unwrap();
    assert_eq!(got.len(), N_TOKENS - from);
    let diff = first_difference(&want[from..], &got);
    assert!(
        diff.is_none(),
        "{ty} {kv:?} {threads} thread(s): batched logits differ from token-by-token ones at \
         (position - {from}, index) {diff:?}"
    );

    // The caches too: the next token decoded on each gives the same logits, and so does a
    // second batch after the first.
    let next = tokens[1];
    want.push(one.forward(next, N_TOKENS, &pool).unwrap().to_vec());
    let after = batched.forward(next, N_TOKENS, &pool).unwrap().to_vec();
    assert!(
        first_difference(&want[N_TOKENS..], &[after]).is_none(),
        "{ty} {kv:?}: the cache a batch leaves differs"
    );
    let more = &tokens[..3];
    let mut tail = Vec::new();
    batched
        .forward_batch(more, N_TOKENS, &pool, 0, |_, l| {
            tail.push(l.to_vec());
            Ok::<(), ModelError>(())
        })
        .unwrap();
    let mut again = Llama::new(&file, N_CTX, kv).unwrap();
    for (pos, &t) in tokens.iter().enumerate() {
        again.forward_opt(t, pos, &pool, false).unwrap();
    }
    let tail_want: Vec<Vec<f32>> = more
        .iter()
        .enumerate()
        .map(|(i, &t)| again.forward(t, N_TOKENS + i, &pool).unwrap().to_vec())
        .collect();
    assert!(
        first_difference(&tail_want, &tail).is_none(),
        "{ty} {kv:?}: a batch after a batch differs"
    );
    eprintln!("{ty} {kv:?} {threads} thread(s): {N_TOKENS} positions bit-identical");
}

#[test]
fn batch_logits_are_token_by_token_logits_q4_1() {
    check(GgmlType::Q4_1, KvType::F16, 2);
    check(GgmlType::Q4_1, KvType::F32, 1);
}

#[test]
fn batch_logits_are_token_by_token_logits_q8_0_q4_0() {
    check(GgmlType::Q8_0, KvType::F16, 2);
    check(GgmlType::Q4_0, KvType::F16, 1);
}

#[test]
fn batch_logits_are_token_by_token_logits_k_quants() {
    // Q5_0 with Q4_K ffn_down, Q5_1 with Q5_K, Q8_0 with Q6_K (SmolLM2's 576-wide rows fall
    // back, as llama.cpp's quantizer does).
    for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
        check(ty, KvType::F16, 2);
    }
}

/// A batch that does not fit the context is refused before anything runs, and a bad token
/// is an error, not a panic.
#[test]
fn batch_errors_are_errors() {
    let path = sintra_tests::smollm2_q4_1();
    let file = GgufFile::open(&path).unwrap();
    let pool = Pool::new(1);
    let mut model = Llama::new(&file, 16, KvType::F16).unwrap();
    let r = model.forward_batch(&[1; 17], 0, &pool, 0, |_, _| Ok::<(), ModelError>(()));
    assert!(
        matches!(r, Err(ModelError::ContextFull { n_ctx: 16 })),
        "{r:?}"
    );
    let r = model.forward_batch(&[1; 4], 14, &pool, 0, |_, _| Ok::<(), ModelError>(()));
    assert!(
        matches!(r, Err(ModelError::ContextFull { n_ctx: 16 })),
        "{r:?}"
    );
    let r = model.forward_batch(&[1, u32::MAX], 0, &pool, 0, |_, _| Ok::<(), ModelError>(()));
    assert!(matches!(r, Err(ModelError::BadToken { .. })), "{r:?}");
    // Nothing to do is no error.
    let r = model.forward_batch(&[], 0, &pool, 0, |_, _| Ok::<(), ModelError>(()));
    assert!(r.is_ok());
}

/// Calibration statistics (issue #7) collected from a window in batches (`calibrate::run`) are
/// those of the same window one token at a time, to the last bit of every f64 sum.
#[test]
fn calibration_in_batches_is_token_by_token_calibration() {
    let _kernels = sintra_tests::kernels_as_selected();
    let path = sintra_tests::smollm2_q4_1();
    let file = GgufFile::open(&path).unwrap();
    let text = std::fs::read_to_string(sintra_tests::data_file("calibration.txt")).unwrap();
    let tok = Tokenizer::from_gguf(&file.header).unwrap();
    let n_ctx = 100;
    let tokens = &tok.encode(&text, tok.add_bos(), false)[..n_ctx];
    let bos = tok.special_ids().bos.filter(|_| tok.add_bos());
    let pool = Pool::new(2);

    let mut one = Llama::new(&file, n_ctx, KvType::F16).unwrap();
    let cal = Calibration::new(&one.config, "token_embd.weight");
    one.state.calib = Some(Box::new(cal.clone()));
    for (pos, &t) in tokens.iter().enumerate() {
        let t = if pos == 0 { bos.unwrap_or(t) } else { t };
        one.forward_opt(t, pos, &pool, false).unwrap();
    }
    let want = one.state.calib.take().unwrap();

    let mut batched = Llama::new(&file, n_ctx, KvType::F16).unwrap();
    let (got, windows) = calibrate::run(
        &mut batched,
        cal,
        tokens,
        bos,
        n_ctx,
        None,
        &pool,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(windows, 1);
    assert_eq!(got.n_tokens, n_ctx as u64);
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
}
