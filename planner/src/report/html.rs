//! `report.html` (issue #19): one self-contained file (no network, no script) for people who
//! want to look rather than read: speed against accuracy with the Pareto front and the
//! targets, size against KL divergence, the type each layer's tensors got in the best recipe,
//! speed per device, and every experiment's row. The plots are drawn by `plotters` (SVG
//! backend) and inlined. `report.md` stays for terminals and diffs.

use crate::checkpoint::Checkpoint;
use crate::compare::Compared;
use crate::experiment::{best, pareto, Experiment};
use crate::model_info::ModelInfo;
use crate::targets::Targets;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;

/// The page for run `cp` of the model named `model_name` (`model`: the source, for the type
/// map; without it that plot is left out and says why).
pub fn page(cp: &Checkpoint, model_name: &str, model: Option<&ModelInfo>) -> String {
    let exps = &cp.experiments;
    let b = best(exps);
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sintra run {id}</title>\n<style>{CSS}</style></head><body>\n<h1>{model} on {device}</h1>\n<p class=\"meta\">Run <code>{id}</code>{mock} · targets: {speed}, top-1 ≥ {acc:.3} · {stop}</p>\n",
        id = esc(&cp.run_id),
        model = esc(model_name),
        device = esc(&cp.profile.name),
        mock = if cp.config.mock { " · <b>MOCK: nothing was written or measured</b>" } else { "" },
        speed = esc(&cp.targets.speed_text()),
        acc = cp.targets.min_accuracy(),
        stop = esc(cp.stop_reason.as_deref().unwrap_or("running or interrupted")),
    );
    let _ = match b {
        Some(b) => writeln!(s, "<p class=\"best\">Best: {}</p>", best_text(b)),
        None => writeln!(s, "<p class=\"best\">No experiment succeeded.</p>"),
    };
    s.push_str(&plots(exps, &cp.compared, &cp.targets, model));
    s.push_str("<h2>Experiments</h2>\n<table id=\"experiments\"><thead><tr>");
    s.push_str(HEADER);
    s.push_str("</tr></thead><tbody>\n");
    for e in exps {
        s.push_str(&row(e, b, ""));
    }
    s.push_str("</tbody></table>\n");
    compared_table(&mut s, &cp.compared);
    s.push_str("<p class=\"meta\">Written by sintra. Speed: median of repetitions after a warm-up, the original re-measured in interleaved rounds; quality: against the original on held-out text, with standard errors.</p>\n</body></html>\n");
    s
}

/// `<b>#3 Q4_K</b> — 84.2 MiB, 41.30 tok/s, top-1 0.9120 ± 0.0100 (meets every target)`.
pub(crate) fn best_text(b: &Experiment) -> String {
    format!(
        "<b>#{} {}</b> — {:.1} MiB, {}, top-1 {} ({})",
        b.iteration,
        esc(&b.label),
        b.size_bytes as f64 / (1 << 20) as f64,
        b.tps().map_or("-".into(), |t| format!("{t:.2} tok/s")),
        b.quality
            .as_ref()
            .map_or("-".into(), |q| esc(&q.top1_text())),
        if b.passes() {
            "meets every target"
        } else {
            "misses a target"
        }
    )
}

/// The four plots in a grid, each a `<figure>` with an id (`plot-speed-accuracy`,
/// `plot-size-kld`, `plot-type-map`, `plot-devices`) holding an SVG or saying why there is none.
/// `compared`: files measured beside the candidates (`--compare`), drawn as squares.
pub(crate) fn plots(
    exps: &[Experiment],
    compared: &[Compared],
    targets: &Targets,
    model: Option<&ModelInfo>,
) -> String {
    let b = best(exps);
    let plots: [(&str, &str, Option<String>); 4] = [
        (
            "plot-speed-accuracy",
            "Speed against accuracy",
            speed_accuracy(exps, compared, targets),
        ),
        (
            "plot-size-kld",
            "Size against KL divergence",
            size_kld(exps, compared),
        ),
        (
            "plot-type-map",
            "Types of the best recipe, per layer and tensor",
            b.zip(model).and_then(|(b, m)| type_map(b, m)),
        ),
        ("plot-devices", "Speed per device", devices(exps)),
    ];
    let mut s = String::from("<div class=\"plots\">\n");
    for (id, title, svg) in plots {
        let _ = writeln!(s, "<figure id=\"{id}\"><figcaption>{title}</figcaption>");
        match svg {
            Some(svg) => s.push_str(&svg),
            None => s.push_str("<p class=\"none\">Nothing to draw yet.</p>"),
        }
        s.push_str("</figure>\n");
    }
    s.push_str("</div>\n");
    s
}

