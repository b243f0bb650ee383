//! `sintra ui`: a local, read-only web dashboard over `history.db` (issue #19): the runs, one
//! run's plots and experiments (a run in progress updates in place, no reload), two recipes
//! side by side. Served by `tiny_http`; pages from [`pages`], data from [`store`].
//!
//! Safe by default: it listens on loopback unless `--allow-remote` is given for another
//! address; on loopback it answers only requests that name a loopback host (a web page
//! elsewhere cannot reach it by DNS rebinding); it answers GET and HEAD only and opens the
//! database read-only; every page forbids scripts other than its own and framing.

mod pages;
mod store;

use crate::model_info::ModelInfo;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tiny_http::{Header, Method, Request, Response, Server};

/// The address `sintra ui` listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// Runs the index lists.
const MAX_RUNS: usize = 200;

/// Where to listen, checked: every address `listen` names must be loopback unless
/// `allow_remote`.
pub fn check_listen(listen: &str, allow_remote: bool) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .with_context(|| format!("--listen {listen}: not an address such as 127.0.0.1:8470"))?
        .collect();
    if addrs.is_empty() {
        bail!("--listen {listen}: names no address");
    }
    if !allow_remote {
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "--listen {listen}: {a} is not a loopback address; the dashboard shows the whole \
                 history to whoever reaches it, so serving it beyond this machine needs \
                 --allow-remote"
            );
        }
    }
    Ok(addrs)
}

struct State {
    db: PathBuf,
    loopback_only: bool,
    models: Mutex<HashMap<String, Option<Arc<ModelInfo>>>>,
}

