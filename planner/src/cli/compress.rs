//! `sintra compress MODEL --recipe FILE -o OUT.gguf`: execute one recipe.

use crate::calibration::{self, Calibration, CalibrationSpec};
use crate::executor;
use crate::model_info::ModelInfo;
use crate::profile::RECIPE_TYPES;
use crate::recipe::Recipe;
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;

pub fn run(
    model: &Path,
    recipe: &Path,
    output: &Path,
    imatrix: Option<&Path>,
    calib_text: Option<&Path>,
    threads: u32,
) -> Result<()> {
    let text = std::fs::read_to_string(recipe)
        .with_context(|| format!("reading recipe {}", recipe.display()))?;
    let r = Recipe::from_json(&text).with_context(|| recipe.display().to_string())?;
    let info = ModelInfo::load(model)?;
    r.validate(&info, RECIPE_TYPES)
        .with_context(|| format!("{} does not fit {}", recipe.display(), model.display()))?;
    if std::path::absolute(output).ok() == std::path::absolute(model).ok() {
        anyhow::bail!(
            "-o {} is the source model: sintra never overwrites a source",
            output.display()
        );
    }
    let needs_calibration =
        r.needs_calibration() || r.draft.as_ref().is_some_and(|d| d.needs_calibration());
    let calib = match (needs_calibration, imatrix) {
        (_, Some(p)) => Some(Calibration::load(p)?),
        (true, None) => {
            let text = crate::texts::calib_text(calib_text)?;
            let spec = CalibrationSpec::new(&text, threads);
            Some(calibration::ensure(
                &info,
                &spec,
                &crate::home::cache_subdir("calibration")?,
            )?)
        }
        (false, None) => None,
    };
    let w = executor::execute(
        &r,
        &info,
        output,
        std::io::stderr().is_terminal(),
        calib.as_ref(),
    )?;
    let written = |path: &Path, w: &executor::Written| {
        println!(
            "wrote {} ({:.1} MiB, {:.3} bits per weight) in {:.1} s",
            path.display(),
            w.bytes as f64 / (1 << 20) as f64,
            (w.bytes.saturating_sub(info.header_bytes)) as f64 * 8.0 / info.n_params.max(1) as f64,
            w.seconds
        );
    };
    written(output, &w);
    if let Some(d) = &r.draft {
        let path = executor::draft_path(output);
        let w = executor::execute(
            d,
            &info,
            &path,
            std::io::stderr().is_terminal(),
            calib.as_ref(),
        )?;
        written(&path, &w);
        println!(
            "the draft decodes speculatively with the model: sintra-rt generate -m {} --draft {} -p PROMPT",
            output.display(),
            path.display()
        );
    }
    Ok(())
}
