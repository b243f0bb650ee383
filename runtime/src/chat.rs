//! Chat templates. A Jinja engine would dwarf the runtime, so we recognise the templates we can
//! render faithfully and refuse the rest with a clear error. ChatML (`<|im_start|>role\n...
//! <|im_end|>\n`) covers SmolLM, Qwen and many fine-tunes; a template that inserts a default
//! system message when the conversation has none (SmolLM2's does) gets that message too.

use formats::gguf::{Gguf, Value};

const IM_START: &str = "<|im_start|>";

/// The prompt for a single user turn followed by the assistant's cue, as the model's template
/// renders it with `add_generation_prompt = true`.
pub fn render_user_turn(g: &Gguf, user: &str) -> Result<String, String> {
    let tpl = g
        .get("tokenizer.chat_template")
        .and_then(Value::as_str)
        .ok_or("--chat: the model has no chat template (tokenizer.chat_template)")?;
    if !tpl.contains(IM_START) {
        return Err(
            "--chat: the model's chat template is not ChatML, the only kind sintra-rt renders"
                .into(),
        );
    }
    let mut out = String::new();
    if let Some(system) = default_system(tpl) {
        out.push_str(&format!("{IM_START}system\n{system}<|im_end|>\n"));
    }
    out.push_str(&format!(
        "{IM_START}user\n{user}<|im_end|>\n{IM_START}assistant\n"
    ));
    Ok(out)
}

/// The literal default system message a ChatML template emits when the first message is not a
/// system message: `{{ '<|im_start|>system\n...<|im_end|>\n' }}` inside `{% if loop.first ... %}`.
/// The newline is a Jinja escape (`\n`) in some files and a newline character in others
/// (SmolLM2's GGUF).
fn default_system(tpl: &str) -> Option<String> {
    let start = ["'<|im_start|>system\\n", "'<|im_start|>system\n"]
        .iter()
        .find_map(|m| tpl.find(m).map(|i| i + m.len()))?;
    let rest = &tpl[start..];
    let end = rest.find("<|im_end|>")?;
    Some(rest[..end].replace("\\n", "\n").replace("\\'", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_style_template_gets_its_default_system_message() {
        let tpl = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        assert_eq!(
            default_system(tpl).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        assert_eq!(default_system("{{'<|im_start|>' + role}}"), None);
        // SmolLM2's GGUF carries the newline as a character, not an escape.
        let real = tpl.replace("\\n", "\n");
        assert_eq!(
            default_system(&real).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
    }
}
