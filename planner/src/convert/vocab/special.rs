//! gguf-py's `SpecialVocab`: merges, special token ids, `add_*_token`, the chat template and the
//! lowercase normalizer, read from `tokenizer.json`, `tokenizer_config.json`, `chat_template.*`
//! and `config.json` with llama.cpp's precedence:
//! - an id named by `tokenizer_config.json` (`bos_token: "<s>"`) is looked up among
//!   `tokenizer.json`'s `added_tokens` and wins over `config.json`'s `bos_token_id`; the first
//!   source that sets a type keeps it;
//! - `add_bos/eos/sep_token` come from `tokenizer.json`'s post-processor first
//!   (`RobertaProcessing`, or a guess from `TemplateProcessing`), then from
//!   `tokenizer_config.json`'s explicit bools;
//! - when the template's trailing special token is not the configured EOS, that token becomes
//!   EOS and the configured one EOT (or EOM);
//! - nothing is read from `tokenizer_config.json` when `tokenizer.json` is missing except the
//!   chat template and the `add_*` bools, as in llama.cpp; `special_tokens_map.json` and
//!   `generation_config.json` are not read (llama.cpp's converter does not read them for these
//!   keys either).

use super::{Checkpoint, Metadata, TOKENIZER_CONFIG, TOKENIZER_JSON};
use crate::convert::ConvertError;
use formats::gguf::{Array, Value};
use serde_json::{json, Value as Json};

/// `SpecialVocab`'s default `special_token_types`.
pub(crate) const DEFAULT_TYPES: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

/// A chat template: one string, or named templates (`[{"name": .., "template": ..}]`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChatTemplate {
    One(String),
    Named(Vec<(String, String)>),
}

#[derive(Debug, Default)]
pub(crate) struct SpecialVocab {
    pub(crate) merges: Vec<String>,
    load_merges: bool,
    types: Vec<String>,
    n_vocab: Option<usize>,
    /// Special token ids in the order they were first set.
    pub(crate) ids: Vec<(String, u32)>,
    /// `add_{typ}_token` in the order they were first set.
    pub(crate) add: Vec<(String, bool)>,
    pub(crate) chat_template: Option<ChatTemplate>,
    normalizer_lowercase: bool,
}

impl SpecialVocab {
    /// `SpecialVocab(dir, load_merges, special_token_types, n_vocab)`.
    pub(crate) fn load(
        ck: &Checkpoint<'_>,
        load_merges: bool,
        types: &[&str],
        n_vocab: Option<usize>,
    ) -> Result<Self, ConvertError> {
        let mut sv = SpecialVocab {
            load_merges,
            types: types.iter().map(|t| t.to_string()).collect(),
            n_vocab,
            ..Default::default()
        };
        sv.load_from_tokenizer_json(ck)?;
        sv.load_from_config_json(ck)?;
        if load_merges && sv.merges.is_empty() {
            sv.load_merges_txt(ck)?;
        }
        Ok(sv)
    }

    /// `add_to_gguf`: merges, ids, `add_*_token`, chat template, lowercase normalizer.
    pub(crate) fn add_to(&self, kv: &mut Metadata) {
        if !self.merges.is_empty() {
            kv.set_array("tokenizer.ggml.merges", Array::String(self.merges.clone()));
        } else if self.load_merges {
            tracing::warn!("no merges found: the vocabulary may not work");
        }
        for (typ, id) in &self.ids {
            match id_key(typ) {
                Some(key) => kv.set(key, Value::U32(*id)),
                None => tracing::debug!("no GGUF key for special token type {typ} (id {id})"),
            }
        }
        for (typ, add) in &self.add {
            if matches!(typ.as_str(), "bos" | "eos" | "sep") {
                kv.set(
                    &format!("tokenizer.ggml.add_{typ}_token"),
                    Value::Bool(*add),
                );
            }
        }
        match &self.chat_template {
            None => kv.remove(CHAT_TEMPLATE),
            Some(ChatTemplate::One(t)) => kv.set_str(CHAT_TEMPLATE, t),
            Some(ChatTemplate::Named(list)) => add_named_templates(kv, list),
        }
        if self.normalizer_lowercase {
            kv.set("tokenizer.ggml.normalizer.lowercase", Value::Bool(true));
        }
    }