/// The experiments table's header cells (after any leading cell a caller adds).
pub(crate) const HEADER: &str = "<th>#</th><th>recipe</th><th>by</th><th>MiB</th><th>tok/s</th><th>× original</th><th>top-1 ± se</th><th>KLD ± se</th><th>targets</th>";

/// One experiment's `<tr>` (`data-iteration`, class `best` for the run's best), after the
/// HTML cell `lead` (empty for none).
pub(crate) fn row(e: &Experiment, best: Option<&Experiment>, lead: &str) -> String {
    let verdict = match (&e.error, &e.verdict) {
        (Some(err), _) => format!("failed: {}", esc(err)),
        (None, Some(_)) if e.passes() => "all met".to_string(),
        (None, Some(v)) => esc(&v.summary()),
        _ => "-".into(),
    };
    format!(
        "<tr class=\"experiment{}\" data-iteration=\"{}\">{lead}<td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>\n",
        if best.is_some_and(|b| b.iteration == e.iteration) { " best" } else { "" },
        e.iteration,
        e.iteration,
        esc(&e.label),
        esc(&e.architect),
        e.size_bytes as f64 / (1 << 20) as f64,
        e.tps().map_or("-".into(), |t| format!("{t:.2}")),
        e.speed
            .as_ref()
            .and_then(|s| s.baseline)
            .map_or("-".into(), |b| format!("{:.3}", b.ratio)),
        e.quality.as_ref().map_or("-".into(), |q| esc(&q.top1_text())),
        e.quality.as_ref().map_or("-".into(), |q| esc(&q.kld_text())),
        verdict
    )
}

pub(crate) const CSS: &str = "body{font-family:sans-serif;margin:2em;max-width:1400px;color:#222}h1{font-size:1.4em}.meta{color:#555}.best{font-size:1.1em}.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(640px,1fr));gap:1em}figure{margin:0;border:1px solid #ddd;padding:.5em}figcaption{font-weight:bold;margin-bottom:.3em}table{border-collapse:collapse;margin-top:1em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}td.l{text-align:left}tr.best{background:#eef6ee}.none{color:#777}";

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Axis range around `v` with a margin, never empty.
fn range(v: impl Iterator<Item = f64> + Clone) -> std::ops::Range<f64> {
    let lo = v.clone().fold(f64::INFINITY, f64::min);
    let hi = v.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-6);
    (lo - pad)..(hi + pad)
}

const W: (u32, u32) = (640, 420);

fn speed_accuracy(exps: &[Experiment], compared: &[Compared], targets: &Targets) -> Option<String> {
    let pts: Vec<(f64, f64, &Experiment)> = exps
        .iter()
        .filter_map(|e| Some((e.top1()?, e.tps()?, e)))
        .collect();
    let refs: Vec<(f64, f64, &str)> = compared
        .iter()
        .filter_map(|c| Some((c.top1()?, c.tps()?, c.label.as_str())))
        .collect();
    if pts.is_empty() && refs.is_empty() {
        return None;
    }
    let (tps_t, acc_t) = (targets.min_tps(), targets.min_accuracy());
    let xs = range(
        pts.iter()
            .map(|p| p.0)
            .chain(refs.iter().map(|p| p.0))
            .chain([acc_t]),
    );
    let ys = range(
        pts.iter()
            .map(|p| p.1)
            .chain(refs.iter().map(|p| p.1))
            .chain([tps_t]),
    );
    let front: Vec<(f64, f64)> = pareto(exps)
        .iter()
        .filter_map(|e| Some((e.top1()?, e.tps()?)))
        .collect();
    let mut out = String::new();
    draw(&mut out, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(xs.clone(), ys.clone())?;
        c.configure_mesh()
            .light_line_style(WHITE)
            .x_desc("top-1 agreement with the original")
            .y_desc("generation tok/s")
            .draw()?;
        let target = RGBColor(200, 60, 60);
        c.draw_series(LineSeries::new(
            [(xs.start, tps_t), (xs.end, tps_t)],
            target.stroke_width(1),
        ))?
        .label(format!("targets: {tps_t:.1} tok/s, top-1 {acc_t:.3}"))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], target));
        c.draw_series(LineSeries::new(
            [(acc_t, ys.start), (acc_t, ys.end)],
            target.stroke_width(1),
        ))?;
        let blue = RGBColor(40, 90, 180);
        c.draw_series(LineSeries::new(front.clone(), blue.stroke_width(2)))?
            .label("Pareto front")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], blue));
        c.draw_series(pts.iter().map(|(x, y, e)| {
            let color = if e.passes() {
                RGBColor(40, 150, 60)
            } else {
                RGBColor(120, 120, 120)
            };
            EmptyElement::at((*x, *y))
                + Circle::new((0, 0), 5, color.filled())
                + Text::new(format!("#{}", e.iteration), (7, -12), ("sans-serif", 12))
        }))?;
        draw_compared(&mut c, &refs)?;
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    });
    Some(out)
}

