//! The inference worker: one thread owns the model, its KV cache and the drafter, and takes
//! jobs from a bounded queue one at a time. Each job streams [`Event`]s back to its
//! connection, and stops as soon as its connection says the client has gone (`cancel`).
//!
//! The cache is kept between jobs: a prompt that starts like the last one (a chat's system
//! prompt, an architect's context) only feeds the tokens past the shared prefix — positions
//! below it hold the same keys and values.

use super::openai::{ApiError, Completion, Endpoint, Usage};
use super::template::ChatTemplate;
use crate::json_constraint::JsonFilter;
use crate::model::{KvType, Llama, ModelError};
use crate::sampler::Sampler;
use crate::speculative::{self, Drafter, Flow, TokenFilter};
use crate::tasks::{self, DraftSource};
use crate::threads::Pool;
use crate::tokenizer::Tokenizer;
use formats::gguf::GgufFile;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

/// What a job sends back.
#[derive(Debug)]
pub enum Event {
    /// Text to pass on (whole UTF-8 characters, never part of a stop string).
    Text(String),
    /// The end: why (`stop` or `length`) and the token counts.
    Done {
        finish: &'static str,
        usage: Usage,
    },
    Error(ApiError),
}

/// A request for the worker.
#[derive(Debug)]
pub struct Job {
    pub req: Completion,
    pub events: Sender<Event>,
    /// Set by the connection when its client is gone.
    pub cancel: Arc<AtomicBool>,
}

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub n_ctx: usize,
    pub threads: u32,
    pub kv_f32: bool,
}

/// Serve jobs from `jobs` until the queue closes. `draft` is a draft model's file or prompt
/// lookup, if any.
pub fn run(
    file: &GgufFile,
    draft: DraftSource<'_>,
    cfg: &WorkerConfig,
    jobs: Receiver<Job>,
) -> Result<(), String> {
    let tok = Tokenizer::from_gguf(&file.header).map_err(|e| e.to_string())?;
    let template_src = file
        .header
        .get("tokenizer.chat_template")
        .and_then(formats::gguf::Value::as_str);
    let template = ChatTemplate::new(template_src, &tok)?;
    let kv = if cfg.kv_f32 { KvType::F32 } else { KvType::F16 };
    let mut model = Llama::new(file, cfg.n_ctx, kv).map_err(|e| e.to_string())?;
    let sampling = crate::sampler::SamplerConfig::default();
    let mut drafter =
        tasks::drafter(draft, &tok, cfg.n_ctx, cfg.kv_f32, sampling).map_err(|e| e.message)?;
    let pool = tasks::pool(cfg.threads);
    let mut w = Worker {
        tok: &tok,
        template: &template,
        pool: &pool,
        cached: Vec::new(),
    };
    for job in jobs {
        if job.cancel.load(Ordering::Relaxed) {
            continue;
        }
        let events = job.events.clone();
        if let Err(e) = w.serve(&mut model, drafter.as_mut(), job) {
            let _ = events.send(Event::Error(e));
        }
    }
    Ok(())
}

struct Worker<'t> {
    tok: &'t Tokenizer,
    template: &'t ChatTemplate,
    pool: &'t Pool,
    /// The tokens whose keys and values the cache holds, from position 0.
    cached: Vec<u32>,
}

