//! The phases of a run, logged at `info` as they begin and end (`RUST_LOG=planner=info`):
//! `download`, `sensitivity` (calibration statistics and the sensitivity pass), `candidate`
//! (a recipe's GGUF written), `measure` (speed on the device, quality on this host) and
//! `record` (the history, the checkpoint, the outputs). A user sees where a long run is, and
//! where a stopped one stopped; the crash test (`tests/tests/crashes.rs`) kills runs inside
//! each phase by them.
//!
//! Use: `let _phase = Phase::begin("measure");` — the end is logged when the guard drops, on
//! success or error.

/// An open phase: logs its end when dropped.
#[derive(Debug)]
pub struct Phase(&'static str);

impl Phase {
    /// Log that phase `name` begins.
    pub fn begin(name: &'static str) -> Phase {
        tracing::info!(phase = name, "begins");
        Phase(name)
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        tracing::info!(phase = self.0, "ends");
    }
}
