//! `report.html` (issue #19) in a real browser: Debian's Chromium, headless, loads the page a
//! run wrote (a file, nothing from the network), and its DOM holds the four plots as SVG and a
//! row for every experiment; a screenshot is kept in the target directory for people to look
//! at (`target/screenshots/report.png`).

use sintra_tests::presets::Preset;
use std::path::Path;
use std::process::Command;

#[test]
fn chromium_shows_the_plots_and_every_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sintra = crate::planner::release_sintra(&home, dir.path());
    let run = crate::planner::mock_run(&sintra, "4");
    let page = dir.path().join("out").join(&run).join("report.html");
    assert!(page.is_file(), "{}", page.display());
    let chromium = |args: &[&str]| chromium(dir.path(), &page, args);
    let dom = chromium(&["--dump-dom"]);
    for id in [
        "plot-speed-accuracy",
        "plot-size-kld",
        "plot-type-map",
        "plot-devices",
    ] {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id} missing:\n{dom}"));
        let figure = &dom[at..at + dom[at..].find("</figure>").unwrap()];
        assert!(figure.contains("<svg"), "{id} has no plot: {figure}");
        assert!(
            figure.contains("<circle") || figure.contains("<rect"),
            "{id}: {figure}"
        );
    }
    for i in 1..=4 {
        assert!(
            dom.contains(&format!("data-iteration=\"{i}\"")),
            "experiment {i} has no row"
        );
    }
    assert!(dom.contains("MOCK"), "a mock run says so");
    screenshot(dir.path(), &page, "report.png");
}

/// Debian's Chromium, headless, on the file `page` with `args`; its stdout.
fn chromium(dir: &Path, page: &Path, args: &[&str]) -> String {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (Debian package `chromium`, installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `page`, kept as `target/screenshots/NAME`.
fn screenshot(dir: &Path, page: &Path, name: &str) {
    let shots = sintra_tests::target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(name);
    let _ = std::fs::remove_file(&png);
    chromium(
        dir,
        page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1400,1800",
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{}",
        png.display()
    );
    eprintln!("screenshot: {}", png.display());
}

/// `--compare` (issue #19): llama.cpp's own presets, made by `llama_model_quantize`, measured
/// beside a real run's recipe: in the output, report.md, the history, and report.html's tables
/// and plots (as Chromium shows them); not measured again on resume; bad files refused.
#[test]
fn llama_cpp_presets_measured_beside_the_recipes_are_in_the_report_and_plots() {
    // Nothing held depends on the speeds measured (figures > 0, sizes and KLDs ordered, one
    // iteration, a resume that measures nothing again): it runs beside the other tests that
    // load the machine, never beside a timed one.
    let _loading = sintra_tests::loading_lock();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sintra = crate::planner::release_sintra(&home, dir.path());
    let q8 = sintra_tests::presets::smollm2_preset(Preset::Q8_0);
    let q4km = sintra_tests::presets::smollm2_preset(Preset::Q4_K_M);
    let (q8s, q4kms) = (q8.to_str().unwrap(), q4km.to_str().unwrap());
    let out = sintra(&[
        "--auto-detect",
        "--max-iters",
        "1",
        "--no-sensitivity",
        "--target-accuracy",
        "0.5",
        "--compare",
        q8s,
        "--compare",
        q4kms,
        "--output-dir",
        "out",
    ])
    .output()
    .unwrap();
    let stdout = sintra_tests::succeeded(&out);
    for label in ["Q8_0", "Q4_K_M"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("measured beside: {label}: ")))
            .unwrap_or_else(|| panic!("{label} not measured:\n{stdout}"));
        assert!(line.contains("tok/s") && line.contains("KLD"), "{line}");
    }
    let run = crate::planner::run_id(&stdout);
    let run_dir = dir.path().join("out").join(&run);

    // The history: both, with figures that make sense (more bits, larger and closer).
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let rows: Vec<(String, i64, f64, f64)> = db
        .prepare("SELECT label, size_bytes, tps, kld FROM compared WHERE run_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([&run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (q8r, q4r) = (&rows[0], &rows[1]);
    assert_eq!((q8r.0.as_str(), q4r.0.as_str()), ("Q8_0", "Q4_K_M"));
    assert!(q8r.2 > 0.0 && q4r.2 > 0.0, "{rows:?}");
    assert!(
        q8r.1 > q4r.1 && q8r.3 < q4r.3,
        "Q8_0 is larger and closer than Q4_K_M: {rows:?}"
    );
    drop(db);

    // report.md and report.html.
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(md.contains("## Measured beside (--compare)"), "{md}");
    for (p, label) in [(&q8, "Q8_0"), (&q4km, "Q4_K_M")] {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(md.contains(&format!("| `{name}` | {label} |")), "{md}");
    }
    let page = run_dir.join("report.html");
    let dom = chromium(dir.path(), &page, &["--dump-dom"]);
    for label in ["Q8_0", "Q4_K_M"] {
        assert!(
            dom.contains(&format!("data-compared=\"{label}\"")),
            "{label} has no row"
        );
    }
    for id in ["plot-size-kld", "plot-speed-accuracy"] {
        let at = dom.find(&format!("id=\"{id}\"")).unwrap();
        let figure = &dom[at..at + dom[at..].find("</figure>").unwrap()];
        assert!(
            figure.contains("measured beside (--compare)"),
            "{id}: {figure}"
        );
        assert!(
            ["Q4_K_M", "Q8_0"]
                .iter()
                .all(|l| figure.split("<text").any(|t| t.contains(l))),
            "{id}: {figure}"
        );
        assert!(figure.contains("<rect"), "{id}: {figure}");
    }
    screenshot(dir.path(), &page, "report-compare.png");

    // A resumed run does not measure them again.
    let out = sintra(&["--resume", &run, "--max-iters", "2"])
        .output()
        .unwrap();
    let again = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{again}");
    assert!(!again.contains("measured beside"), "{again}");
    let db = rusqlite::Connection::open(home.join("history.db")).unwrap();
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM compared", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);

    // Files that are not the same model, or no model, and --mock: refused up front, named.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a model").unwrap();
    let gemma = sintra_tests::gemma3_270m_q4_k_m();
    for (file, says) in [
        (junk.to_str().unwrap(), "not a GGUF file"),
        (gemma.to_str().unwrap(), "a gemma3 model"),
    ] {
        let out = sintra(&["--auto-detect", "--max-iters", "1", "--compare", file])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(file) && err.contains(says),
            "{err}"
        );
    }
    let out = sintra(&["--auto-detect", "--mock", "--compare", q8s])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--mock"), "{err}");
}
