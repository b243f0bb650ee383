//! `sintra compress MODEL --recipe FILE -o OUT.gguf`: execute one recipe.

use crate::executor;
use crate::model_info::ModelInfo;
use crate::profile::RECIPE_TYPES;
use crate::recipe::Recipe;
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;

pub fn run(model: &Path, recipe: &Path, output: &Path) -> Result<()> {
    let text = std::fs::read_to_string(recipe)
        .with_context(|| format!("reading recipe {}", recipe.display()))?;
    let r = Recipe::from_json(&text).with_context(|| recipe.display().to_string())?;
    let info = ModelInfo::load(model)?;
    r.validate(&info, RECIPE_TYPES)
        .with_context(|| format!("{} does not fit {}", recipe.display(), model.display()))?;
    let w = executor::execute(&r, &info, output, std::io::stderr().is_terminal())?;
    println!(
        "wrote {} ({:.1} MiB, {:.3} bits per weight) in {:.1} s",
        output.display(),
        w.bytes as f64 / (1 << 20) as f64,
        (w.bytes.saturating_sub(info.header_bytes)) as f64 * 8.0 / info.n_params.max(1) as f64,
        w.seconds
    );
    Ok(())
}
