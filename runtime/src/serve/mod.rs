//! `sintra-rt serve`: the runtime's side of the wire protocol ([`formats::wire`]), on
//! stdin/stdout (what the planner starts over ssh or as a local process) or on a TCP socket
//! (`--listen ADDR`, [`listen`]: loopback unless an address is given, a token for anything
//! else, every path a client names confined to a work directory). Logs go to stderr, which the
//! planner keeps to explain a runtime that died.
//!
//! A bad request never ends the session: it is answered with [`Response::Error`] and the next
//! frame is read. Only `Shutdown`, the end of the input or a planner that stopped reading end it.

use crate::tasks::{self, Loaded, PerplexitySettings};
use crate::{membw, sysinfo};
use formats::wire::{
    self, ErrorKind, LogitsMode, ModelInfo, Progress, Request, Response, RuntimeError,
    PROTOCOL_VERSION,
};
use sha2::{Digest, Sha256};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

mod confine;
mod listen;
pub use listen::{listen, resolve_addr, ListenOptions};

/// Largest context, prompt or generation length a request may ask for: bigger ones would
/// allocate gigabytes of KV cache before failing.
const MAX_TOKENS: u32 = 1 << 16;
/// Most repetitions a bench request may ask for.
const MAX_REPETITIONS: u32 = 1000;

fn log(msg: impl AsRef<str>) {
    eprintln!("sintra-rt serve: {}", msg.as_ref());
}

fn error(kind: ErrorKind, message: impl ToString) -> Response {
    Response::Error(RuntimeError {
        kind,
        message: message.to_string(),
    })
}

/// Serve one planner on `input`/`output` until it sends `Shutdown` (`Ok(true)`) or closes the
/// input (`Ok(false)`). With `exit_when_unheard`, a failed write (the planner or its ssh went
/// away) ends the process at once instead of finishing a task nobody will read.
pub fn serve_stream(
    input: impl Read,
    output: impl Write,
    exit_when_unheard: bool,
) -> io::Result<bool> {
    serve_confined(input, output, exit_when_unheard, None)
}

/// [`serve_stream`], with every path the client names confined to `root` when given.
fn serve_confined(
    input: impl Read,
    output: impl Write,
    exit_when_unheard: bool,
    root: Option<PathBuf>,
) -> io::Result<bool> {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut out = io::BufWriter::new(output);
    let mut session = Session {
        root,
        ..Session::default()
    };
    let mut frame = Vec::new();
    log(format!(
        "sintra-rt {} ({}, kernels: {}), protocol {PROTOCOL_VERSION}, ready",
        env!("CARGO_PKG_VERSION"),
        sysinfo::TARGET,
        kernels::isa_name()
    ));
    loop {
        match wire::read_frame(&mut input, &mut frame) {
            Ok(true) => {}
            Ok(false) => {
                log("input closed, ending the session");
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                log(format!("bad frame: {e}"));
                wire::write_frame(&mut out, &error(ErrorKind::BadFrame, e))?;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                log(format!("input closed: {e}"));
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let request = match wire::decode::<Request>(&frame) {
            Ok(r) => r,
            Err(e) => {
                log(format!("bad frame: {e}"));
                wire::write_frame(&mut out, &error(ErrorKind::BadFrame, e))?;
                continue;
            }
        };
        if session.handle(request, &mut out, exit_when_unheard)? {
            return Ok(true);
        }
    }
}

#[derive(Default)]
struct Session {
    /// The protocol version the planner said it speaks, once it said hello.
    planner_protocol: Option<u32>,
    model: Option<Loaded>,
    /// A network client's work directory (canonical): every path it names must lie inside.
    root: Option<PathBuf>,
}

/// Sends responses; remembers a failed write so that a long task whose planner went away ends
/// with that error.
struct Sender<'a> {
    out: &'a mut dyn Write,
    failed: Option<io::Error>,
    exit_when_unheard: bool,
}

impl Sender<'_> {
    fn send(&mut self, r: &Response) {
        if self.failed.is_none() {
            if let Err(e) = wire::write_frame(&mut self.out, r) {
                if self.exit_when_unheard {
                    log(format!("the planner stopped listening ({e}): exiting"));
                    std::process::exit(1);
                }
                self.failed = Some(e);
            }
        }
    }

    fn finish(self) -> io::Result<()> {
        self.failed.map_or(Ok(()), Err)
    }
}

