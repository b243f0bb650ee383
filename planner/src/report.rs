//! The Reporter: `outputs/<run>/` gets `recipe.json` (the best recipe), `report.md` (targets,
//! every experiment, the Pareto front), `pareto.svg` (accuracy against speed, drawn by hand) and,
//! for real runs, `model.gguf` (moved there by the loop whenever a new best is measured).

use crate::checkpoint::Checkpoint;
use crate::experiment::{best, pareto, Experiment};
use crate::home::write_atomic;
use crate::targets::Targets;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// Write `recipe.json`, `report.md` and `pareto.svg` into `dir`.
pub mod html;

pub fn write(dir: &Path, cp: &Checkpoint, model_name: &str) -> Result<()> {
    write_with(dir, cp, model_name, None)
}

/// [`write`], with the source model at hand: the fit-before-download section then predicts peak
/// memory too.
pub fn write_with(
    dir: &Path,
    cp: &Checkpoint,
    model_name: &str,
    model: Option<&crate::model_info::ModelInfo>,
) -> Result<()> {
    let exps = &cp.experiments;
    if let Some(b) = best(exps) {
        let pretty = crate::recipe::Recipe::from_json(&b.recipe)
            .map(|r| r.to_json_pretty())
            .unwrap_or_else(|_| b.recipe.clone());
        write_atomic(&dir.join("recipe.json"), format!("{pretty}\n").as_bytes())?;
    }
    let mut md = markdown(cp, model_name);
    if let Some(prior) = &cp.prior {
        let n_ctx = (cp.config.bench.n_prompt + cp.config.bench.n_gen) as u64;
        md.push('\n');
        md.push_str(&crate::fit::report_section(
            prior,
            model,
            &cp.experiments,
            n_ctx,
        ));
    }
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    write_atomic(&dir.join("pareto.svg"), svg(cp).as_bytes())?;
    write_atomic(
        &dir.join("report.html"),
        html::page(cp, model_name, model).as_bytes(),
    )?;
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

pub fn markdown(cp: &Checkpoint, model_name: &str) -> String {
    let t = &cp.targets;
    let exps = &cp.experiments;
    let mut s = String::new();
    let mock = cp.config.mock;
    let _ = writeln!(s, "# sintra run {}\n", cp.run_id);
    if mock {
        let _ = writeln!(
            s,
            "> **MOCK RUN**: no model was written or measured; speed and quality come from the `--mock` formula.\n"
        );
    }
    let _ = writeln!(
        s,
        "- model: {model_name} (`{}`)\n- device: {} ({})\n- architect: {}\n- iterations: {} of at most {}\n- stopped: {}\n",
        cp.config.model_path.display(),
        cp.profile.name,
        cp.profile.constraints.cpu_arch,
        cp.config.provider,
        exps.len(),
        cp.config.max_iters,
        cp.stop_reason.as_deref().unwrap_or("not yet (resumable)")
    );
    let _ = writeln!(
        s,
        "## Targets\n\n| target | value | from |\n| --- | ---: | --- |"
    );
    if let Some(x) = t.min_speedup() {
        let _ = writeln!(
            s,
            "| speedup over the original (same rounds) | >= {x:.2}x | {} |",
            Targets::source(&t.min_speedup)
        );
    }
    let _ = writeln!(
        s,
        "| tokens/s (generation){} | >= {:.2} | {} |",
        if t.min_speedup.is_some() {
            ", judged only without the original beside a candidate"
        } else {
            ""
        },
        t.min_tps(),
        Targets::source(&t.min_tokens_per_second)
    );
    let _ = writeln!(
        s,
        "| accuracy (top-1 agreement) | >= {:.3} | {} |",
        t.min_accuracy(),
        Targets::source(&t.min_accuracy_score)
    );
    match t.max_latency() {
        Some(l) => {
            let _ = writeln!(
                s,
                "| latency (first token, {}-token prompt) | <= {l:.0} ms | {} |",
                cp.config.bench.n_prompt,
                Targets::source(&t.max_latency_ms)
            );
        }
        None => {
            let _ = writeln!(s, "| latency | not set | |");
        }
    }
    let _ = writeln!(
        s,
        "| memory | <= {:.0} MiB | {} |\n",
        t.max_memory_bytes() / (1 << 20) as f64,
        Targets::source(&t.max_memory_mib)
    );
    let _ = writeln!(s, "## Best recipe\n");
    match best(exps) {
        Some(b) => {
            let _ = writeln!(
                s,
                "Iteration {} ({}), {} targets: {}\n\n```json\n{}\n```\n",
                b.iteration,
                b.label,
                if b.passes() {
                    "meets all"
                } else {
                    "does NOT meet all"
                },
                b.verdict.as_ref().map_or(String::new(), |v| v.summary()),
                b.recipe
            );
        }
        None => {
            let _ = writeln!(s, "No experiment succeeded.\n");
        }
    }
    if let Some(evidence) = crate::experiment::infeasibility(exps, t) {
        let _ = writeln!(s, "## Targets not met\n");
        for l in evidence.lines() {
            let _ = writeln!(s, "- {l}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "## Experiments\n\nSpeed: median of the repetitions after a warm-up, rounds added until its 95% interval is within 5%, outliers left out and re-run; the original is re-measured in rounds interleaved with each candidate's (the \"vs original\" column is candidate / original in the same rounds). Quality: top-1 agreement and KL divergence with one standard error over the windows scored (more windows when two figures are within two standard errors). Load: CPU share used by other processes during the measurement / 1-minute load average.\n\n| # | recipe | by | size MiB | bits/w | tok/s (range) | vs original | pp tok/s | latency ms | top-1 ± se | KLD ± se | ΔPPL | windows | load | targets |\n| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for e in exps {
        let _ = writeln!(s, "{}", row(e));
    }
    let drafts: Vec<&Experiment> = exps.iter().filter(|e| e.draft.is_some()).collect();
    if !drafts.is_empty() {
        let _ = writeln!(
            s,
            "\n## Drafts (speculative decoding)\n\nEach draft was measured on the device with its candidate: greedy generation of held-out text with and without the draft, interleaved, the outputs checked equal by the runtime; a draft is kept when it makes generation at least {:.2}x faster.\n\n| # | draft recipe | draft MiB | drafted tokens kept | tok/s without | tok/s with | speed-up | kept |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
            crate::experiment::DRAFT_KEEP_RATIO
        );
        for e in drafts {
            let Some(d) = &e.draft else { continue };
            match (&d.speed, &d.error) {
                (Some(sp), _) => {
                    let _ = writeln!(
                        s,
                        "| {} | `{}` | {:.1} | {:.1}% ({} of {}) | {:.2} | {:.2} | {:.2}x | {} |",
                        e.iteration,
                        d.recipe,
                        mib(d.size_bytes),
                        100.0 * sp.acceptance(),
                        sp.accepted,
                        sp.drafted,
                        sp.plain_tps,
                        sp.spec_tps,
                        sp.ratio,
                        if d.kept { "yes" } else { "no" }
                    );
                }
                (None, err) => {
                    let _ = writeln!(
                        s,
                        "| {} | `{}` | {:.1} | failed: {} | | | | no |",
                        e.iteration,
                        d.recipe,
                        mib(d.size_bytes),
                        esc(err.as_deref().unwrap_or("not measured"))
                    );
                }
            }
        }
    }
    compared_section(&mut s, cp);
    fleet_section(&mut s, cp);
    let _ = writeln!(s, "\n## Pareto front (speed against accuracy)\n");
    for e in pareto(exps) {
        let _ = writeln!(
            s,
            "- #{} {}: {:.2} tok/s, top-1 {:.4}, {:.1} MiB",
            e.iteration,
            e.label,
            e.tps().unwrap_or(0.0),
            e.top1().unwrap_or(0.0),
            mib(e.size_bytes)
        );
    }
    let _ = writeln!(s, "\n![pareto](pareto.svg)");
    s
}

/// The experiments as a plain-text table for the terminal, the best marked `*`.
pub fn table(cp: &Checkpoint) -> String {
    let exps = &cp.experiments;
    let best_it = best(exps).map(|b| b.iteration);
    let f = |x: Option<f64>, p: usize| x.map_or("-".to_string(), |v| format!("{v:.p$}"));
    let mut rows: Vec<[String; 9]> = vec![[
        "#".into(),
        "recipe".into(),
        "MiB".into(),
        "tok/s (range)".into(),
        "x orig".into(),
        "top-1 ± se".into(),
        "KLD ± se".into(),
        "dPPL".into(),
        "targets".into(),
    ]];
    for e in exps {
        let verdict = match (&e.error, &e.verdict) {
            (Some(_), _) => "FAILED".to_string(),
            (None, Some(v)) if v.passes() => "all met".to_string(),
            (None, Some(v)) => format!(
                "missed {}",
                v.checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, None) => "-".into(),
        };
        rows.push([
            format!(
                "{}{}",
                e.iteration,
                if Some(e.iteration) == best_it {
                    "*"
                } else {
                    ""
                }
            ),
            e.label.clone(),
            format!("{:.1}", mib(e.size_bytes)),
            tps_text(e),
            ratio_text(e),
            e.quality.as_ref().map_or("-".into(), |q| q.top1_text()),
            e.quality.as_ref().map_or("-".into(), |q| q.kld_text()),
            f(e.quality.as_ref().map(|q| q.delta_ppl), 3),
            verdict,
        ]);
    }
    let mut w = [0usize; 9];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = format!(
        "targets: {}, top-1 >= {:.3}{}\n",
        cp.targets.speed_text(),
        cp.targets.min_accuracy(),
        if cp.config.mock { " [MOCK]" } else { "" }
    );
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            // Text columns to the left, numbers to the right.
            if matches!(i, 1 | 8) {
                line += &format!("{c}{}  ", " ".repeat(pad));
            } else {
                line += &format!("{}{c}  ", " ".repeat(pad));
            }
        }
        s += line.trim_end();
        s.push('\n');
    }
    s
}

fn row(e: &Experiment) -> String {
    let f = |x: Option<f64>, p: usize| x.map_or("-".to_string(), |v| format!("{v:.p$}"));
    let targets = match (&e.error, &e.verdict) {
        (Some(err), _) => format!("failed: {}", err.replace('|', "/")),
        (None, Some(v)) if v.passes() => "all met".to_string(),
        (None, Some(v)) => format!(
            "missed {}",
            v.checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, None) => "-".into(),
    };
    format!(
        "| {} | {} | {} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
        e.iteration,
        // A label's regular expressions hold `|`, which would end the markdown cell.
        e.label.replace('|', "\\|"),
        e.architect,
        mib(e.size_bytes),
        e.bpw,
        tps_text(e),
        ratio_text(e),
        f(e.speed.as_ref().map(|s| s.pp_tps), 1),
        f(e.speed.as_ref().map(|s| s.latency_ms), 0),
        e.quality.as_ref().map_or("-".into(), |q| q.top1_text()),
        e.quality.as_ref().map_or("-".into(), |q| q.kld_text()),
        f(e.quality.as_ref().map(|q| q.delta_ppl), 3),
        e.quality
            .as_ref()
            .map_or("-".into(), |q| q.windows.to_string()),
        e.speed
            .as_ref()
            .and_then(|s| s.load)
            .map_or("-".into(), |l| format!(
                "{:.0}% / {:.2}",
                100.0 * l.others_cpu_share,
                l.load_avg_1m
            )),
        targets,
        if e.mock { " (mock)" } else { "" }
    )
}

/// The `--compare` files, measured as the candidates were.
fn compared_section(s: &mut String, cp: &Checkpoint) {
    if cp.compared.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Measured beside (--compare)\n\nThese files (llama.cpp's presets, say) were measured as the candidates were, in this run; they are references, not results.\n\n| file | type | size MiB | tok/s (range) | top-1 ± se | KLD ± se | ΔPPL |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for c in &cp.compared {
        let name = c.file_name();
        match (&c.speed, &c.quality, &c.error) {
            (Some(sp), Some(q), None) => {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {:.1} | {} | {} | {} | {:+.3} |",
                    esc(&name),
                    esc(&c.label),
                    mib(c.size_bytes),
                    sp.tg.map_or(format!("{:.2}", sp.tg_tps), |t| format!(
                        "{:.2} ({:.1}-{:.1})",
                        t.median, t.min, t.max
                    )),
                    q.top1_text(),
                    q.kld_text(),
                    q.delta_ppl
                );
            }
            (.., err) => {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {:.1} | not measured: {} | | | |",
                    esc(&name),
                    esc(&c.label),
                    mib(c.size_bytes),
                    esc(err.as_deref().unwrap_or("no figures"))
                );
            }
        }
    }
}