    /// `_set_special_token`: the first id set for a type stays; ids past `n_vocab` are skipped,
    /// negative ones (and, unlike llama.cpp, ones past u32) are an error.
    pub(crate) fn set_special_token(&mut self, typ: &str, id: i64) -> Result<(), ConvertError> {
        let invalid = || ConvertError::Invalid {
            path: "config.json".into(),
            message: format!("invalid id for special token type {typ}: {id}"),
        };
        if id < 0 {
            return Err(invalid());
        }
        if self.n_vocab.is_some_and(|n| id as u64 >= n as u64) {
            tracing::warn!("special token type {typ}: id {id} out of range, skipped");
            return Ok(());
        }
        let id = u32::try_from(id).map_err(|_| invalid())?;
        if !self.ids.iter().any(|(t, _)| t == typ) {
            self.ids.push((typ.to_owned(), id));
        }
        Ok(())
    }

    /// `_set_special_token` for a JSON value: anything but an integer is ignored.
    fn set_special_json(
        &mut self,
        ck: &Checkpoint<'_>,
        file: &str,
        typ: &str,
        id: Option<&Json>,
    ) -> Result<(), ConvertError> {
        let Some(id) = id.and_then(Json::as_i64).or_else(|| {
            // Integers too large for an i64 are still integers to Python: out of range below.
            id.and_then(Json::as_u64).map(|_| i64::MAX)
        }) else {
            return Ok(());
        };
        self.set_special_token(typ, id).map_err(|_| {
            ck.invalid(
                file,
                format!("invalid id for special token type {typ}: {id}"),
            )
        })
    }

    fn set_add(&mut self, typ: &str, add: bool) {
        match self.add.iter_mut().find(|(t, _)| t == typ) {
            Some(slot) => slot.1 = add,
            None => self.add.push((typ.to_owned(), add)),
        }
    }

    fn load_from_tokenizer_json(&mut self, ck: &Checkpoint<'_>) -> Result<(), ConvertError> {
        let tokenizer = ck.tokenizer_json.as_ref().map(|(_, json)| json);
        let mut added_tokens: &[Json] = &[];
        if let Some(tokenizer) = tokenizer {
            if self.load_merges {
                self.merges = merges_of(ck, tokenizer)?;
            }
            if let Some(normalizer) = tokenizer.get("normalizer").filter(|n| truthy(n)) {
                self.parse_normalizer(normalizer);
            }
            if let Some(Json::Array(list)) = tokenizer.get("added_tokens") {
                added_tokens = list;
            }
        }
        // A copy: llama.cpp edits its dict (cls as bos, eot from the template...).
        let mut config = ck.tokenizer_config.clone().filter(truthy);
        if let Some(tokenizer) = tokenizer.filter(|t| truthy(t)) {
            self.read_post_processor(tokenizer, &mut config);
        }
        let Some(config) = config else {
            return Ok(());
        };
        self.chat_template = chat_template(ck, &config)?;
        for typ in self.types.clone() {
            if let Some(Json::Bool(add)) = config.get(format!("add_{typ}_token")) {
                self.set_add(&typ, *add);
            }
            let content = match config.get(format!("{typ}_token")) {
                Some(Json::String(s)) => s.as_str(),
                Some(Json::Object(entry)) => match entry.get("content") {
                    Some(Json::String(s)) => s.as_str(),
                    _ => continue,
                },
                _ => continue,
            };
            let id = added_tokens
                .iter()
                .find(|t| t.get("content").and_then(Json::as_str) == Some(content))
                .and_then(|t| t.get("id"));
            self.set_special_json(ck, TOKENIZER_JSON, &typ, id)?;
        }
        Ok(())
    }

