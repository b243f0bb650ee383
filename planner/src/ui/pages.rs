//! The dashboard's pages: the runs, one run (its plots and experiments, updating while it
//! runs) and two recipes side by side. Every value from the database is escaped; the only
//! script is [`SCRIPT`], served from `/app.js` (the pages' Content-Security-Policy allows no
//! other). Live parts are elements with an id `live-NAME`; `/api/...` answers their new HTML
//! with a `state` (a hash of it) so the script replaces them only when something changed.

use super::store::{Run, RunDetail};
use crate::experiment::{best, Experiment};
use crate::model_info::ModelInfo;
use crate::report::html::{self, esc};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

/// The live parts of a page, by name, and their state.
pub struct Live {
    pub parts: Vec<(&'static str, String)>,
}

impl Live {
    pub fn state(&self) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.parts.hash(&mut h);
        format!("{:016x}", h.finish())
    }

    /// `{"state": ..., "NAME": HTML, ...}`, or only the state when it is `known`.
    pub fn json(&self, known: Option<&str>) -> String {
        let state = self.state();
        let mut m = serde_json::Map::new();
        if known != Some(state.as_str()) {
            for (k, v) in &self.parts {
                m.insert((*k).to_string(), v.clone().into());
            }
        }
        m.insert("state".into(), state.into());
        serde_json::Value::Object(m).to_string()
    }