impl Session {
    /// Answer one request; `Ok(true)` ends the session.
    fn handle(
        &mut self,
        request: Request,
        out: &mut dyn Write,
        exit_when_unheard: bool,
    ) -> io::Result<bool> {
        let mut tx = Sender {
            out,
            failed: None,
            exit_when_unheard,
        };
        let stop = matches!(request, Request::Shutdown);
        match self.gate(&request) {
            Some(refusal) => tx.send(&refusal),
            None => self.run(request, &mut tx),
        }
        tx.finish()?;
        Ok(stop)
    }

    /// The error a request gets before it runs: no hello yet, or another protocol.
    fn gate(&self, request: &Request) -> Option<Response> {
        if matches!(request, Request::Hello { .. } | Request::Shutdown) {
            return None;
        }
        match self.planner_protocol {
            None => Some(error(
                ErrorKind::NoHello,
                "the planner must send hello before any other request",
            )),
            Some(v) if v != PROTOCOL_VERSION => Some(error(
                ErrorKind::ProtocolMismatch,
                format!(
                    "the planner speaks wire protocol {v}, this runtime speaks {PROTOCOL_VERSION}: deploy a sintra-rt built from the same release as the planner"
                ),
            )),
            Some(_) => None,
        }
    }

    fn run(&mut self, mut request: Request, tx: &mut Sender<'_>) {
        if let Some(root) = &self.root {
            if let Err(e) = confine::request(root, &mut request) {
                log(format!("refused: {e}"));
                return tx.send(&error(ErrorKind::Refused, e));
            }
        }
        let response = match request {
            Request::Hello {
                protocol_version,
                planner_version,
            } => {
                log(format!(
                    "hello from planner {planner_version} (protocol {protocol_version})"
                ));
                if protocol_version != PROTOCOL_VERSION {
                    log(format!(
                        "protocol mismatch: the planner speaks {protocol_version}, this runtime {PROTOCOL_VERSION}"
                    ));
                }
                self.planner_protocol = Some(protocol_version);
                Response::Hello(sysinfo::hello())
            }
            Request::ProbeMemory {
                bytes,
                threads,
                repetitions,
            } => probe_memory(bytes, threads, repetitions),
            Request::LoadModel { path, sha256 } => {
                self.model = None; // unmap the previous model before mapping the next
                sysinfo::reset_peak_rss();
                match load(&path, sha256) {
                    Ok((loaded, info)) => {
                        self.model = Some(loaded);
                        Response::ModelLoaded(info)
                    }
                    Err(e) => Response::Error(e),
                }
            }
            Request::Bench(req) => match self.model_or_error() {
                Err(e) => Response::Error(e),
                Ok(m) => match check_bench(&req) {
                    Some(e) => e,
                    None => {
                        log(format!(
                            "bench pp{} tg{} x{} on {} threads",
                            req.n_prompt, req.n_gen, req.repetitions, req.threads
                        ));
                        let r =
                            tasks::bench(&m.file, &req, &mut |p| tx.send(&Response::Progress(p)));
                        r.map_or_else(Response::Error, Response::Bench)
                    }
                },
            },
            Request::SpecBench(req) => match self.model_or_error() {
                Err(e) => Response::Error(e),
                Ok(m) => {
                    if req.n_gen == 0 || req.n_gen > MAX_TOKENS {
                        error(
                            ErrorKind::InvalidRequest,
                            format!("n_gen {} is outside 1..={MAX_TOKENS}", req.n_gen),
                        )
                    } else if req.repetitions > MAX_REPETITIONS {
                        error(
                            ErrorKind::InvalidRequest,
                            format!("repetitions {} is above {MAX_REPETITIONS}", req.repetitions),
                        )
                    } else {
                        log(format!(
                            "speculative bench tg{} x{} with {}",
                            req.n_gen,
                            req.repetitions,
                            if req.draft_path.is_empty() {
                                "prompt lookup"
                            } else {
                                &req.draft_path
                            }
                        ));
                        spec_bench(&m.file, &req, &mut |p| tx.send(&Response::Progress(p)))
                            .map_or_else(Response::Error, Response::SpecBench)
                    }
                }
            },
            Request::Perplexity(req) => match self.model_or_error() {
                Err(e) => Response::Error(e),
                Ok(m) => {
                    if !(4..=MAX_TOKENS).contains(&req.n_ctx) {
                        error(
                            ErrorKind::InvalidRequest,
                            format!("n_ctx {} is outside 4..={MAX_TOKENS}", req.n_ctx),
                        )
                    } else {
                        let (save, base) = match &req.logits {
                            LogitsMode::None => (None, None),
                            LogitsMode::Save { path } => (Some(Path::new(path)), None),
                            LogitsMode::KlDivergence { base_path } => {
                                (None, Some(Path::new(base_path)))
                            }
                        };
                        let settings = PerplexitySettings {
                            n_ctx: req.n_ctx as usize,
                            max_chunks: req.max_chunks.map(|c| c as usize),
                            threads: req.threads,
                            kv_f32: false,
                            save_logits: save,
                            kld_base: base,
                        };
                        let r = tasks::perplexity_text(
                            &m.file,
                            &req.text,
                            &settings,
                            &mut |d, t, p| {
                                tx.send(&Response::Progress(Progress {
                                    done: d as u32,
                                    total: t as u32,
                                    note: format!("PPL {p:.4}"),
                                }))
                            },
                        );
                        r.map_or_else(Response::Error, Response::Perplexity)
                    }
                }
            },
            Request::Generate(req) => match self.model_or_error() {
                Err(e) => Response::Error(e),
                Ok(m) => {
                    if req.n_predict > MAX_TOKENS {
                        error(
                            ErrorKind::InvalidRequest,
                            format!("n_predict {} is above {MAX_TOKENS}", req.n_predict),
                        )
                    } else if !(req.temp.is_finite() && req.temp >= 0.0) {
                        error(
                            ErrorKind::InvalidRequest,
                            format!("temp {} is not a number >= 0", req.temp),
                        )
                    } else if !(req.top_p > 0.0 && req.top_p <= 1.0) {
                        error(
                            ErrorKind::InvalidRequest,
                            format!("top_p {} is not in (0, 1]", req.top_p),
                        )
                    } else {
                        let r = tasks::generate(
                            &m.file,
                            &req,
                            None,
                            false,
                            tasks::DraftSource::None,
                            &mut |piece| {
                                tx.send(&Response::Token {
                                    text: piece.to_string(),
                                })
                            },
                        );
                        r.map_or_else(Response::Error, |(r, _)| Response::Generated(r))
                    }
                }
            },
            Request::Calibrate(req) => match self.model_or_error() {
                Err(e) => Response::Error(e),
                Ok(m) => {
                    if !(2..=MAX_TOKENS).contains(&req.n_ctx) {
                        error(
                            ErrorKind::InvalidRequest,
                            format!("n_ctx {} is outside 2..={MAX_TOKENS}", req.n_ctx),
                        )
                    } else {
                        log(format!(
                            "calibrate on {} ({} bytes of text) into {}",
                            req.dataset,
                            req.text.len(),
                            req.output_path
                        ));
                        let r = tasks::calibrate(&m.file, &req, &mut |d, t| {
                            tx.send(&Response::Progress(Progress {
                                done: d as u32,
                                total: t as u32,
                                note: "calibration window".into(),
                            }))
                        });
                        r.map_or_else(Response::Error, Response::Calibrated)
                    }
                }
            },
            Request::Shutdown => {
                log("shutdown");
                Response::Bye
            }
        };
        if let Response::Error(e) = &response {
            log(format!("error: {e}"));
        }
        tx.send(&response);
    }

