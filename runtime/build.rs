//! Records the target triple for `sintra-rt --version` and the handshake.
fn main() {
    println!(
        "cargo:rustc-env=SINTRA_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