/// A fleet run's devices side by side: each candidate's generation speed on every device
/// (and its speed-up over the original there), the devices' hardware, and each class's best.
fn fleet_section(s: &mut String, cp: &Checkpoint) {
    let exps = &cp.experiments;
    let mut hosts: Vec<&crate::measure::DeviceSpeed> = Vec::new();
    for d in exps.iter().flat_map(|e| &e.fleet) {
        match hosts.iter_mut().find(|h| h.host == d.host) {
            Some(h) if h.hardware.is_none() => *h = d,
            Some(_) => {}
            None => hosts.push(d),
        }
    }
    if hosts.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Fleet\n\nSpeed was measured on every device (each with the original interleaved), quality once on the planner's host; a candidate is judged on its slowest device.\n\n| device | class | hardware | fingerprint |\n| --- | --- | --- | --- |"
    );
    for h in &hosts {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            esc(&h.host),
            esc(&h.class),
            h.hardware
                .as_ref()
                .map_or("(never answered)".into(), |hw| esc(&format!(
                    "{}, {}, kernel {}",
                    hw.summary(),
                    hw.target,
                    hw.kernel
                ))),
            h.hardware
                .as_ref()
                .map_or(String::new(), |hw| hw.fingerprint())
        );
    }
    let _ = write!(s, "\n| # | recipe |");
    for h in &hosts {
        let _ = write!(s, " {} tok/s (x original) |", esc(&h.host));
    }
    let _ = write!(s, "\n| ---: | --- |");
    for _ in &hosts {
        let _ = write!(s, " ---: |");
    }
    let _ = writeln!(s);
    for e in exps.iter().filter(|e| !e.fleet.is_empty()) {
        let _ = write!(s, "| {} | {} |", e.iteration, esc(&e.label));
        for h in &hosts {
            let cell = match e.fleet.iter().find(|d| d.host == h.host) {
                Some(d) => match &d.speed {
                    Some(sp) => format!(
                        "{:.2}{}",
                        sp.tg_tps,
                        sp.baseline
                            .map_or(String::new(), |b| format!(" ({:.3}x)", b.ratio))
                    ),
                    None => d.status.clone(),
                },
                None => "-".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\nBest per device class (judged on the class's slowest device):\n"
    );
    for (class, best) in crate::optimize::per_class_best(exps, &cp.targets) {
        let _ = writeln!(
            s,
            "- {}: {}",
            esc(&class),
            esc(&crate::optimize::class_best_text(best.as_ref()))
        );
    }
}

/// `1.066x`: the candidate's speed over the original's, measured in the same rounds.
fn ratio_text(e: &Experiment) -> String {
    e.speed
        .as_ref()
        .and_then(|s| s.baseline)
        .map_or("-".into(), |b| format!("{:.3}x", b.ratio))
}

/// `41.30 (40.1-42.0)`: the median and the min-max range of the repetitions.
fn tps_text(e: &Experiment) -> String {
    match &e.speed {
        None => "-".into(),
        Some(s) => match s.tg {
            Some(t) => format!("{:.2} ({:.1}-{:.1})", s.tg_tps, t.min, t.max),
            None => format!("{:.2}", s.tg_tps),
        },
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Accuracy (y) against tokens/s (x): every measured experiment, the front joined by a line,
/// the best ringed, the targets dashed.
pub fn svg(cp: &Checkpoint) -> String {
    let (w, h, l, r, top, bot) = (640.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let exps: Vec<&Experiment> = cp
        .experiments
        .iter()
        .filter(|e| e.tps().is_some() && e.top1().is_some())
        .collect();
    let t = &cp.targets;
    let xs = exps.iter().filter_map(|e| e.tps()).chain([t.min_tps()]);
    let ys = exps
        .iter()
        .filter_map(|e| e.top1())
        .chain([t.min_accuracy()]);
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let pad = |a: f64, b: f64| {
        let d = (b - a).max(1e-6) * 0.1;
        (a - d, b + d)
    };
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1.min(1.0)));
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - bot - (y - y0) / (y1 - y0) * (h - top - bot);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = format!(
        "sintra run {}{}: accuracy vs speed",
        cp.run_id,
        if cp.config.mock { " (MOCK)" } else { "" }
    );
    let _ = writeln!(
        s,
        r#"<text x="{l}" y="24" font-size="14">{}</text>"#,
        esc(&title)
    );
    let _ = writeln!(
        s,
        r#"<line x1="{l}" y1="{b}" x2="{xr}" y2="{b}" stroke="black"/><line x1="{l}" y1="{top}" x2="{l}" y2="{b}" stroke="black"/>"#,
        b = h - bot,
        xr = w - r
    );
    for i in 0..=4 {
        let xv = x0 + (x1 - x0) * i as f64 / 4.0;
        let yv = y0 + (y1 - y0) * i as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{xv:.1}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{yv:.3}</text>"#,
            px(xv),
            h - bot + 16.0,
            l - 6.0,
            py(yv) + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">generation tokens/s</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">top-1 agreement</text>"#,
        (l + w - r) / 2.0,
        h - 12.0,
        (top + h - bot) / 2.0,
        (top + h - bot) / 2.0
    );
    let _ = writeln!(
        s,
        r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{b}" stroke="#c33" stroke-dasharray="4 3"/><line x1="{l}" y1="{y:.1}" x2="{xr}" y2="{y:.1}" stroke="#c33" stroke-dasharray="4 3"/>"##,
        x = px(t.min_tps()),
        y = py(t.min_accuracy()),
        b = h - bot,
        xr = w - r
    );
    let front = pareto(&cp.experiments);
    let pts: Vec<String> = front
        .iter()
        .map(|e| {
            format!(
                "{:.1},{:.1}",
                px(e.tps().unwrap_or(0.0)),
                py(e.top1().unwrap_or(0.0))
            )
        })
        .collect();
    if pts.len() > 1 {
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#36c" stroke-width="1.5"/>"##,
            pts.join(" ")
        );
    }
    let best_it = best(&cp.experiments).map(|b| b.iteration);
    for e in &exps {
        let (x, y) = (px(e.tps().unwrap_or(0.0)), py(e.top1().unwrap_or(0.0)));
        let color = if e.passes() { "#2a2" } else { "#888" };
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{color}"><title>{}</title></circle><text x="{:.1}" y="{:.1}" font-size="10">#{}</text>"#,
            esc(&format!("#{} {}", e.iteration, e.label)),
            x + 6.0,
            y - 4.0,
            e.iteration
        );
        if Some(e.iteration) == best_it {
            let _ = writeln!(
                s,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="8" fill="none" stroke="black" stroke-width="1.5"/>"#
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