    fn model_or_error(&self) -> Result<&Loaded, RuntimeError> {
        self.model.as_ref().ok_or_else(|| RuntimeError {
            kind: ErrorKind::NoModel,
            message: "no model is loaded: send load-model first".into(),
        })
    }
}

/// [`Request::SpecBench`]: map the draft (checked against its SHA-256), then
/// [`tasks::bench_speculative`].
fn spec_bench(
    file: &formats::gguf::GgufFile,
    req: &formats::wire::SpecBenchRequest,
    on_rep: &mut dyn FnMut(Progress),
) -> Result<formats::wire::SpecBenchResult, RuntimeError> {
    let draft = if req.draft_path.is_empty() {
        None
    } else {
        Some(load(&req.draft_path, req.draft_sha256)?.0)
    };
    let source = match &draft {
        Some(d) => tasks::DraftSource::Model(&d.file),
        None => tasks::DraftSource::Lookup,
    };
    let r = tasks::bench_speculative(
        file,
        source,
        &req.prompt,
        false,
        req.n_gen as usize,
        req.repetitions.max(1) as usize,
        req.threads,
        false,
        on_rep,
    )?;
    Ok(formats::wire::SpecBenchResult {
        n_prompt: r.n_prompt as u32,
        n_gen: r.n_gen as u32,
        plain_tok_s: r.plain_tok_s,
        spec_tok_s: r.spec_tok_s,
        drafted: r.stats.drafted,
        accepted: r.stats.accepted,
    })
}