    /// The part of `_try_load_from_tokenizer_json` that reads the post-processor: which special
    /// tokens the tokenizer adds, and (editing `config`) which tokens are EOS, EOT, CLS and SEP.
    fn read_post_processor(&mut self, tokenizer: &Json, config: &mut Option<Json>) {
        let get = |config: &Option<Json>, key: &str| -> Option<Json> {
            config.as_ref()?.get(key).filter(|v| truthy(v)).cloned()
        };
        let put = |config: &mut Option<Json>, key: &str, value: Json| {
            if let Some(Json::Object(map)) = config {
                map.insert(key.to_owned(), value);
            }
        };
        let mut special_bos = get(config, "bos_token");
        let mut special_cls = get(config, "cls_token");
        let mut special_eos = get(config, "eos_token");
        let mut special_sep = get(config, "sep_token");
        if special_bos.is_none() && config.is_some() {
            if let Some(cls) = &special_cls {
                put(config, "bos_token", cls.clone());
                special_bos = Some(cls.clone());
            }
        }
        if special_eos.is_none() && config.is_some() {
            if let Some(sep) = &special_sep {
                put(config, "eos_token", sep.clone());
                special_eos = Some(sep.clone());
            }
        }
        let Some(post) = tokenizer.get("post_processor").filter(|p| truthy(p)) else {
            return;
        };
        let single = [post.clone()];
        let processors = match post.get("processors") {
            Some(Json::Array(list)) => list.as_slice(),
            _ => &single,
        };
        for processor in processors {
            let kind = processor.get("type").and_then(Json::as_str);
            if kind == Some("RobertaProcessing") {
                for typ in ["bos", "eos", "sep"] {
                    self.set_add(typ, true);
                }
                if special_cls.is_none() && config.is_some() {
                    special_cls = first_of(processor.get("cls")).or(special_bos.clone());
                    put(
                        config,
                        "cls_token",
                        special_cls.clone().unwrap_or(Json::Null),
                    );
                }
                if special_sep.is_none() && config.is_some() {
                    special_sep = first_of(processor.get("sep")).or(special_eos.clone());
                    put(
                        config,
                        "sep_token",
                        special_sep.clone().unwrap_or(Json::Null),
                    );
                }
                continue;
            }
            if kind != Some("TemplateProcessing") {
                continue;
            }
            // llama.cpp's "crude parsing": right for simple templates only.
            let single = list_of(processor.get("single"));
            let pair = list_of(processor.get("pair"));
            let mut special_first = None;
            let mut special_last = None;
            if single.len() > 1 {
                special_first = special_id(&single[0]);
                if let Some(first) = &special_first {
                    if config.is_none() {
                        special_bos = Some(first.clone());
                    }
                    let is_bos = [&special_bos, &special_cls]
                        .iter()
                        .any(|s| s.as_ref() == Some(first));
                    self.set_add("bos", is_bos);
                }
                special_last = special_id(&single[single.len() - 1]);
                if let Some(last) = &special_last {
                    if config.is_none() {
                        special_eos = Some(last.clone());
                    } else if special_eos.as_ref() != Some(last) {
                        let moved = special_eos.clone().unwrap_or(Json::Null);
                        if !self.types.iter().any(|t| t == "eot") {
                            self.types.push("eot".into());
                            put(config, "eot_token", moved);
                        } else if !self.types.iter().any(|t| t == "eom") {
                            self.types.push("eom".into());
                            put(config, "eom_token", moved);
                        } else {
                            tracing::warn!(
                                "EOS {special_eos:?} overridden by {last} without EOT/EOM"
                            );
                        }
                        put(config, "eos_token", last.clone());
                        special_eos = Some(last.clone());
                    }
                    self.set_add("eos", special_eos.as_ref() == Some(last));
                }
            }
            if pair.is_empty() {
                continue;
            }
            let start = match &special_first {
                Some(first) if special_id(&pair[0]).as_ref() == Some(first) => 1,
                _ => 0,
            };
            let stop = match &special_last {
                Some(last) if special_id(&pair[pair.len() - 1]).as_ref() == Some(last) => {
                    pair.len() - 1
                }
                _ => pair.len(),
            };
            let Some(inner) = pair.get(start..stop).filter(|s| !s.is_empty()) else {
                continue;
            };
            let seq = |entry: &Json| {
                entry
                    .get("Sequence")
                    .and_then(|s| s.get("id"))
                    .and_then(Json::as_str)
                    .map(str::to_owned)
            };
            let is_ab = seq(&inner[0]).as_deref() == Some("A")
                && seq(&inner[inner.len() - 1]).as_deref() == Some("B");
            if !is_ab || inner.len() < 3 {
                continue;
            }
            let middle = &inner[1..inner.len() - 1];
            let is_sep_or_eos = |e: &Json| {
                [&special_sep, &special_eos]
                    .iter()
                    .any(|s| s.as_ref() == Some(e))
            };
            let mut add_sep = false;
            if let Some(entry) = special_id(&middle[0]) {
                if is_sep_or_eos(&entry) && special_last.is_none() {
                    add_sep = true;
                }
            }
            if middle.len() == 2 {
                if let Some(entry) = special_id(&middle[1]) {
                    if is_sep_or_eos(&entry) {
                        add_sep = true;
                    }
                }
            }
            self.set_add("sep", add_sep);
            if add_sep && special_sep.is_none() && config.is_some() {
                put(
                    config,
                    "sep_token",
                    special_eos.clone().unwrap_or(Json::Null),
                );
            }
        }
    }

