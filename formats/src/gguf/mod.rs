//! GGUF: reader and writer (see reader.rs, writer.rs).
