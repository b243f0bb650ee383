//! Ollama export (issue #19): a `Modelfile` beside a model — `FROM`, the model's chat template
//! translated to Ollama's template language (Go's `text/template` over `.Messages`), the
//! template's default system prompt as `SYSTEM`, its stop strings, default parameters — and
//! `ollama create` when an `ollama` binary is on `PATH` (else the exact command to run).
//!
//! Chat templates are Jinja programs; a general translation to Go templates does not exist, so
//! each template family we render is translated by hand and recognised by its markers: ChatML
//! (`<|im_start|>`: SmolLM2, Qwen), Gemma (`<start_of_turn>`), Llama 3 (`<|start_header_id|>`,
//! not 3.1's own system prompt) and Phi-3 (`<|user|>` and a newline). Any other template is an
//! error that names the families supported, never a guess. The translation is held to the
//! original by a test that renders both (Jinja, as Hugging Face does; Go's `text/template`, as
//! Ollama does) for the same conversations.

use anyhow::{bail, Context, Result};
use formats::gguf::GgufFile;
use std::path::{Path, PathBuf};

/// ChatML over Ollama's `.Messages`, ending with the assistant's cue.
const CHATML: &str = "{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
";

/// Gemma's turns: the assistant is `model`; a system message is not a turn of its own but
/// opens the first user turn, followed by a blank line (as Gemma's own template does).
const GEMMA: &str = "{{- $system := \"\" }}{{- $first := true }}
{{- range .Messages }}{{ if eq .Role \"system\" }}{{ $system = .Content }}{{ end }}{{ end }}
{{- range .Messages }}{{ if ne .Role \"system\" }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}{{ end }}
{{ if and $first $system }}{{ $system }}

{{ end }}{{ $first = false }}{{ .Content }}<end_of_turn>
{{ end }}{{ end }}<start_of_turn>model
";

/// Llama 3's headers: each message is its role's header, a blank line, the content and
/// `<|eot_id|>`, with nothing between messages; BOS is the tokenizer's to add.
const LLAMA3: &str = "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

";

/// Phi-3's tags: `<|role|>`, a newline, the content, `<|end|>` and a newline.
const PHI3: &str = "{{- range .Messages }}<|{{ .Role }}|>
{{ .Content }}<|end|>
{{ end }}<|assistant|>
";

/// A chat template family Sintra translates.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// `chatml`, `gemma`, `llama3` or `phi3`.
    pub family: &'static str,
    pub template: &'static str,
    /// The Jinja template's default system prompt (used when a conversation has none).
    pub system: Option<String>,
    pub stops: Vec<&'static str>,
}

/// The translation of `jinja` for a model of architecture `arch`. Without a template, a
/// Gemma model gets Gemma's turns (what it was tuned on), any other ChatML (as sintra-rt and
/// llama-server do).
pub fn translate(jinja: Option<&str>, arch: &str) -> Result<Translation> {
    if jinja.is_none() && arch.starts_with("gemma") {
        return translate(Some("<start_of_turn>"), arch);
    }
    let Some(src) = jinja else {
        return Ok(Translation {
            family: "chatml",
            template: CHATML,
            system: None,
            stops: vec!["<|im_start|>", "<|im_end|>"],
        });
    };
    if src.contains("<|im_start|>") {
        return Ok(Translation {
            family: "chatml",
            template: CHATML,
            system: default_system(src),
            stops: vec!["<|im_start|>", "<|im_end|>"],
        });
    }
    if src.contains("<start_of_turn>") {
        return Ok(Translation {
            family: "gemma",
            template: GEMMA,
            system: None,
            stops: vec!["<start_of_turn>", "<end_of_turn>"],
        });
    }
    // The newline after a tag, as the Jinja source writes it: an escape or the character.
    let tag_then_newline =
        |tag: &str| src.contains(&format!("{tag}\\n")) || src.contains(&format!("{tag}\n"));
    if src.contains("<|start_header_id|>") && tag_then_newline("<|end_header_id|>") {
        if src.contains("Cutting Knowledge Date") || src.contains("tools") {
            bail!(
                "this Llama 3.1-style chat template writes its own system prompt (a knowledge date, tools), which an Ollama template over .Messages does not reproduce; write the Modelfile's TEMPLATE by hand"
            );
        }
        return Ok(Translation {
            family: "llama3",
            template: LLAMA3,
            system: None,
            stops: vec!["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        });
    }
    if tag_then_newline("<|user|>") && tag_then_newline("<|assistant|>") && src.contains("<|end|>")
    {
        return Ok(Translation {
            family: "phi3",
            template: PHI3,
            system: None,
            stops: vec!["<|end|>", "<|user|>", "<|assistant|>", "<|endoftext|>"],
        });
    }
    let head: String = src.chars().take(80).collect();
    bail!(
        "no Ollama template for this chat template (it starts `{head}`): sintra translates ChatML (<|im_start|>), Gemma (<start_of_turn>), Llama 3 (<|start_header_id|>) and Phi-3 (<|user|>) templates; write the Modelfile's TEMPLATE by hand"
    )
}

/// A ChatML template's built-in system prompt: the text of a string literal
/// `'<|im_start|>system\n...<|im_end|>'` that the template emits when the conversation has no
/// system message (SmolLM2's "You are a helpful AI assistant named SmolLM, ...").
fn default_system(src: &str) -> Option<String> {
    for (quote, newline) in [('\'', "\\n"), ('\'', "\n"), ('"', "\\n"), ('"', "\n")] {
        // The newline is an escape in the literal (`\n`), or the character itself.
        let open = format!("{quote}<|im_start|>system{newline}");
        let Some(at) = src.find(&open) else { continue };
        let rest = &src[at + open.len()..];
        let end = rest.find("<|im_end|>")?;
        let text = &rest[..end];
        if text.contains(quote) || text.contains("{{") {
            return None;
        }
        return Some(text.replace("\\n", "\n"));
    }
    None
}

/// Ollama's triple-quoted string; `"""` inside cannot be written.
fn triple(s: &str) -> Result<String> {
    if s.contains("\"\"\"") {
        bail!("the text contains \"\"\", which a Modelfile cannot quote");
    }
    Ok(format!("\"\"\"{s}\"\"\""))
}

/// The Modelfile for `model` (written beside it: `FROM` names the file relative to it).
pub fn modelfile(model: &Path, note: &str) -> Result<String> {
    let gguf = GgufFile::open(model).with_context(|| format!("reading {}", model.display()))?;
    let jinja = gguf
        .header
        .get("tokenizer.chat_template")
        .and_then(formats::gguf::Value::as_str);
    let arch = gguf
        .header
        .get("general.architecture")
        .and_then(formats::gguf::Value::as_str)
        .unwrap_or("llama");
    let t = translate(jinja, arch).with_context(|| format!("{}", model.display()))?;
    let ctx = gguf
        .header
        .get(&format!("{arch}.context_length"))
        .and_then(formats::gguf::Value::as_u64)
        .unwrap_or(4096);
    let name = model
        .file_name()
        .context("the model path has no file name")?
        .to_string_lossy();
    let mut s = format!(
        "# {note}\n# Chat template: {} (translated from the GGUF's own).\nFROM ./{name}\n",
        t.family
    );
    s += &format!("TEMPLATE {}\n", triple(t.template)?);
    if let Some(sys) = &t.system {
        s += &format!("SYSTEM {}\n", triple(sys)?);
    }
    for stop in &t.stops {
        s += &format!("PARAMETER stop \"{stop}\"\n");
    }
    // Ollama's 2048-token default cuts long prompts; the model's own context, up to 8192.
    s += &format!("PARAMETER num_ctx {}\n", ctx.clamp(512, 8192));
    Ok(s)
}

/// Write `Modelfile` beside `model` and create the Ollama model `name` from it when `ollama`
/// is on PATH; returns what was done, for the user.
pub fn export(model: &Path, name: &str, note: &str) -> Result<String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c))
    {
        bail!("'{name}' is not an Ollama model name (letters, digits, . _ - : /)");
    }
    let text = modelfile(model, note)?;
    let dir = model
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let path = dir.join("Modelfile");
    crate::home::write_atomic(&path, text.as_bytes())?;
    let mut done = format!("wrote {}", path.display());
    let ollama = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("ollama"))
        .find(|p| p.is_file());
    match ollama {
        Some(bin) => {
            let out = std::process::Command::new(&bin)
                .args(["create", name, "-f"])
                .arg(&path)
                .current_dir(&dir)
                .output()
                .with_context(|| format!("running {}", bin.display()))?;
            if !out.status.success() {
                bail!(
                    "{} create {name} failed ({}): {}",
                    bin.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            done += &format!("; created the Ollama model {name}: ollama run {name}");
        }
        None => {
            done += &format!(
                "; no ollama on PATH: create the model with\n  cd {} && ollama create {name} -f Modelfile",
                dir.display()
            );
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_recognised_and_others_refused() {
        let smollm = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        let t = translate(Some(smollm), "llama").unwrap();
        assert_eq!(t.family, "chatml");
        assert_eq!(
            t.system.as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        assert_eq!(translate(None, "llama").unwrap().family, "chatml");
        assert_eq!(translate(None, "gemma3").unwrap().family, "gemma");
        // The newline as the character itself, as GGUF files carry SmolLM2's template.
        let t = translate(Some(&smollm.replace("\\n", "\n")), "llama").unwrap();
        assert_eq!(
            t.system.as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        assert_eq!(
            translate(Some("{{ bos_token }}<start_of_turn>user"), "gemma3")
                .unwrap()
                .family,
            "gemma"
        );
        let llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
        assert_eq!(translate(Some(llama3), "llama").unwrap().family, "llama3");
        let e = translate(
            Some(&format!(
                "{{{{- 'Cutting Knowledge Date: December 2023' }}}}{llama3}"
            )),
            "llama",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3.1") && e.contains("by hand"), "{e}");
        let phi3 = "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";
        assert_eq!(translate(Some(phi3), "phi3").unwrap().family, "phi3");
        // Phi-4-mini's tags without the newlines are another format: refused, not guessed.
        let e = translate(
            Some("{{'<|user|>' + message['content'] + '<|end|>'}}<|assistant|>"),
            "phi3",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ChatML") && e.contains("Phi-3"), "{e}");
        assert!(triple("a\"\"\"b").is_err());
        assert!(export(Path::new("x.gguf"), "bad name!", "").is_err());
    }
}