    /// `_parse_normalizer`: a `Lowercase` normalizer, alone, in a `Sequence` or as
    /// `BertNormalizer`'s `lowercase`.
    fn parse_normalizer(&mut self, normalizer: &Json) {
        match normalizer.get("type").and_then(Json::as_str) {
            Some("Lowercase") => self.normalizer_lowercase = true,
            Some("BertNormalizer") if normalizer.get("lowercase").map(truthy).unwrap_or(true) => {
                self.normalizer_lowercase = true
            }
            Some("Sequence") => {
                for n in list_of(normalizer.get("normalizers")) {
                    self.parse_normalizer(n);
                }
            }
            _ => {}
        }
    }

    /// `_try_load_from_config_json`: `{typ}_token_id`, or `text_config`'s.
    fn load_from_config_json(&mut self, ck: &Checkpoint<'_>) -> Result<(), ConvertError> {
        for typ in self.types.clone() {
            let key = format!("{typ}_token_id");
            let id = match ck.config.get(&key) {
                Some(Json::Null) | None => ck.config.get("text_config").and_then(|t| t.get(&key)),
                found => found,
            };
            self.set_special_json(ck, "config.json", &typ, id)?;
        }
        Ok(())
    }

    /// `_try_load_merges_txt`: `a b` lines, an optional `#` header, malformed lines skipped.
    fn load_merges_txt(&mut self, ck: &Checkpoint<'_>) -> Result<(), ConvertError> {
        let Some(text) = ck.read_text("merges.txt")? else {
            return Ok(());
        };
        let mut lines = text.lines().peekable();
        if lines.peek().is_some_and(|l| l.trim().starts_with('#')) {
            lines.next();
        }
        self.merges = lines
            .filter_map(|line| {
                let parts: Vec<&str> = line.split_whitespace().collect();
                (parts.len() == 2).then(|| format!("{} {}", parts[0], parts[1]))
            })
            .collect();
        Ok(())
    }
}

const CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// The GGUF key of a special token id (`add_{typ}_token_id` of gguf-py's writer).
fn id_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.bos_token_id",
        "eos" => "tokenizer.ggml.eos_token_id",
        "unk" => "tokenizer.ggml.unknown_token_id",
        "sep" => "tokenizer.ggml.seperator_token_id",
        "pad" => "tokenizer.ggml.padding_token_id",
        "mask" => "tokenizer.ggml.mask_token_id",
        "eot" => "tokenizer.ggml.eot_token_id",
        "eom" => "tokenizer.ggml.eom_token_id",
        "prefix" => "tokenizer.ggml.prefix_token_id",
        "suffix" => "tokenizer.ggml.suffix_token_id",
        "middle" => "tokenizer.ggml.middle_token_id",
        _ => return None,
    })
}

/// `add_chat_template` with a list: each named template under its own key, their names, then
/// the one named `default` as `tokenizer.chat_template`.
fn add_named_templates(kv: &mut Metadata, list: &[(String, String)]) {
    let mut default = None;
    let mut names: Vec<String> = Vec::new();
    for (name, template) in list {
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if name.is_empty() {
            continue;
        }
        if name == "default" {
            default = Some(template);
        } else {
            if !names.contains(&name) {
                names.push(name.clone());
            }
            kv.set_str(&format!("tokenizer.chat_template.{name}"), template);
        }
    }
    if !names.is_empty() {
        kv.set_array("tokenizer.chat_templates", Array::String(names));
    }
    if let Some(template) = default {
        kv.set_str(CHAT_TEMPLATE, template);
    }
}

