//! `sintra-rt serve --http ADDR`: an OpenAI-compatible HTTP server (issue #17) — `/health`,
//! `/v1/models`, `/v1/completions` and `/v1/chat/completions`, streamed (server-sent events)
//! or not, with `max_tokens`, `temperature`, `top_p`, `seed`, `stop`, structured output
//! (`response_format`: `json_object`, `json_schema`, enforced while sampling by
//! [`crate::json_constraint`]), usage counts and the model's own chat template.
//!
//! Shape: the accepting thread hands each connection to a thread of its own (at most
//! [`MAX_CONNECTIONS`]; past that a connection is answered 503 and closed), which reads
//! requests (keep-alive), checks them and queues generation jobs for the one inference worker
//! (`worker.rs`) on a bounded queue (full: 503 with `retry-after`). A connection that goes
//! away — a stream it can no longer write to, or a closed socket while it waits — cancels its
//! job. Errors are OpenAI's JSON with 4xx codes; nothing a client sends can panic the server.
//!
//! **Safe by default**: an address without a host binds loopback; any other address needs an
//! API key (`--api-key-file`, `SINTRA_API_KEY`): then every `/v1` request must carry
//! `Authorization: Bearer KEY`.

mod openai;
pub mod template;
mod wire;
mod worker;

pub use crate::cli::HttpOptions;
use crate::tasks::{self, DraftSource};
use openai::{ApiError, Endpoint};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::{EventStream, ReadError};
use worker::{Event, Job, WorkerConfig};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may sit idle, or dribble a request, before it is closed.
const IDLE: Duration = Duration::from_secs(30);

