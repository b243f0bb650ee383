//! The model's own chat template (`tokenizer.chat_template`, Jinja) rendered with minijinja,
//! as Hugging Face's `apply_chat_template` and llama-server render it: `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`, and the few Python
//! string methods templates call (`strip`, `startswith`, ...). A model without a template gets
//! ChatML, as llama-server does.

use crate::tokenizer::Tokenizer;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

/// ChatML, for models whose file carries no template.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// One message of a conversation.
#[derive(Debug, Clone)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A compiled chat template and the special tokens it may name.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Whether the tokenizer adds BOS itself (then a rendered leading BOS is dropped, so the
    /// prompt does not start with two).
    tokenizer_adds_bos: bool,
}

impl ChatTemplate {
    /// The template of a model (`source`), or ChatML when it has none.
    pub fn new(source: Option<&str>, tok: &Tokenizer) -> Result<ChatTemplate, String> {
        let mut env = Environment::new();
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_fmt: String| -> String {
            // Templates that print today's date get a fixed one: the runtime has no
            // calendar, and a date that changes would change the prompt.
            "26 Jul 2024".to_string()
        });
        env.set_unknown_method_callback(python_string_methods);
        env.add_template_owned("chat", source.unwrap_or(CHATML).to_string())
            .map_err(|e| format!("the model's chat template does not compile: {e}"))?;
        let text = |id: Option<u32>| {
            id.and_then(|i| tok.token_text(i))
                .unwrap_or_default()
                .to_string()
        };
        Ok(ChatTemplate {
            env,
            bos: text(tok.special_ids().bos),
            eos: text(tok.special_ids().eos),
            tokenizer_adds_bos: tok.add_bos(),
        })
    }

    /// The prompt for `messages`, ending with the assistant's cue.
    pub fn render(&self, messages: &[Message]) -> Result<String, String> {
        let tpl = self
            .env
            .get_template("chat")
            .map_err(|e| format!("chat template: {e}"))?;
        let out = tpl
            .render(minijinja::context! {
                messages => Value::from(
                    messages
                        .iter()
                        .map(|m| minijinja::context! { role => m.role.clone(), content => m.content.clone() })
                        .collect::<Vec<_>>(),
                ),
                add_generation_prompt => true,
                bos_token => self.bos.clone(),
                eos_token => self.eos.clone(),
            })
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidOperation => format!("the chat template refused the messages: {}", e.detail().unwrap_or("")),
                _ => format!("rendering the chat template: {e}"),
            })?;
        Ok(match out.strip_prefix(&self.bos) {
            Some(rest) if self.tokenizer_adds_bos && !self.bos.is_empty() => rest.to_string(),
            _ => out,
        })
    }
}