/// Serve the dashboard over `db` until killed.
pub fn serve(db: &Path, listen: &str, allow_remote: bool) -> Result<()> {
    let addrs = check_listen(listen, allow_remote)?;
    let server = Server::http(&addrs[..])
        .map_err(|e| anyhow::anyhow!("--listen {listen}: cannot listen: {e}"))?;
    let at = server
        .server_addr()
        .to_ip()
        .context("the dashboard's listener has no IP address")?;
    let loopback_only = addrs.iter().all(|a| a.ip().is_loopback());
    println!(
        "sintra ui: http://{at}/ shows {} (read-only{}); Ctrl-C stops it",
        db.display(),
        if loopback_only {
            ", this machine only"
        } else {
            ", reachable from other machines"
        }
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let state = Arc::new(State {
        db: db.to_path_buf(),
        loopback_only,
        models: Mutex::new(HashMap::new()),
    });
    let server = Arc::new(server);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (server, state) = (server.clone(), state.clone());
            std::thread::spawn(move || loop {
                match server.recv() {
                    Ok(rq) => answer(&state, rq),
                    Err(e) => tracing::warn!("sintra ui: {e}"),
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

fn header(k: &str, v: &str) -> Header {
    // Only called with ASCII names and values written here.
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("an ASCII header")
}

/// A response with the security headers every answer carries.
fn respond(rq: Request, status: u16, content_type: &str, body: String) {
    let mut r = Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("X-Frame-Options", "DENY"))
        .with_header(header("Referrer-Policy", "no-referrer"))
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    if status == 405 {
        r = r.with_header(header("Allow", "GET, HEAD"));
    }
    if let Err(e) = rq.respond(r) {
        tracing::debug!("sintra ui: the client went away: {e}");
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

/// Whether a Host header names this machine (`localhost`, `127.x`, `::1`), any port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn answer(st: &State, rq: Request) {
    if !matches!(rq.method(), Method::Get | Method::Head) {
        let m = rq.method().to_string();
        return respond(
            rq,
            405,
            HTML,
            pages::message(
                "Read-only",
                &format!("The dashboard answers GET and HEAD only, not {m}."),
            ),
        );
    }
    if st.loopback_only {
        let host = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Host"))
            .map(|h| h.value.as_str().to_string());
        if !host.as_deref().is_some_and(loopback_host) {
            return respond(
                rq,
                403,
                HTML,
                pages::message(
                    "Forbidden",
                    &format!(
                        "This dashboard serves this machine only; the request named host {:?}.",
                        host.unwrap_or_default()
                    ),
                ),
            );
        }
    }
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query = parse_query(query);
    let (status, ctype, body) = match route(st, path, &query) {
        Ok(r) => r,
        Err(e) => (
            500,
            HTML,
            pages::message("The history could not be read", &format!("{e:#}")),
        ),
    };
    respond(rq, status, ctype, body)
}

type Answer = (u16, &'static str, String);

fn route(st: &State, path: &str, query: &[(String, String)]) -> Result<Answer> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let db = st.db.display().to_string();
    Ok(match path {
        "/" => {
            let live = runs_live(st)?;
            (200, HTML, pages::index(&db, &live))
        }
        "/api/runs" => (200, JSON, runs_live(st)?.json(q("state"))),
        "/app.js" => (
            200,
            "text/javascript; charset=utf-8",
            pages::SCRIPT.to_string(),
        ),
        "/compare" => compare(st, query)?,
        _ => {
            if let Some(id) = path.strip_prefix("/api/runs/") {
                match run_detail(st, id)? {
                    Some(d) => {
                        let model = model(st, &d.run.model_path);
                        let live = pages::run_live(&d, model.as_deref());
                        (200, JSON, live.json(q("state")))
                    }
                    None => (
                        404,
                        JSON,
                        serde_json::json!({ "error": format!("no run {id} in {db}") }).to_string(),
                    ),
                }
            } else if let Some(id) = path.strip_prefix("/runs/") {
                match run_detail(st, id)? {
                    Some(d) => {
                        let model = model(st, &d.run.model_path);
                        let live = pages::run_live(&d, model.as_deref());
                        (200, HTML, pages::run(&d.run, &live))
                    }
                    None => (
                        404,
                        HTML,
                        pages::message("No such run", &format!("{db} has no run {id}.")),
                    ),
                }
            } else {
                (
                    404,
                    HTML,
                    pages::message("Not found", &format!("Nothing at {path}.")),
                )
            }
        }
    })
}

fn runs_live(st: &State) -> Result<pages::Live> {
    let db = st.db.display().to_string();
    Ok(match store::open(&st.db)? {
        Some(conn) => pages::runs_live(Some(&store::runs(&conn, MAX_RUNS)?), &db),
        None => pages::runs_live(None, &db),
    })
}

fn run_detail(st: &State, id: &str) -> Result<Option<store::RunDetail>> {
    match store::open(&st.db)? {
        Some(conn) => store::run(&conn, id),
        None => Ok(None),
    }
}

/// The run's source model, read once (for the type maps); `None` when it is not readable here.
fn model(st: &State, path: &str) -> Option<Arc<ModelInfo>> {
    let mut cache = st.models.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(path.to_string())
        .or_insert_with(|| ModelInfo::load(Path::new(path)).ok().map(Arc::new))
        .clone()
}

/// `/compare?e=RUN:ITERATION&e=RUN:ITERATION`.
fn compare(st: &State, query: &[(String, String)]) -> Result<Answer> {
    let picks: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "e")
        .map(|(_, v)| v.as_str())
        .collect();
    let bad = |text: String| Ok((400, HTML, pages::message("Pick two recipes", &text)));
    if picks.len() != 2 {
        return bad(format!(
            "Tick exactly two experiments to compare ({} given): /compare?e=RUN:ITERATION&e=RUN:ITERATION.",
            picks.len()
        ));
    }
    let mut sides = Vec::new();
    for p in &picks {
        let Some((id, it)) = p.rsplit_once(':') else {
            return bad(format!("{p:?} is not RUN:ITERATION."));
        };
        let Ok(it) = it.parse::<u32>() else {
            return bad(format!("{p:?}: {it:?} is not an iteration number."));
        };
        let Some(d) = run_detail(st, id)? else {
            return Ok((
                404,
                HTML,
                pages::message("No such run", &format!("no run {id}")),
            ));
        };
        let Some(e) = d.experiments.iter().find(|e| e.iteration == it).cloned() else {
            return Ok((
                404,
                HTML,
                pages::message(
                    "No such experiment",
                    &format!("run {id} has no experiment #{it}"),
                ),
            ));
        };
        sides.push((d.run, e));
    }
    // The type maps and the tensor list need one model; two runs of different models compare
    // by their figures only.
    let model = if sides[0].0.model_path == sides[1].0.model_path {
        model(st, &sides[0].0.model_path)
    } else {
        None
    };
    let page = pages::compare(
        [(&sides[0].0, &sides[0].1), (&sides[1].0, &sides[1].1)],
        model.as_deref(),
    );
    Ok((200, HTML, page))
}

/// `a=1&b=x%3Ay` into pairs, `+` and `%XX` decoded (invalid escapes kept as they are).
fn parse_query(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_allow_remote() {
        assert!(check_listen("127.0.0.1:0", false).is_ok());
        assert!(check_listen("[::1]:0", false).is_ok());
        let err = check_listen("0.0.0.0:8470", false).unwrap_err().to_string();
        assert!(
            err.contains("--allow-remote") && err.contains("0.0.0.0"),
            "{err}"
        );
        assert!(check_listen("0.0.0.0:8470", true).is_ok());
        assert!(check_listen("nonsense", false).is_err());
    }

    #[test]
    fn hosts_that_name_this_machine() {
        for h in [
            "127.0.0.1:8470",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.1.2.3",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8470",
            "10.0.0.1:8470",
            "",
            "[::2]:1",
            "localhost.evil",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("e=run-1%3A3&e=r%3a4&x=a+b&bad=%zz&end=%4"),
            [
                ("e", "run-1:3"),
                ("e", "r:4"),
                ("x", "a b"),
                ("bad", "%zz"),
                ("end", "%4")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }
}