fn size_kld(exps: &[Experiment], compared: &[Compared]) -> Option<String> {
    let pts: Vec<(f64, f64, u32)> = exps
        .iter()
        .filter_map(|e| {
            let q = e.quality.as_ref()?;
            Some((e.size_bytes as f64 / (1 << 20) as f64, q.kld, e.iteration))
        })
        .collect();
    let refs: Vec<(f64, f64, &str)> = compared
        .iter()
        .filter_map(|c| {
            Some((
                c.size_bytes as f64 / (1 << 20) as f64,
                c.kld()?,
                c.label.as_str(),
            ))
        })
        .collect();
    if pts.is_empty() && refs.is_empty() {
        return None;
    }
    let xs = range(pts.iter().map(|p| p.0).chain(refs.iter().map(|p| p.0)));
    let ys = range(
        pts.iter()
            .map(|p| p.1)
            .chain(refs.iter().map(|p| p.1))
            .chain([0.0]),
    );
    let mut out = String::new();
    draw(&mut out, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(xs, ys)?;
        c.configure_mesh()
            .light_line_style(WHITE)
            .x_desc("file size, MiB")
            .y_desc("KL divergence from the original")
            .draw()?;
        let purple = RGBColor(150, 80, 160);
        c.draw_series(pts.iter().map(|(x, y, i)| {
            EmptyElement::at((*x, *y))
                + Circle::new((0, 0), 5, purple.filled())
                + Text::new(format!("#{i}"), (7, -12), ("sans-serif", 12))
        }))?
        .label("this run's recipes")
        .legend(move |(x, y)| Circle::new((x + 8, y), 5, purple.filled()));
        draw_compared(&mut c, &refs)?;
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    });
    Some(out)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The `--compare` files as orange squares, each labelled with its type, under one legend entry.
fn draw_compared(c: &mut Chart<'_, '_>, refs: &[(f64, f64, &str)]) -> DrawResult {
    if refs.is_empty() {
        return Ok(());
    }
    let orange = RGBColor(230, 120, 20);
    c.draw_series(refs.iter().map(|(x, y, label)| {
        EmptyElement::at((*x, *y))
            + Rectangle::new([(-5, -5), (5, 5)], orange.filled())
            + Text::new(label.to_string(), (7, 4), ("sans-serif", 12))
    }))?
    .label("measured beside (--compare)")
    .legend(move |(x, y)| Rectangle::new([(x + 3, y - 5), (x + 13, y + 5)], orange.filled()));
    Ok(())
}

/// The `--compare` files' rows (`<table id="compared">`), when there are any.
pub(crate) fn compared_table(s: &mut String, compared: &[Compared]) {
    if compared.is_empty() {
        return;
    }
    s.push_str("<h2>Measured beside (--compare)</h2>\n<p class=\"meta\">Measured as the candidates were, in this run: references, not results.</p>\n<table id=\"compared\"><thead><tr><th>file</th><th>type</th><th>MiB</th><th>tok/s</th><th>top-1 ± se</th><th>KLD ± se</th></tr></thead><tbody>\n");
    for c in compared {
        let _ = writeln!(
            s,
            "<tr data-compared=\"{}\"><td><code>{}</code></td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.label),
            esc(&c.file_name()),
            esc(&c.label),
            c.size_bytes as f64 / (1 << 20) as f64,
            match (&c.error, c.tps()) {
                (Some(e), _) => format!("not measured: {}", esc(e)),
                (None, Some(t)) => format!("{t:.2}"),
                (None, None) => "-".into(),
            },
            c.quality.as_ref().map_or("-".into(), |q| esc(&q.top1_text())),
            c.quality.as_ref().map_or("-".into(), |q| esc(&q.kld_text())),
        );
    }
    s.push_str("</tbody></table>\n");
}

/// A colour per type: bits per weight from red (few) to blue (many).
fn type_color(t: formats::quant::GgmlType) -> RGBColor {
    let bpw = t.bits_per_weight();
    let f = ((bpw - 2.0) / 14.0).clamp(0.0, 1.0);
    RGBColor(
        (220.0 - 170.0 * f) as u8,
        (80.0 + 80.0 * f) as u8,
        (60.0 + 170.0 * f) as u8,
    )
}

