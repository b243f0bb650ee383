//! GGUF reader/writer on the real test model: byte-identical round trip, hostile mutations.

use formats::gguf::{parse, GgufFile, GgufWriter};
use std::io::Write;

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

#[test]
fn smollm2_truncated_at_every_header_offset_is_an_error() {
    let bytes = std::fs::read(sintra_tests::smollm2_q4_1()).unwrap();
    let header_len = parse(&bytes).unwrap().header_len as usize;
    for n in 0..=header_len {
        let r = parse(&bytes[..n]);
        assert!(
            r.is_err(),
            "truncated at {n} of {header_len} header bytes and still parsed"
        );
    }
    // Truncating inside the tensor data also fails: the last tensor runs past the end.
    assert!(parse(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn smollm2_with_flipped_header_bytes_never_panics() {
    let bytes = std::fs::read(sintra_tests::smollm2_q4_1()).unwrap();
    let h = parse(&bytes).unwrap();
    // The tensor table in full, and a deterministic sample of the (2 MB) metadata: every byte of
    // the first 4 KiB plus every 97th byte after, each with three masks.
    let table_start = h.tensors[0].info_offset as usize;
    let positions = (0..4096)
        .chain((4096..table_start).step_by(97))
        .chain(table_start..h.header_len as usize);
    let mut errors = 0usize;
    let mut work = bytes[..h.header_len as usize + 64].to_vec(); // header + a little data
    let mut cases = 0usize;
    for i in positions {
        for mask in [0x01u8, 0x80, 0xff] {
            work[i] ^= mask;
            // The header is parsed against a short buffer, so the tensor bounds check fails
            // unless the flip made a tensor table that fits: either way no panic.
            if let Err(e) = parse(&work) {
                errors += 1;
                assert!(!e.to_string().is_empty());
            }
            work[i] ^= mask;
            cases += 1;
        }
    }
    assert!(
        errors > 0 && cases > 10_000,
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