/// `str.strip()` and friends, which Jinja templates written for Python call.
fn python_string_methods(
    _state: &mut minijinja::State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let Some(s) = value.as_str() else {
        return Err(Error::from(ErrorKind::UnknownMethod));
    };
    let arg = |i: usize| args.get(i).and_then(Value::as_str);
    Ok(match (method, args.len()) {
        ("strip", 0) => Value::from(s.trim()),
        ("lstrip", 0) => Value::from(s.trim_start()),
        ("rstrip", 0) => Value::from(s.trim_end()),
        ("strip", 1) => Value::from(s.trim_matches(|c| arg(0).unwrap_or("").contains(c))),
        ("lower", 0) => Value::from(s.to_lowercase()),
        ("upper", 0) => Value::from(s.to_uppercase()),
        ("startswith", 1) => Value::from(s.starts_with(arg(0).unwrap_or("\u{0}"))),
        ("endswith", 1) => Value::from(s.ends_with(arg(0).unwrap_or("\u{0}"))),
        ("replace", 2) => Value::from(s.replace(arg(0).unwrap_or(""), arg(1).unwrap_or(""))),
        ("split", 1) => Value::from(
            s.split(arg(0).unwrap_or(" "))
                .map(str::to_string)
                .collect::<Vec<_>>(),
        ),
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{token_type, Vocab};

    /// A tokenizer whose BOS and EOS are `bos`/`eos` (`add_bos` as given).
    fn tokenizer(bos: &str, eos: &str, add_bos: bool) -> Tokenizer {
        let tokens: Vec<String> = [bos, eos, "a", "b"].iter().map(|s| s.to_string()).collect();
        let v = Vocab {
            model: "gpt2".into(),
            pre: Some("smollm".into()),
            tokens,
            scores: Vec::new(),
            token_types: vec![
                token_type::CONTROL,
                token_type::CONTROL,
                token_type::NORMAL,
                token_type::NORMAL,
            ],
            merges: Vec::new(),
            special: crate::tokenizer::SpecialIds {
                bos: Some(0),
                eos: Some(1),
                ..Default::default()
            },
            add_bos: Some(add_bos),
            add_eos: None,
            add_space_prefix: None,
        };
        Tokenizer::from_vocab(v).unwrap()
    }

    fn two_turns() -> Vec<Message> {
        let m = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        vec![
            m("user", "Hi there"),
            m("assistant", "Hello! How can I help?"),
            m("user", " What is 2+2? "),
        ]
    }

    /// SmolLM2's template (ChatML with a default system message), as its GGUF carries it.
    #[test]
    fn chatml_with_a_default_system_message() {
        let src = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let t =
            ChatTemplate::new(Some(src), &tokenizer("<|im_start|>", "<|im_end|>", false)).unwrap();
        assert_eq!(
            t.render(&two_turns()).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\n What is 2+2? <|im_end|>\n<|im_start|>assistant\n"
        );
        // No template: ChatML, as llama-server falls back to.
        let t = ChatTemplate::new(None, &tokenizer("<s>", "</s>", false)).unwrap();
        assert!(t
            .render(&two_turns())
            .unwrap()
            .ends_with("<|im_start|>user\n What is 2+2? <|im_end|>\n<|im_start|>assistant\n"));
    }

    /// Meta Llama 3 Instruct's template: BOS in the text (dropped when the tokenizer adds its
    /// own), `| trim`.
    #[test]
    fn llama3() {
        let src = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
        let want = "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        let t = ChatTemplate::new(
            Some(src),
            &tokenizer("<|begin_of_text|>", "<|eot_id|>", true),
        )
        .unwrap();
        assert_eq!(t.render(&two_turns()).unwrap(), want);
        let t = ChatTemplate::new(
            Some(src),
            &tokenizer("<|begin_of_text|>", "<|eot_id|>", false),
        )
        .unwrap();
        assert_eq!(
            t.render(&two_turns()).unwrap(),
            format!("<|begin_of_text|>{want}")
        );
    }

    /// Google's Gemma 3 template: the system message folded into the first user turn, the
    /// assistant called `model`, roles checked with `raise_exception`.
    #[test]
    fn gemma3() {
        let src = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"#;
        let t = ChatTemplate::new(Some(src), &tokenizer("<bos>", "<eos>", true)).unwrap();
        let mut msgs = two_turns();
        msgs.insert(
            0,
            Message {
                role: "system".into(),
                content: "Be brief.".into(),
            },
        );
        assert_eq!(
            t.render(&msgs).unwrap(),
            "<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello! How can I help?<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
        );
        // Two user turns in a row: the template's own error, passed on.
        let bad = vec![msgs[1].clone(), msgs[1].clone()];
        let e = t.render(&bad).unwrap_err();
        assert!(e.contains("roles must alternate"), "{e}");
        // Python string methods templates use.
        let t = ChatTemplate::new(
            Some("{{ messages[0]['content'].strip().upper() }}|{{ messages[0]['content'].startswith(' W') }}"),
            &tokenizer("<s>", "</s>", false),
        )
        .unwrap();
        assert_eq!(t.render(&two_turns()[2..]).unwrap(), "WHAT IS 2+2?|True");
    }
}
