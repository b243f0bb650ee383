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

/// `sintra history --fleet`: every fleet device (host and hardware fingerprint), then each
/// model or candidate measured on the fleet with every device's latest figure side by side.
pub fn fleet(filter: Option<&str>, run: Option<&str>) -> Result<()> {
    let path = crate::home::sintra_home()?.join("history.db");
    if !path.exists() {
        println!("no history yet ({} does not exist)", path.display());
        return Ok(());
    }
    let h = History::open(&path)?;
    let devices = h.fleet_devices()?;
    println!("fleet devices ({}):", path.display());
    if devices.is_empty() {
        println!("  (none yet: sintra bench --fleet or sintra --fleet record them)");
    } else {
        println!(
            "  {:<14} {:<16} {:<12} {:<34} {:>5} {:>8}  {:<22} {:<28} {:<14} {:<20} {:>5}",
            "host",
            "fingerprint",
            "class",
            "cpu",
            "cores",
            "RAM",
            "kernel",
            "target",
            "kernels",
            "last seen",
            "meas."
        );
    }
    for d in &devices {
        let hw = &d.hardware;
        println!(
            "  {:<14} {:<16} {:<12} {:<34} {:>5} {:>5.1} GiB  {:<22} {:<28} {:<14} {:<20} {:>5}",
            d.host,
            d.fingerprint,
            d.class,
            if hw.cpu_model.is_empty() {
                "(not reported)"
            } else {
                &hw.cpu_model
            },
            hw.cores,
            hw.ram_bytes as f64 / (1u64 << 30) as f64,
            hw.kernel,
            hw.target,
            hw.isa,
            d.last_seen,
            d.measurements
        );
    }
    let rows = h.fleet_measurements(filter, run)?;
    // One group per measured thing: a run's candidate (or its original), or a model benched.
    type Key = (Option<String>, Option<u32>, String, String);
    let mut groups: Vec<(Key, Vec<&crate::history::FleetRow>)> = Vec::new();
    for r in &rows {
        let key: Key = (
            r.run_id.clone(),
            r.iteration,
            r.model.clone(),
            r.recipe.clone(),
        );
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => {
                // The latest figure per device (host and fingerprint) wins.
                g.1.retain(|o| !(o.host == r.host && o.fingerprint == r.fingerprint));
                g.1.push(r);
            }
            None => groups.push((key, vec![r])),
        }
    }
    println!("\ncomparisons (generation tok/s, median [min-max]; x the fastest device):");
    if groups.is_empty() {
        println!(
            "  (no fleet measurements{})",
            filter.map_or(String::new(), |f| format!(" matching '{f}'"))
        );
    }
    for ((run_id, iteration, model, recipe), rows) in groups {
        let what = match (&run_id, iteration) {
            (Some(r), Some(0)) => format!("{model}, the original (run {r})"),
            (Some(r), Some(i)) => format!("{model}, #{i} {recipe} (run {r})"),
            _ => format!("{model} (sintra bench --fleet)"),
        };
        println!("  {what}:");
        let fastest = rows.iter().filter_map(|r| r.tg_tps).fold(0.0f64, f64::max);
        for r in rows {
            let device = match &r.fingerprint {
                Some(f) => format!("{} [{f}]", r.host),
                None => r.host.clone(),
            };
            match r.tg_tps {
                Some(t) => println!(
                    "    {device:<34} {t:>9.2} tok/s {:<20} {:>5.2}x{}  {}",
                    match (r.tg_min, r.tg_max) {
                        (Some(a), Some(b)) => format!("[{a:.1}-{b:.1}]"),
                        _ => String::new(),
                    },
                    t / fastest.max(1e-9),
                    r.ratio
                        .map_or(String::new(), |x| format!(", {x:.3}x the original there")),
                    r.cpu_model.as_deref().unwrap_or("")
                ),
                None => println!(
                    "    {device:<34} {}: {}",
                    r.status,
                    r.error.as_deref().unwrap_or("no figure").replace('\n', " ")
                ),
            }
        }
    }
    Ok(())
}

/// `sintra history --datasette`: `history.metadata.json` beside `history.db` (written
/// atomically), and how to serve the two.
pub fn datasette() -> Result<()> {
    let home = crate::home::sintra_home()?;
    let db = home.join("history.db");
    // The database with every table, so that the metadata describes what datasette shows.
    drop(History::open(&db)?);
    let meta = home.join("history.metadata.json");
    let text = serde_json::to_string_pretty(&crate::history::datasette::metadata("history"))?;
    crate::home::write_atomic(&meta, text.as_bytes())?;
    println!("wrote {}", meta.display());
    println!(
        "serve it with: datasette serve {} --metadata {} (pip install datasette)",
        db.display(),
        meta.display()
    );
    Ok(())
}