impl Worker<'_> {
    fn serve(
        &mut self,
        model: &mut Llama<'_>,
        drafter: Option<&mut Drafter<'_>>,
        job: Job,
    ) -> Result<(), ApiError> {
        let req = &job.req;
        let text = match req.endpoint {
            Endpoint::Completions => req.prompt.clone(),
            Endpoint::Chat => self
                .template
                .render(&req.messages)
                .map_err(|e| ApiError::invalid("messages", e))?,
        };
        let prompt = self.tok.encode(&text, true, true);
        let n_ctx = model.state.n_ctx;
        if prompt.is_empty() {
            return Err(ApiError::invalid("prompt", "the prompt has no tokens"));
        }
        if prompt.len() >= n_ctx {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "the prompt is {} tokens; this server's context holds {n_ctx} (sintra-rt serve -c)",
                    prompt.len()
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let room = n_ctx - prompt.len();
        let n_predict = req.max_tokens.unwrap_or(room).min(room);

        // The prompt past what the cache already holds (at least its last token, whose
        // logits start generation).
        let shared = self
            .cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.cached.truncate(shared);
        let internal = |e: ModelError| ApiError::new(500, "server_error", e.to_string());
        let logits = model
            .prefill(&prompt[shared..], shared, self.pool)
            .map_err(internal)?;
        let mut sampler = Sampler::new(req.sampling);
        let mut filter = RequestFilter {
            json: req.format.as_ref().map(|s| JsonFilter::new(s, self.tok)),
            ban_eog: req.ignore_eos,
            tok: self.tok,
        };
        let filtered = filter.json.is_some() || filter.ban_eog;
        let mut out = TextOut::new(&req.stop, &job.events);
        let mut history = prompt.clone();
        let cancel = &job.cancel;
        let tok = self.tok;
        let result = speculative::decode(
            model,
            self.pool,
            &mut sampler,
            drafter,
            filtered.then_some(&mut filter as &mut dyn TokenFilter),
            &mut history,
            &logits,
            n_predict,
            |t| tok.is_eog(t),
            |t| {
                if out.push(tok.token_to_piece(t)) || cancel.load(Ordering::Relaxed) {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
        );
        // Every token but the last generated one is in the cache (the last may not have been
        // fed); after an error, nothing past the prompt is trusted.
        self.cached = match &result {
            Ok(_) => history[..history.len() - 1].to_vec(),
            Err(_) => prompt[..prompt.len() - 1].to_vec(),
        };
        result.map_err(internal)?;
        let n_gen = history.len() - prompt.len();
        if cancel.load(Ordering::Relaxed) {
            eprintln!(
                "sintra-rt: the client went away; generation stopped after {n_gen} of at most {n_predict} tokens"
            );
            return Ok(());
        }
        let finish = if out.stopped
            || filter
                .json
                .as_ref()
                .is_some_and(|f| f.matcher.is_complete())
        {
            "stop"
        } else if n_gen >= n_predict {
            "length"
        } else {
            "stop"
        };
        out.finish();
        let _ = job.events.send(Event::Done {
            finish,
            usage: Usage {
                prompt: prompt.len(),
                completion: n_gen,
            },
        });
        Ok(())
    }
}

/// What a request restricts: a JSON answer, no end-of-generation token (`ignore_eos`).
struct RequestFilter<'t> {
    json: Option<JsonFilter<'t>>,
    ban_eog: bool,
    tok: &'t Tokenizer,
}

impl TokenFilter for RequestFilter<'_> {
    fn allows(&self, token: u32) -> bool {
        if self.ban_eog && self.tok.is_eog(token) {
            return false;
        }
        self.json.as_ref().is_none_or(|j| j.allows(token))
    }

    fn accept(&mut self, token: u32) {
        if let Some(j) = &mut self.json {
            j.accept(token);
        }
    }
}

/// Generated bytes to text events: whole UTF-8 characters only, and never a stop string or
/// the part of one that may be starting at the end of the text.
struct TextOut<'a> {
    stops: &'a [String],
    events: &'a Sender<Event>,
    pending: Vec<u8>,
    text: String,
    sent: usize,
    stopped: bool,
}

impl<'a> TextOut<'a> {
    fn new(stops: &'a [String], events: &'a Sender<Event>) -> Self {
        TextOut {
            stops,
            events,
            pending: Vec::new(),
            text: String::new(),
            sent: 0,
            stopped: false,
        }
    }

    /// Add a token's bytes; true when a stop string ended the text.
    fn push(&mut self, piece: &[u8]) -> bool {
        self.pending.extend_from_slice(piece);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        if valid == 0 {
            return false;
        }
        self.text
            .push_str(&String::from_utf8_lossy(&self.pending[..valid]));
        self.pending.drain(..valid);
        // A stop string may begin in text held back, never in text already sent.
        let from = self.sent;
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min()
        {
            self.text.truncate(at);
            self.stopped = true;
            self.flush(at);
            return true;
        }
        // Hold back the longest end of the text that could start a stop string.
        let mut safe = self.text.len();
        for s in self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.text.ends_with(&s[..i]) {
                    safe = safe.min(self.text.len() - i);
                }
            }
        }
        self.flush(safe.max(self.sent));
        false
    }

    fn flush(&mut self, upto: usize) {
        if upto > self.sent {
            let _ = self
                .events
                .send(Event::Text(self.text[self.sent..upto].to_string()));
            self.sent = upto;
        }
    }

    /// The end: whatever was held back (and a split character) goes out.
    fn finish(&mut self) {
        if !self.stopped {
            if !self.pending.is_empty() {
                self.text.push_str(&String::from_utf8_lossy(&self.pending));
                self.pending.clear();
            }
            self.flush(self.text.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut out = TextOut::new(&stops, &tx);
        let mut stopped = false;
        for p in pieces {
            if out.push(p.as_bytes()) {
                stopped = true;
                break;
            }
        }
        out.finish();
        drop(out);
        drop(tx);
        let text: String = rx
            .iter()
            .map(|e| match e {
                Event::Text(t) => t,
                _ => String::new(),
            })
            .collect();
        (text, stopped)
    }

    #[test]
    fn stop_strings_end_the_text_even_across_tokens() {
        assert_eq!(run(&["\n\n"], &["a", "b\n", "\nc"]), ("ab".into(), true));
        assert_eq!(run(&["END"], &["x E", "N", "D y"]), ("x ".into(), true));
        // A prefix of a stop string that does not complete goes out in the end.
        assert_eq!(run(&["END"], &["x E", "N"]), ("x EN".into(), false));
        assert_eq!(run(&[], &["h\u{e9}", "llo"]), ("h\u{e9}llo".into(), false));
        // Split UTF-8 characters wait for their second half.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut out = TextOut::new(&[], &tx);
        out.push(&[0xc3]);
        assert!(rx.try_recv().is_err());
        out.push(&[0xa9]);
        assert!(matches!(rx.try_recv(), Ok(Event::Text(t)) if t == "\u{e9}"));
    }
}
