//! `sintra history`: past runs and the best recipe found per device and model.

use crate::history::History;
use anyhow::Result;

pub fn run(limit: usize) -> Result<()> {
    let path = crate::home::sintra_home()?.join("history.db");
    if !path.exists() {
        println!("no history yet ({} does not exist)", path.display());
        return Ok(());
    }
    let h = History::open(&path)?;
    let runs = h.runs(limit)?;
    println!("runs ({}):", path.display());
    println!(
        "  {:<22} {:<20} {:<10} {:<16} {:<18} {:>5}  best",
        "id", "started", "status", "device", "model", "exps"
    );
    for r in &runs {
        let best = r
            .best
            .as_ref()
            .map_or("-".to_string(), |(recipe, tps, top1)| {
                format!("{tps:.1} tok/s, top-1 {top1:.3}: {recipe}")
            });
        println!(
            "  {:<22} {:<20} {:<10} {:<16} {:<18} {:>5}  {}{}",
            r.id,
            r.started_at,
            r.status,
            r.device,
            r.model,
            r.n_experiments,
            best,
            if r.mock { " [mock]" } else { "" }
        );
        tracing::debug!(architect = %r.architect, run = %r.id);
    }
    println!("\nbest recipe meeting the targets, per device and model:");
    let best = h.best_per_device_model()?;
    if best.is_empty() {
        println!("  (none yet)");
    }
    for (device, model, recipe, tps, top1, mock) in best {
        println!(
            "  {device:<16} {model:<18} {tps:>8.1} tok/s  top-1 {top1:.3}  {recipe}{}",
            if mock { " [mock]" } else { "" }
        );
    }
    Ok(())
}