pub(crate) fn type_map(b: &Experiment, model: &ModelInfo) -> Option<String> {
    let recipe = crate::recipe::Recipe::from_json(&b.recipe).ok()?;
    let plan = recipe.plan(model);
    let mut classes: Vec<String> = Vec::new();
    for p in &plan {
        if let (Some(l), true) = (p.layer, p.dims.len() >= 2) {
            let class = p.name[format!("blk.{l}.").len()..]
                .trim_end_matches(".weight")
                .to_string();
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
    }
    if classes.is_empty() {
        return None;
    }
    let n_layers = model.n_layers;
    let mut types: Vec<formats::quant::GgmlType> = Vec::new();
    let mut cells = Vec::new();
    for p in &plan {
        let (Some(l), true) = (p.layer, p.dims.len() >= 2) else {
            continue;
        };
        let class = p.name[format!("blk.{l}.").len()..].trim_end_matches(".weight");
        let row = classes.iter().position(|c| c == class)?;
        if !types.contains(&p.to) {
            types.push(p.to);
        }
        cells.push((l, row, p.to));
    }
    types.sort_by(|a, b| a.bits_per_weight().total_cmp(&b.bits_per_weight()));
    let dropped = recipe.drop_layers.clone();
    let mut out = String::new();
    let rows = classes.len();
    draw(&mut out, |root| {
        let (plot, legend) = root.split_horizontally(W.0 - 110);
        let mut c = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(110)
            .build_cartesian_2d(0u32..n_layers, 0usize..rows)?;
        let labels = classes.clone();
        // Labels sit on the ticks between rows: moved up half a row to name the row below.
        let row_px = c.plotting_area().dim_in_pixel().1 as i32 / rows.max(1) as i32;
        c.configure_mesh()
            .disable_mesh()
            .x_desc("layer")
            .y_labels(rows + 1)
            .y_label_offset(-row_px / 2)
            .y_label_formatter(&|r: &usize| labels.get(*r).cloned().unwrap_or_default())
            .draw()?;
        c.draw_series(
            cells
                .iter()
                .map(|&(l, r, t)| Rectangle::new([(l, r), (l + 1, r + 1)], type_color(t).filled())),
        )?;
        c.draw_series(
            dropped.iter().map(|&l| {
                Rectangle::new([(l, 0), (l + 1, rows)], RGBColor(210, 210, 210).filled())
            }),
        )?;
        for (i, t) in types.iter().enumerate() {
            let y = 20 + 22 * i as i32;
            legend.draw(&Rectangle::new(
                [(5, y), (20, y + 14)],
                type_color(*t).filled(),
            ))?;
            legend.draw(&Text::new(t.to_string(), (26, y), ("sans-serif", 13)))?;
        }
        if !dropped.is_empty() {
            let y = 20 + 22 * types.len() as i32;
            legend.draw(&Rectangle::new(
                [(5, y), (20, y + 14)],
                RGBColor(210, 210, 210).filled(),
            ))?;
            legend.draw(&Text::new("dropped", (26, y), ("sans-serif", 13)))?;
        }
        Ok(())
    });
    Some(out)
}

/// Each candidate's speed on each device of a fleet run; on one device, each candidate's speed
/// there.
fn devices(exps: &[Experiment]) -> Option<String> {
    let mut bars: Vec<(String, f64)> = Vec::new();
    for e in exps {
        if e.fleet.is_empty() {
            if let Some(t) = e.tps() {
                let on = e
                    .speed
                    .as_ref()
                    .map_or(String::new(), |s| s.measured_on.clone());
                bars.push((format!("#{} on {on}", e.iteration), t));
            }
        } else {
            for d in &e.fleet {
                if let Some(s) = &d.speed {
                    bars.push((format!("#{} {}", e.iteration, d.host), s.tg_tps));
                }
            }
        }
    }
    if bars.is_empty() {
        return None;
    }
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max) * 1.1;
    let n = bars.len();
    let mut out = String::new();
    draw(&mut out, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(10)
            .build_cartesian_2d(0.0..top.max(1.0), 0.0..n as f64)?;
        c.configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .light_line_style(WHITE)
            .x_desc("generation tok/s")
            .draw()?;
        c.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let y = (n - 1 - i) as f64;
            Rectangle::new(
                [(0.0, y + 0.15), (*v, y + 0.85)],
                RGBColor(60, 120, 190).filled(),
            )
        }))?;
        // Each bar's name and figure inside it, from the left.
        c.draw_series(bars.iter().enumerate().map(|(i, (label, v))| {
            let y = (n - 1 - i) as f64 + 0.5;
            Text::new(
                format!("{label}: {v:.1}"),
                (top * 0.01, y),
                ("sans-serif", 12)
                    .into_font()
                    .color(&WHITE)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )
        }))?;
        Ok(())
    });
    Some(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draw on an SVG of [`W`] into `out`; a drawing error leaves a note instead of a plot.
fn draw(
    out: &mut String,
    f: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) {
    let mut svg = String::new();
    let r = {
        let root = SVGBackend::with_string(&mut svg, W).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| f(&root).map_err(|e| e.to_string()))
            .and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match r {
        Ok(()) => out.push_str(&svg),
        Err(e) => {
            let _ = write!(
                out,
                "<p class=\"none\">The plot could not be drawn: {}</p>",
                esc(&e)
            );
        }
    }
}
