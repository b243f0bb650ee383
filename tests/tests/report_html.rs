//! `report.html` (issue #19) in a real browser: Debian's Chromium, headless, loads the page a
//! run wrote (a file, nothing from the network), and its DOM holds the four plots as SVG and a
//! row for every experiment; a screenshot is kept in the target directory for people to look
//! at (`target/screenshots/report.png`).

use std::process::Command;

#[test]
fn chromium_shows_the_plots_and_every_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sintra = crate::planner::release_sintra(&home, dir.path());
    let run = crate::planner::mock_run(&sintra, "4");
    let page = dir.path().join("out").join(&run).join("report.html");
    assert!(page.is_file(), "{}", page.display());
    let url = format!("file://{}", page.display());
    let chromium = |args: &[&str]| {
        let out = Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("chromium").display()
            ))
            .args(args)
            .arg(&url)
            .output()
            .expect("chromium (Debian package `chromium`, installed by scripts/setup.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
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
    let shots = sintra_tests::target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("report.png");
    let _ = std::fs::remove_file(&png);
    chromium(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1400,1800",
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{}",
        png.display()
    );
    eprintln!("screenshot: {}", png.display());
}
