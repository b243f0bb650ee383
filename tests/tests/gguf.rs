//! GGUF reader/writer on the real test model: byte-identical round trip, hostile mutations.

use formats::gguf::{parse, Array, GgufFile, GgufWriter, Value};

#[test]
fn smollm2_reads_and_writes_back_byte_identical() {
    let src = sintra_tests::smollm2_q4_1();
    let file = GgufFile::open(&src).unwrap();
    let h = &file.header;
    assert_eq!(h.architecture().unwrap(), "llama");
    assert_eq!(h.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(h.tensors.len(), 272);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.gguf");
    let n = GgufWriter::from_header(h)
        .write_to_path(&out, |_, t, w| {
            w.write_all(file.tensor(&t.name).unwrap().data)
        })
        .unwrap();
    assert_eq!(n, file.file_len());
    let a = std::fs::read(&src).unwrap();
    let b = std::fs::read(&out).unwrap();
    assert!(a == b, "written copy differs from the source");
    // Atomic write: no temp file is left beside the output.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("copy.gguf")]);
}

/// SmolLM2's header with every metadata array cut to its first 64 entries: the same keys,
/// types and tensor table as the real file, but a 20 KB header instead of 2 MB, so that every
/// byte offset can be tried (each parse of the real header re-reads 49k vocabulary strings).
fn reduced_smollm2() -> Vec<u8> {
    let file = GgufFile::open(sintra_tests::smollm2_q4_1()).unwrap();
    let mut w = GgufWriter::from_header(&file.header);
    for (k, v) in file.header.metadata.iter() {
        if let Value::Array(a) = v {
            let short = match a {
                Array::String(x) => Array::String(x[..x.len().min(64)].to_vec()),
                Array::I32(x) => Array::I32(x[..x.len().min(64)].to_vec()),
                Array::F32(x) => Array::F32(x[..x.len().min(64)].to_vec()),
                other => other.clone(),
            };
            w.set(k, Value::Array(short));
        }
    }
    let mut out = Vec::new();
    w.write_to(&mut out, |_, t, dst| {
        dst.write_all(file.tensor(&t.name).unwrap().data)
    })
    .unwrap();
    out
}

#[test]
fn smollm2_truncated_at_every_header_offset_is_an_error() {
    let bytes = reduced_smollm2();
    let h = parse(&bytes).unwrap();
    assert_eq!(h.tensors.len(), 272);
    for n in 0..=h.header_len as usize {
        assert!(
            parse(&bytes[..n]).is_err(),
            "truncated at {n} of {} header bytes and still parsed",
            h.header_len
        );
    }
    // Truncating inside the tensor data also fails: the last tensor runs past the end.
    assert!(parse(&bytes[..bytes.len() - 1]).is_err());

    // The full file, at a deterministic sample of offsets through the 2 MB of metadata and the
    // tensor table.
    let full = std::fs::read(sintra_tests::smollm2_q4_1()).unwrap();
    let hl = parse(&full).unwrap().header_len as usize;
    for n in (0..hl).step_by(hl / 97).chain([hl - 1, hl - 8, hl - 9]) {
        assert!(
            parse(&full[..n]).is_err(),
            "full file truncated at {n} still parsed"
        );
    }
}

#[test]
fn smollm2_with_flipped_header_bytes_never_panics() {
    let mut work = reduced_smollm2();
    let h = parse(&work).unwrap();
    let mut errors = 0usize;
    let mut cases = 0usize;
    // Every byte of the header and tensor table, three masks each.
    for i in 0..h.header_len as usize {
        for mask in [0x01u8, 0x80, 0xff] {
            work[i] ^= mask;
            if let Err(e) = parse(&work) {
                errors += 1;
                assert!(!e.to_string().is_empty());
            }
            work[i] ^= mask;
            cases += 1;
        }
    }
    assert!(
        errors > cases / 10 && cases > 30_000,
        "{errors} errors in {cases} cases"
    );
}

#[test]
fn missing_and_empty_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = GgufFile::open(&empty).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = GgufFile::open(dir.path().join("nope.gguf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot open") && e.contains("nope.gguf"), "{e}");
}