/// Serve until the process is stopped.
pub fn serve(opts: &HttpOptions) -> Result<(), String> {
    let addr = crate::serve::resolve_addr("--http", &opts.addr)?;
    let loaded = tasks::open_model(&opts.model).map_err(|e| e.message)?;
    let draft_file = match &opts.draft {
        Some(p) => Some(tasks::open_model(p).map_err(|e| format!("--draft: {}", e.message))?),
        None => None,
    };
    let id = opts.alias.clone().unwrap_or_else(|| {
        let name = opts
            .model
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        name.strip_suffix(".gguf").unwrap_or(&name).to_string()
    });
    let probe = crate::model::Config::from_gguf(&loaded.file.header).map_err(|e| e.to_string())?;
    let cfg = WorkerConfig {
        n_ctx: opts.n_ctx.unwrap_or(probe.n_ctx_train.min(4096)),
        threads: opts.threads,
        kv_f32: opts.kv_f32,
    };
    if !addr.ip().is_loopback() && opts.api_key.is_none() {
        return Err(format!(
            "--http {}: {addr} is reachable from other machines; give an API key clients must \
             send (--api-key-file FILE or SINTRA_API_KEY), or serve on loopback (--http PORT)",
            opts.addr
        ));
    }
    let listener = TcpListener::bind(addr).map_err(|e| format!("--http {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(opts.queue.max(1));
    let shared = Arc::new(Shared {
        model: id,
        created: openai::now(),
        jobs: jobs_tx,
        api_key: opts.api_key.clone(),
        connections: AtomicUsize::new(0),
        n_ctx: cfg.n_ctx,
    });
    // The accepting thread; the worker runs here, on the thread that owns the mapped model.
    let accept_shared = Arc::clone(&shared);
    std::thread::spawn(move || accept_loop(listener, accept_shared));
    eprintln!(
        "sintra-rt: serving {} (context {}, {} threads) at http://{local}/v1",
        shared.model,
        cfg.n_ctx,
        tasks::pool(cfg.threads).threads()
    );
    let draft = match (&draft_file, opts.lookup) {
        (Some(d), _) => DraftSource::Model(&d.file),
        (None, true) => DraftSource::Lookup,
        (None, false) => DraftSource::None,
    };
    worker::run(&loaded.file, draft, &cfg, jobs_rx)
}

struct Shared {
    model: String,
    created: u64,
    jobs: SyncSender<Job>,
    api_key: Option<String>,
    connections: AtomicUsize,
    n_ctx: usize,
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            let e = ApiError::new(
                503,
                "server_busy",
                format!("more than {MAX_CONNECTIONS} connections are open; try again"),
            );
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = wire::write_json(&mut stream, 503, &e.body(), true, &[("retry-after", "1")]);
            continue;
        }
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let _ = connection(stream, &shared);
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Serve one connection's requests until it closes, errs or idles.
fn connection(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let req = match wire::read_request(&mut reader, shared.api_key.as_deref()) {
            Ok(r) => r,
            Err(ReadError::Closed) | Err(ReadError::Io) => return Ok(()),
            Err(ReadError::Unauthorized) => {
                let e = ApiError::new(
                    401,
                    "invalid_request_error",
                    "a valid API key is required: Authorization: Bearer KEY",
                )
                .with_code("invalid_api_key");
                return wire::write_json(&mut writer, 401, &e.body(), true, &[]);
            }
            Err(ReadError::Bad(status, message)) => {
                let e = ApiError::new(status, "invalid_request_error", message);
                return wire::write_json(&mut writer, status, &e.body(), true, &[]);
            }
        };
        let close = req.wants_close();
        if let Some(e) = route(&req, shared, &mut writer, reader.get_ref())? {
            wire::write_json(&mut writer, e.status, &e.body(), close, &[])?;
        }
        if close {
            return Ok(());
        }
    }
}

/// Answer one request; an error comes back for the caller to write.
fn route(
    req: &wire::Request,
    shared: &Shared,
    w: &mut TcpStream,
    socket: &TcpStream,
) -> std::io::Result<Option<ApiError>> {
    let close = req.wants_close();
    let endpoint = match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/health") => {
            wire::write_json(w, 200, r#"{"status":"ok"}"#, close, &[])?;
            return Ok(None);
        }
        (_, "/health")
        | (_, "/v1/models")
        | (_, "/v1/completions")
        | (_, "/v1/chat/completions")
            if !matches!(
                (req.method.as_str(), req.path.as_str()),
                ("GET", "/v1/models")
                    | ("POST", "/v1/completions")
                    | ("POST", "/v1/chat/completions")
            ) =>
        {
            return Ok(Some(ApiError::new(
                405,
                "invalid_request_error",
                format!("{} {} is not served", req.method, req.path),
            )));
        }
        (_, "/v1/models") => None,
        (_, "/v1/completions") => Some(Endpoint::Completions),
        (_, "/v1/chat/completions") => Some(Endpoint::Chat),
        _ => {
            return Ok(Some(ApiError::new(
                404,
                "invalid_request_error",
                format!("no such endpoint: {} {}", req.method, req.path),
            )))
        }
    };
    let Some(endpoint) = endpoint else {
        wire::write_json(
            w,
            200,
            &openai::models(&shared.model, shared.created),
            close,
            &[],
        )?;
        return Ok(None);
    };
    let completion = match openai::parse(&req.body, endpoint, &shared.model) {
        Ok(c) => c,
        Err(e) => return Ok(Some(e)),
    };
    if completion.max_tokens.is_some_and(|m| m > shared.n_ctx) {
        return Ok(Some(ApiError::invalid(
            "max_tokens",
            format!(
                "max_tokens is more than this server's context of {}",
                shared.n_ctx
            ),
        )));
    }
    let stream = completion.stream;
    let include_usage = completion.include_usage;
    let (events_tx, events) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = Job {
        req: completion,
        events: events_tx,
        cancel: Arc::clone(&cancel),
    };
    match shared.jobs.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            let e = ApiError::new(
                503,
                "server_busy",
                "the request queue is full; try again shortly",
            );
            wire::write_json(w, 503, &e.body(), close, &[("retry-after", "1")])?;
            return Ok(None);
        }
        Err(TrySendError::Disconnected(_)) => {
            return Ok(Some(ApiError::new(
                500,
                "server_error",
                "the inference worker has stopped",
            )));
        }
    }
    let id = openai::response_id(endpoint);
    let model = &shared.model;
    if stream {
        // Headers go out once the job has started (or failed before its first token).
        let mut es: Option<EventStream<'_, TcpStream>> = None;
        let mut first = true;
        loop {
            let ev = match events.recv() {
                Ok(ev) => ev,
                Err(_) => return Ok(None),
            };
            if es.is_none() {
                if let Event::Error(e) = ev {
                    return Ok(Some(e));
                }
                match EventStream::start(w) {
                    Ok(s) => es = Some(s),
                    Err(e) => {
                        cancel.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            let Some(s) = es.as_mut() else { continue };
            let sent = match ev {
                Event::Text(t) => {
                    let r = s.send(&openai::chunk(endpoint, &id, model, Some(&t), first, None));
                    first = false;
                    r
                }
                Event::Done { finish, usage } => {
                    let mut r = s.send(&openai::chunk(
                        endpoint,
                        &id,
                        model,
                        None,
                        first,
                        Some(finish),
                    ));
                    if include_usage && r.is_ok() {
                        r = s.send(&openai::usage_chunk(endpoint, &id, model, usage));
                    }
                    let r = r.and_then(|()| s.send("[DONE]"));
                    if let Some(s) = es.take() {
                        r.and_then(|()| s.finish())?;
                    }
                    return Ok(None);
                }
                Event::Error(e) => {
                    // Mid-stream: the error is the stream's last event.
                    let r = s.send(&e.body()).and_then(|()| s.send("[DONE]"));
                    if let Some(s) = es.take() {
                        r.and_then(|()| s.finish())?;
                    }
                    return Ok(None);
                }
            };
            if let Err(e) = sent {
                // The client is gone: stop its generation.
                cancel.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    // Not streamed: collect, watching the socket so that a client that leaves cancels. The
    // socket is looked at every 50 ms whether or not text keeps arriving (a steady stream of
    // tokens must not hide a client that has gone).
    let mut text = String::new();
    let mut looked = Instant::now();
    loop {
        let event = events.recv_timeout(Duration::from_millis(50));
        if looked.elapsed() >= Duration::from_millis(50) {
            looked = Instant::now();
            if client_gone(socket) {
                cancel.store(true, Ordering::Relaxed);
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
        }
        match event {
            Ok(Event::Text(t)) => text.push_str(&t),
            Ok(Event::Done { finish, usage }) => {
                let body = openai::answer(endpoint, &id, model, &text, finish, usage);
                wire::write_json(w, 200, &body, close, &[])?;
                return Ok(None);
            }
            Ok(Event::Error(e)) => return Ok(Some(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Ok(Some(ApiError::new(
                    500,
                    "server_error",
                    "the inference worker has stopped",
                )))
            }
        }
    }
}

/// Whether the peer has closed its side (a read would return end of file).
fn client_gone(socket: &TcpStream) -> bool {
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let gone = matches!(socket.peek(&mut b), Ok(0))
        || matches!(socket.peek(&mut b), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
    let _ = socket.set_nonblocking(false);
    gone
}