/// The chat template: `tokenizer_config.json`'s `chat_template` if the key is there (a string or
/// a list of named templates), else `chat_template.jinja` (with
/// `additional_chat_templates/*.jinja`), else `chat_template.json`'s.
fn chat_template(ck: &Checkpoint<'_>, config: &Json) -> Result<Option<ChatTemplate>, ConvertError> {
    let alt = if let Some(text) = ck.read_text("chat_template.jinja")? {
        let extra = additional_templates(ck)?;
        if extra.is_empty() {
            Some(Json::String(text))
        } else {
            let mut list = vec![json!({"name": "default", "template": text})];
            list.extend(
                extra
                    .into_iter()
                    .map(|(name, template)| json!({"name": name, "template": template})),
            );
            Some(Json::Array(list))
        }
    } else if let Some(file) = ck.read_json("chat_template.json")? {
        file.get("chat_template").cloned()
    } else {
        None
    };
    let (value, file) = match config.get("chat_template") {
        Some(v) => (Some(v.clone()), TOKENIZER_CONFIG),
        None => (alt, "chat_template.json"),
    };
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(ChatTemplate::One(s))),
        Some(Json::Array(list)) => {
            let mut named = Vec::with_capacity(list.len());
            for entry in &list {
                let name = entry.get("name").and_then(Json::as_str).unwrap_or("");
                match entry.get("template") {
                    None | Some(Json::Null) => {}
                    Some(Json::String(t)) => named.push((name.to_owned(), t.clone())),
                    Some(other) => {
                        return Err(ck.invalid(
                            file,
                            format!("chat template '{name}' is {other}, not a string"),
                        ))
                    }
                }
            }
            Ok(Some(ChatTemplate::Named(named)))
        }
        Some(other) => {
            tracing::warn!("chat_template of type {other} ignored");
            Ok(None)
        }
    }
}

/// `additional_chat_templates/*.jinja` as (stem, text), sorted by name.
fn additional_templates(ck: &Checkpoint<'_>) -> Result<Vec<(String, String)>, ConvertError> {
    let dir = ck.path("additional_chat_templates");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jinja") || !path.is_file() {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let name = format!("additional_chat_templates/{stem}.jinja");
        if let Some(text) = ck.read_text(&name)? {
            found.push((stem.to_owned(), text));
        }
    }
    found.sort();
    Ok(found)
}

/// `tokenizer.json`'s `model.merges` as `"a b"` strings. The pair form (`[["a", "b"]]`, since
/// transformers 4.45) is joined with a space after writing spaces inside a part as U+0120, as
/// llama.cpp does (<https://github.com/ggml-org/llama.cpp/issues/9692>).
pub(crate) fn merges_of(
    ck: &Checkpoint<'_>,
    tokenizer: &Json,
) -> Result<Vec<String>, ConvertError> {
    let Some(Json::Array(merges)) = tokenizer.get("model").and_then(|m| m.get("merges")) else {
        return Ok(Vec::new());
    };
    let bad = |i: usize, m: &Json| {
        ck.invalid(
            TOKENIZER_JSON,
            format!("merge {i} is {m}, not \"a b\" or [\"a\", \"b\"] like merge 0"),
        )
    };
    let pair_form = match merges.first() {
        None => return Ok(Vec::new()),
        Some(Json::String(_)) => false,
        Some(Json::Array(p)) if p.len() == 2 && p[0].is_string() => true,
        Some(other) => {
            return Err(ck.invalid(TOKENIZER_JSON, format!("unknown merges format: {other}")))
        }
    };
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| match (pair_form, m) {
            (false, Json::String(s)) => Ok(s.clone()),
            (true, Json::Array(p)) if p.len() == 2 => match (&p[0], &p[1]) {
                (Json::String(a), Json::String(b)) => Ok(format!(
                    "{} {}",
                    a.replace(' ', "\u{120}"),
                    b.replace(' ', "\u{120}")
                )),
                _ => Err(bad(i, m)),
            },
            _ => Err(bad(i, m)),
        })
        .collect()
}

/// Python's truth value of a JSON value.
pub(crate) fn truthy(value: &Json) -> bool {
    match value {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

fn list_of(value: Option<&Json>) -> &[Json] {
    match value {
        Some(Json::Array(list)) => list,
        _ => &[],
    }
}

fn first_of(value: Option<&Json>) -> Option<Json> {
    list_of(value).first().cloned()
}

/// A template entry's `SpecialToken.id`, if it has a non-empty one.
fn special_id(entry: &Json) -> Option<Json> {
    entry
        .get("SpecialToken")
        .and_then(|s| s.get("id"))
        .filter(|id| truthy(id))
        .cloned()
}