    fn part(&self, name: &str) -> &str {
        self.parts
            .iter()
            .find(|(k, _)| *k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

fn shell(title: &str, body: &str, live: Option<(&str, &Live)>) -> String {
    let data = match live {
        Some((url, l)) => format!(" data-live=\"{}\" data-state=\"{}\"", esc(url), l.state()),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}{EXTRA_CSS}</style><script src=\"/app.js\" defer></script></head><body{data}>\n<nav><a href=\"/\">Sintra</a> · read-only dashboard over the history <span id=\"poll-note\"></span></nav>\n{body}</body></html>\n",
        esc(title),
        html::CSS
    )
}

const EXTRA_CSS: &str = "nav{margin-bottom:1em;color:#555}nav a{font-weight:bold}.cols{display:grid;grid-template-columns:1fr 1fr;gap:1.5em}pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:30em}td.diff{color:#a33}#compare td,#differ td{text-align:left}tr.running td{background:#fff8e0}";

/// `/`: every run, newest first (live).
pub fn index(db: &str, live: &Live) -> String {
    let body = format!(
        "<h1>Runs</h1>\n<p class=\"meta\">{}</p>\n<table id=\"runs\"><thead><tr><th>run</th><th>started</th><th>status</th><th>model</th><th>device</th><th>architect</th><th>experiments</th><th>best</th></tr></thead><tbody id=\"live-runs\">{}</tbody></table>\n",
        esc(db),
        live.part("runs")
    );
    shell("Sintra: runs", &body, Some(("/api/runs", live)))
}

/// The live part of `/`: a row per run.
pub fn runs_live(runs: Option<&[RunDetail]>, db: &str) -> Live {
    let mut s = String::new();
    match runs {
        None => {
            let _ = write!(
                s,
                "<tr><td colspan=\"8\">No history yet: {} appears when the first run starts.</td></tr>",
                esc(db)
            );
        }
        Some([]) => s.push_str("<tr><td colspan=\"8\">No runs yet.</td></tr>"),
        Some(runs) => {
            for d in runs {
                let r = &d.run;
                let b = best(&d.experiments).map_or("-".to_string(), |b| {
                    format!(
                        "#{} {}: {}, top-1 {}",
                        b.iteration,
                        esc(&b.label),
                        b.tps().map_or("-".into(), |t| format!("{t:.1} tok/s")),
                        b.top1().map_or("-".into(), |t| format!("{t:.4}"))
                    )
                });
                let _ = writeln!(
                    s,
                    "<tr class=\"run{}\" data-run=\"{id}\"><td><a href=\"/runs/{id}\">{id}</a>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{b}</td></tr>",
                    if r.status == "running" { " running" } else { "" },
                    if r.mock { " <b>MOCK</b>" } else { "" },
                    esc(&r.started_at),
                    esc(&r.status),
                    esc(&r.model),
                    esc(&r.device),
                    esc(&r.architect),
                    r.n_experiments,
                    id = esc(&r.id),
                );
            }
        }
    }
    Live {
        parts: vec![("runs", s)],
    }
}

/// The live parts of `/runs/ID`: the heading's facts, the best, the plots, the rows.
pub fn run_live(d: &RunDetail, model: Option<&ModelInfo>) -> Live {
    let r = &d.run;
    let exps = &d.experiments;
    let b = best(exps);
    let mut head = format!(
        "Run <code>{}</code>{} · <span id=\"run-status\">{}</span> · started {}{} · architect {} · targets: {} · output {}",
        esc(&r.id),
        if r.mock { " · <b>MOCK: nothing was written or measured</b>" } else { "" },
        esc(&r.status),
        esc(&r.started_at),
        r.finished_at
            .as_deref()
            .map_or(String::new(), |f| format!(", finished {}", esc(f))),
        esc(&r.architect),
        r.targets.as_ref().map_or("unreadable".into(), |t| format!(
            "{}, top-1 ≥ {:.3}",
            esc(&t.speed_text()),
            t.min_accuracy()
        )),
        esc(&r.output_dir)
    );
    if model.is_none() {
        let _ = write!(
            head,
            " · the source model {} is not readable here, so the type map is left out",
            esc(&r.model_path)
        );
    }
    let best_text = match b {
        Some(b) => format!("Best so far: {}", html::best_text(b)),
        None => "No experiment has finished yet.".into(),
    };
    let mut plots = match &r.targets {
        Some(t) => html::plots(exps, &d.compared, t, model),
        None => "<p class=\"none\">The run's targets are unreadable: no plots.</p>".into(),
    };
    // The files measured beside the candidates (`--compare`), below the plots they are in.
    html::compared_table(&mut plots, &d.compared);
    let mut rows = String::new();
    for e in exps {
        let lead = format!(
            "<td><input type=\"checkbox\" name=\"e\" value=\"{}:{}\" aria-label=\"compare #{}\"></td>",
            esc(&r.id),
            e.iteration,
            e.iteration
        );
        rows.push_str(&html::row(e, b, &lead));
    }
    for (i, why) in &d.unreadable {
        let _ = writeln!(
            rows,
            "<tr class=\"unreadable\" data-iteration=\"{i}\"><td></td><td>{i}</td><td colspan=\"9\">this sintra cannot read the row: {}</td></tr>",
            esc(why)
        );
    }
    Live {
        parts: vec![
            ("head", head),
            ("best", best_text),
            ("plots", plots),
            ("rows", rows),
        ],
    }
}

/// `/runs/ID`.
pub fn run(r: &Run, live: &Live) -> String {
    let body = format!(
        "<h1>{} on {}</h1>\n<p class=\"meta\" id=\"live-head\">{}</p>\n<p class=\"best\" id=\"live-best\">{}</p>\n<div id=\"live-plots\">{}</div>\n<h2>Experiments</h2>\n<form action=\"/compare\" method=\"get\"><table id=\"experiments\"><thead><tr><th>compare</th>{}</tr></thead><tbody id=\"live-rows\">{}</tbody></table>\n<p><button type=\"submit\">Compare the two ticked recipes</button></p></form>\n",
        esc(&r.model),
        esc(&r.device),
        live.part("head"),
        live.part("best"),
        live.part("plots"),
        html::HEADER,
        live.part("rows"),
    );
    shell(
        &format!("Sintra run {}", r.id),
        &body,
        Some((&format!("/api/runs/{}", r.id), live)),
    )
}

/// `/compare`: two experiments side by side: figures, the tensors whose types differ, each
/// recipe's type map and JSON.
pub fn compare(sides: [(&Run, &Experiment); 2], model: Option<&ModelInfo>) -> String {
    let mut s = String::from("<h1>Two recipes side by side</h1>\n");
    type Figure = (&'static str, fn(&Experiment) -> String);
    let figures: [Figure; 8] = [
        ("recipe", |e| esc(&e.label)),
        ("architect", |e| esc(&e.architect)),
        ("size, MiB", |e| {
            format!("{:.2}", e.size_bytes as f64 / (1 << 20) as f64)
        }),
        ("bits per weight", |e| format!("{:.3}", e.bpw)),
        ("tok/s", |e| {
            e.tps().map_or("-".into(), |t| format!("{t:.2}"))
        }),
        ("× original", |e| {
            e.speed
                .as_ref()
                .and_then(|s| s.baseline)
                .map_or("-".into(), |b| format!("{:.3}", b.ratio))
        }),
        ("top-1 ± se", |e| {
            e.quality
                .as_ref()
                .map_or("-".into(), |q| esc(&q.top1_text()))
        }),
        ("KLD ± se", |e| {
            e.quality
                .as_ref()
                .map_or("-".into(), |q| esc(&q.kld_text()))
        }),
    ];
    s.push_str("<table id=\"compare\"><thead><tr><th></th>");
    for (r, e) in sides {
        let _ = write!(
            s,
            "<th><a href=\"/runs/{id}\">{id}</a> #{}</th>",
            e.iteration,
            id = esc(&r.id)
        );
    }
    s.push_str("</tr></thead><tbody>\n");
    for (name, f) in figures {
        let (a, b) = (f(sides[0].1), f(sides[1].1));
        let class = if a != b { " class=\"diff\"" } else { "" };
        let _ = writeln!(
            s,
            "<tr><th>{name}</th><td{class}>{a}</td><td{class}>{b}</td></tr>"
        );
    }
    let verdict = |e: &Experiment| match (&e.error, &e.verdict) {
        (Some(err), _) => format!("failed: {}", esc(err)),
        (None, Some(v)) => esc(&v.summary()),
        _ => "-".into(),
    };
    let _ = writeln!(
        s,
        "<tr><th>targets</th><td>{}</td><td>{}</td></tr></tbody></table>",
        verdict(sides[0].1),
        verdict(sides[1].1)
    );
    s.push_str("<div class=\"cols\">\n");
    for (_, e) in sides {
        let map = model
            .and_then(|m| html::type_map(e, m))
            .unwrap_or_else(|| "<p class=\"none\">No type map.</p>".into());
        let pretty = crate::recipe::Recipe::from_json(&e.recipe)
            .map(|r| r.to_json_pretty())
            .unwrap_or_else(|_| e.recipe.clone());
        let _ = writeln!(
            s,
            "<section class=\"side\" data-iteration=\"{}\"><h2>#{} {}</h2><figure class=\"type-map\">{map}</figure><p>{}</p><pre>{}</pre></section>",
            e.iteration,
            e.iteration,
            esc(&e.label),
            esc(&e.rationale),
            esc(&pretty)
        );
    }
    s.push_str("</div>\n");
    match model {
        Some(m) => {
            let plans = sides.map(|(_, e)| {
                crate::recipe::Recipe::from_json(&e.recipe)
                    .map(|r| r.plan(m))
                    .ok()
            });
            if let [Some(a), Some(b)] = &plans {
                let differ: Vec<_> = a
                    .iter()
                    .zip(b)
                    .filter(|(x, y)| x.to != y.to || x.dims != y.dims)
                    .collect();
                let _ = writeln!(
                    s,
                    "<h2 id=\"differ-title\">Tensors that differ ({} of {})</h2>",
                    differ.len(),
                    a.len()
                );
                // Grouped first (what changed into what, how many tensors, bytes each side),
                // then every tensor behind a disclosure.
                let mut groups: Vec<(String, String, usize, u64, u64)> = Vec::new();
                for (x, y) in &differ {
                    let (l, r) = (x.to.to_string(), y.to.to_string());
                    match groups.iter_mut().find(|g| g.0 == l && g.1 == r) {
                        Some(g) => {
                            g.2 += 1;
                            g.3 += x.n_bytes;
                            g.4 += y.n_bytes;
                        }
                        None => groups.push((l, r, 1, x.n_bytes, y.n_bytes)),
                    }
                }
                groups.sort_by_key(|g| std::cmp::Reverse(g.2));
                s.push_str("<table id=\"differ-groups\"><thead><tr><th>left</th><th>right</th><th>tensors</th><th>MiB left</th><th>MiB right</th></tr></thead><tbody>\n");
                for (l, r, n, bl, br) in &groups {
                    let _ = writeln!(
                        s,
                        "<tr><td class=\"l\">{l}</td><td class=\"l\">{r}</td><td>{n}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                        *bl as f64 / (1 << 20) as f64,
                        *br as f64 / (1 << 20) as f64
                    );
                }
                s.push_str("</tbody></table>\n");
                let _ = writeln!(
                    s,
                    "<details><summary>every tensor that differs ({})</summary>",
                    differ.len()
                );
                s.push_str("<table id=\"differ\"><thead><tr><th>tensor</th><th>left</th><th>right</th></tr></thead><tbody>\n");
                for (x, y) in &differ {
                    let _ = writeln!(
                        s,
                        "<tr><td>{}</td><td>{} {:?}</td><td>{} {:?}</td></tr>",
                        esc(&x.name),
                        x.to,
                        x.dims,
                        y.to,
                        y.dims
                    );
                }
                s.push_str("</tbody></table></details>\n");
            }
        }
        None => s.push_str(
            "<p class=\"none\">The source model is not readable here: no per-tensor comparison.</p>\n",
        ),
    }
    shell("Sintra: two recipes", &s, None)
}

/// A page saying what went wrong (404, 400, 500).
pub fn message(title: &str, text: &str) -> String {
    shell(
        title,
        &format!("<h1>{}</h1>\n<p>{}</p>\n", esc(title), esc(text)),
        None,
    )
}

/// `/app.js`: polls the page's `data-live` URL every second and replaces each `live-NAME`
/// element whose HTML changed, keeping ticked boxes ticked; no reload.
pub const SCRIPT: &str = r#""use strict";
(function () {
  const body = document.body;
  const url = body.dataset.live;
  if (!url) return;
  const note = document.getElementById("poll-note");
  async function tick() {
    try {
      const r = await fetch(url + "?state=" + encodeURIComponent(body.dataset.state || ""), { cache: "no-store" });
      if (!r.ok) throw new Error("the dashboard answered " + r.status);
      const j = await r.json();
      if (j.state !== body.dataset.state) {
        const ticked = new Set(Array.from(document.querySelectorAll("input[name=e]:checked"), (i) => i.value));
        for (const [k, v] of Object.entries(j)) {
          const el = document.getElementById("live-" + k);
          if (el && typeof v === "string") el.innerHTML = v;
        }
        document.querySelectorAll("input[name=e]").forEach((i) => { i.checked = ticked.has(i.value); });
        body.dataset.state = j.state;
        body.dataset.updates = String(Number(body.dataset.updates || "0") + 1);
      }
      if (note) note.textContent = "· live, checked " + new Date().toLocaleTimeString();
    } catch (e) {
      if (note) note.textContent = "· " + e.message + "; retrying";
    }
    setTimeout(tick, 1000);
  }
  setTimeout(tick, 1000);
})();
"#;