fn check_bench(req: &formats::wire::BenchRequest) -> Option<Response> {
    for (name, v) in [("n_prompt", req.n_prompt), ("n_gen", req.n_gen)] {
        if v > MAX_TOKENS {
            return Some(error(
                ErrorKind::InvalidRequest,
                format!("{name} {v} is above {MAX_TOKENS}"),
            ));
        }
    }
    if req.n_prompt == 0 && req.n_gen == 0 {
        return Some(error(
            ErrorKind::InvalidRequest,
            "n_prompt and n_gen are both 0: nothing to measure",
        ));
    }
    if req.repetitions > MAX_REPETITIONS {
        return Some(error(
            ErrorKind::InvalidRequest,
            format!("repetitions {} is above {MAX_REPETITIONS}", req.repetitions),
        ));
    }
    None
}

fn probe_memory(bytes: u64, threads: u32, repetitions: u32) -> Response {
    let (_, available) = sysinfo::ram_bytes();
    if available > 0 && bytes > available / 2 {
        return error(
            ErrorKind::InvalidRequest,
            format!(
                "memory probe of {bytes} bytes is more than half the {available} bytes available"
            ),
        );
    }
    if repetitions > MAX_REPETITIONS {
        return error(
            ErrorKind::InvalidRequest,
            format!("repetitions {repetitions} is above {MAX_REPETITIONS}"),
        );
    }
    match membw::probe(bytes, threads, repetitions) {
        Ok(m) => Response::MemoryBandwidth(m),
        Err(e) => error(ErrorKind::InvalidRequest, e),
    }
}

/// The SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn load(path: &str, sha256: Option<[u8; 32]>) -> Result<(Loaded, ModelInfo), RuntimeError> {
    let p = Path::new(path);
    let mut digest = [0u8; 32];
    if let Some(want) = sha256 {
        digest = sha256_file(p).map_err(|e| RuntimeError {
            kind: ErrorKind::ModelLoad,
            message: format!("{path}: {e}"),
        })?;
        if digest != want {
            return Err(RuntimeError {
                kind: ErrorKind::Checksum,
                message: format!(
                    "{path}: sha256 is {}, expected {}",
                    hex(&digest),
                    hex(&want)
                ),
            });
        }
    }
    let loaded = tasks::open_model(p)?;
    let h = &loaded.file.header;
    let config = crate::model::Config::from_gguf(h).map_err(|e| RuntimeError {
        kind: ErrorKind::ModelLoad,
        message: format!("{path}: {e}"),
    })?;
    let info = ModelInfo {
        path: path.to_string(),
        sha256: digest,
        architecture: config.arch.clone(),
        n_params: h.n_parameters(),
        tensor_bytes: h.n_tensor_bytes(),
        file_bytes: loaded.file.file_len(),
        n_layers: config.layers.len() as u32,
        n_vocab: config.n_vocab as u32,
        n_ctx_train: config.n_ctx_train as u32,
        load_ms: loaded.load_ms,
    };
    log(format!(
        "loaded {path} ({}, {} tensors bytes) in {:.1} ms",
        info.architecture, info.tensor_bytes, info.load_ms
    ));
    Ok((loaded, info))
}

/// Serve on stdin/stdout.
pub fn stdio() -> Result<(), String> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    serve_stream(stdin.lock(), stdout.lock(), true)
        .map(|_| ())
        .map_err(|e| format!("serve: {e}"))
}
