//! The GPU seam of a build without the `cuda` feature: no device is ever found, so the types
//! below are never made and models run on the CPU (`gpu.rs` is the real one). Asking for the
//! GPU (`SINTRA_DEVICE=cuda`) is an error naming the missing feature.

use super::{Config, KvType, ModelError, Weights};

/// Never made: no GPU in this build.
#[derive(Debug)]
pub(super) enum Device {}

#[derive(Debug)]
pub(super) enum GpuModel {}

pub(super) fn device(_: super::Place) -> Result<Option<Device>, ModelError> {
    match crate::gpu::wanted() {
        Ok(crate::gpu::Wanted::Cuda | crate::gpu::Wanted::CudaEmulator) => Err(ModelError::Device(
            "SINTRA_DEVICE=cuda: this sintra-rt was built without the cuda feature".into(),
        )),
        Err(e) => Err(ModelError::Device(e)),
        Ok(_) => Ok(None),
    }
}

pub(super) fn fall_back(_: &str) -> Result<(), ModelError> {
    Ok(())
}

pub(super) fn unsupported(_: &Config, _: &Weights<'_>, _: KvType) -> Option<String> {
    None
}

impl GpuModel {
    pub(super) fn new(d: Device, _: &Config, _: &Weights<'_>, _: usize) -> Result<Self, String> {
        match d {}
    }

    pub(super) fn name(&self) -> String {
        match *self {}
    }

    pub(super) fn logit_rows(&self) -> usize {
        match *self {}
    }

    pub(super) fn run(
        &mut self,
        _: &Config,
        _: &Weights<'_>,
        _: &[u32],
        _: usize,
    ) -> Result<(), ModelError> {
        match *self {}
    }

    pub(super) fn logits(
        &mut self,
        _: &Config,
        _: core::ops::Range<usize>,
        _: &mut [f32],
    ) -> Result<(), ModelError> {
        match *self {}
    }
}
