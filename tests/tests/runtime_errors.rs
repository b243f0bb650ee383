//! Bad input to the real `sintra-rt` binary: a clear error naming the problem and a non-zero
//! exit, never a panic.

use formats::gguf::{GgufFile, GgufWriter, Value};
use formats::quant::{self, GgmlType};
use std::path::Path;
use std::process::Command;

/// Run sintra-rt; returns (exit code, stderr). A panic would exit with 101 and say "panicked".
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(sintra_tests::release_bin_path("runtime", "sintra-rt"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "sintra-rt panicked on {args:?}:\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), stderr)
}

fn expect_error(args: &[&str], needle: &str) {
    let (code, stderr) = run(args);
    assert!(code != 0, "{args:?} succeeded");
    assert_ne!(code, 101, "{args:?} panicked");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in:\n{stderr}"
    );
}

/// A copy of SmolLM2 changed by `edit` (metadata and tensor table); tensor data is copied, or
/// requantized where `edit` changed a tensor's type.
fn edited_copy(dir: &Path, name: &str, edit: impl FnOnce(&mut GgufWriter)) -> String {
    let src = GgufFile::open(sintra_tests::smollm2_q4_1()).unwrap();
    let mut w = GgufWriter::from_header(&src.header);
    edit(&mut w);
    let path = dir.join(name);
    w.write_to_path(&path, |_, t, out| {
        let view = src.tensor(&t.name).unwrap();
        if view.info.ty == t.ty {
            return out.write_all(view.data);
        }
        let values = quant::dequantize(view.info.ty, view.data).unwrap();
        out.write_all(&quant::quantize(t.ty, &values, t.row_len() as usize, None).unwrap())
    })
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn bad_models_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |m: &str| {
        vec![
            "generate".to_string(),
            "-m".into(),
            m.to_string(),
            "-p".into(),
            "hi".into(),
            "-n".into(),
            "2".into(),
        ]
    };
    let check = |m: &str, needle: &str| {
        let args = gen(m);
        expect_error(&args.iter().map(String::as_str).collect::<Vec<_>>(), needle);
    };

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    check(empty.to_str().unwrap(), "truncated");
    check(
        dir.path().join("missing.gguf").to_str().unwrap(),
        "cannot open",
    );

    // A missing tensor: drop blk.3.ffn_up.weight from the table.
    let m = edited_copy(dir.path(), "missing-tensor.gguf", |w| {
        let mut w2 = GgufWriter::new();
        for (k, v) in w.metadata() {
            w2.set(k, v.clone());
        }
        for t in w
            .tensors()
            .iter()
            .filter(|t| t.name != "blk.3.ffn_up.weight")
        {
            w2.add_tensor(&t.name, &t.dims, t.ty).unwrap();
        }
        *w = w2;
    });
    check(&m, "tensor 'blk.3.ffn_up.weight' is missing");

    // A wrong shape: the metadata claims a wider model than the tensors are.
    let m = edited_copy(dir.path(), "wrong-shape.gguf", |w| {
        w.set("llama.embedding_length", Value::U32(594));
    });
    check(&m, "has shape [576, 49152], expected [594, 49152]");

    // An unsupported architecture.
    let m = edited_copy(dir.path(), "arch.gguf", |w| {
        w.set("general.architecture", Value::String("mamba".into()));
    });
    check(&m, "unsupported architecture 'mamba'");

    // An unsupported weight type (Q8_1 is an activation format: no weight kernel).
    let m = edited_copy(dir.path(), "type.gguf", |w| {
        w.set_tensor_type("blk.0.attn_q.weight", GgmlType::Q8_1)
            .unwrap();
    });
    check(&m, "tensor 'blk.0.attn_q.weight' has type Q8_1");

    // A prompt longer than the context.
    let model = sintra_tests::smollm2_q4_1();
    let long = "word ".repeat(64);
    expect_error(
        &[
            "generate",
            "-m",
            model.to_str().unwrap(),
            "-p",
            &long,
            "-c",
            "16",
        ],
        "longer than the context of 16",
    );
}

#[test]
fn bad_arguments_give_usage_errors() {
    let model = sintra_tests::smollm2_q4_1();
    let m = model.to_str().unwrap();
    let (code, stderr) = run(&["frobnicate"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown mode 'frobnicate'"));
    let (code, stderr) = run(&["generate", "-m", m, "-n", "lots"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("-n expects a non-negative integer, got 'lots'"),
        "{stderr}"
    );
    expect_error(&["generate", "-p", "hi"], "no model given");
    expect_error(&["perplexity", "-m", m], "needs a text file");
    let (code, _) = run(&["--help"]);
    assert_eq!(code, 0);
}
