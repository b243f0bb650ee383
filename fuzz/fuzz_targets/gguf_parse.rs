//! Fuzz the GGUF header parser: any byte string must give Ok or Err, never a panic, a hang or
//! an allocation beyond the caps. When it parses, every tensor view must lie inside the input and
//! writing the header back must parse to the same header.
#![no_main]

use formats::gguf::{parse, GgufWriter};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = parse(data) else { return };
    for t in &g.tensors {
        let start = g.data_offset + t.offset;
        assert!(start + t.n_bytes <= data.len() as u64);
    }
    let mut out = Vec::new();
    let written = GgufWriter::from_header(&g).write_to(&mut out, |_, t, w| w.write_all(&vec![0u8; t.n_bytes as usize]));
    if written.is_ok() {
        let again = parse(&out).expect("a written header parses");
        assert_eq!(again.tensors.len(), g.tensors.len());
    }
});
