//! Ollama export (issue #19): `sintra export ollama` writes a Modelfile whose TEMPLATE, rendered
//! as Ollama renders it (Go's text/template over the messages, the Modelfile's SYSTEM first when
//! the conversation has none), gives the same prompt text as the model's own chat template
//! rendered as Hugging Face renders it (Jinja2) — for SmolLM2 (ChatML, with its built-in system
//! prompt), gemma3, and files carrying Llama 3's and Phi-3's templates, over two-turn
//! conversations with and without a system message. The gemma3 file carries no template: the
//! reference is Gemma 3's own (below).

use sintra_tests::{gemma3_270m_q4_k_m, python, release_bin_path, repo_root, smollm2_q4_1};
use std::process::Command;

/// Gemma 3's chat template (`google/gemma-3-*-it`, tokenizer_config.json), its text-content
/// branch: the reference for a gemma3 file that carries no template.
const GEMMA3_TEMPLATE: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
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
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"#;

/// Meta Llama 3 Instruct's chat template (BOS in the text, `| trim`).
const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/// Phi-3 Instruct's chat template.
const PHI3_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";

/// A GGUF that carries SmolLM2's vocabulary and `template` as its chat template, the tokenizer
/// adding BOS (as Llama 3's and Phi-3's files say), and no tensors: all an export reads.
fn with_template(path: &std::path::Path, template: &str) -> std::path::PathBuf {
    use formats::gguf::{GgufWriter, Value};
    let source = formats::gguf::GgufFile::open(smollm2_q4_1()).unwrap();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    for (k, v) in &source.header.metadata {
        if k.starts_with("tokenizer.") {
            w.set(k, v.clone());
        }
    }
    w.set("tokenizer.chat_template", Value::String(template.into()));
    w.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
    w.write_to_path(path, |_, _, _| Ok(())).unwrap();
    path.to_path_buf()
}

const TWO_TURNS: &str = r#"[{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Name a prime number."}]"#;
const WITH_SYSTEM: &str = r#"[{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a prime number."}]"#;

fn token_text(gguf: &formats::gguf::GgufFile, key: &str) -> String {
    let id = gguf.header.get(key).and_then(|v| v.as_u64());
    let tokens = gguf
        .header
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .and_then(|a| a.as_strings())
        .unwrap();
    id.map_or(String::new(), |i| tokens[i as usize].clone())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn modelfiles_render_the_prompts_of_the_models_own_templates() {
    let sintra = release_bin_path("planner", "sintra");
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("modelfile-render");
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&go)
        .arg(repo_root().join("tests/go/modelfile_render.go"))
        .env("GOCACHE", dir.path().join("gocache")));
    let made = dir.path().join("made");
    std::fs::create_dir_all(&made).unwrap();
    let llama3 = with_template(&made.join("llama3-template.gguf"), LLAMA3_TEMPLATE);
    let phi3 = with_template(&made.join("phi3-template.gguf"), PHI3_TEMPLATE);
    for (model, family) in [
        (smollm2_q4_1(), "chatml"),
        (gemma3_270m_q4_k_m(), "gemma"),
        (llama3, "llama3"),
        (phi3, "phi3"),
    ] {
        // The export writes beside the model: a link in a directory of our own, so that the
        // setup cache is left as it is.
        let here = dir.path().join(family);
        std::fs::create_dir_all(&here).unwrap();
        let link = here.join(model.file_name().unwrap());
        std::os::unix::fs::symlink(&model, &link).unwrap();
        let said = run(Command::new(&sintra)
            .args(["export", "ollama"])
            .arg(&link)
            .arg(format!("sintra-test-{family}"))
            .env("PATH", "/usr/bin:/bin"));
        assert!(said.contains("no ollama on PATH"), "{said}");
        assert!(
            said.contains(&format!("ollama create sintra-test-{family} -f Modelfile")),
            "{said}"
        );
        let modelfile = here.join("Modelfile");
        let text = std::fs::read_to_string(&modelfile).unwrap();
        let name = model.file_name().unwrap().to_string_lossy();
        assert!(text.contains(&format!("\nFROM ./{name}\n")), "{text}");
        assert!(text.contains(&format!("Chat template: {family}")), "{text}");
        assert!(text.contains("PARAMETER stop"), "{text}");

        let gguf = formats::gguf::GgufFile::open(&model).unwrap();
        let own = gguf
            .header
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let reference = match (&own, family) {
            (Some(t), _) => t.clone(),
            (None, "gemma") => GEMMA3_TEMPLATE.to_string(),
            (None, _) => panic!("{name} has no chat template"),
        };
        let template_file = here.join("template.jinja");
        std::fs::write(&template_file, &reference).unwrap();
        let bos = token_text(&gguf, "tokenizer.ggml.bos_token_id");
        let eos = token_text(&gguf, "tokenizer.ggml.eos_token_id");
        let adds_bos = gguf
            .header
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        for (i, conversation) in [TWO_TURNS, WITH_SYSTEM].iter().enumerate() {
            let messages = here.join(format!("messages-{i}.json"));
            std::fs::write(&messages, conversation).unwrap();
            let hf = run(python()
                .arg(repo_root().join("tests/python/render_chat_template.py"))
                .arg(&template_file)
                .arg(&messages)
                .arg(&bos)
                .arg(&eos));
            // When the tokenizer adds BOS itself (llama.cpp and Ollama do, as the file says),
            // the prompt text starts after it.
            let hf = match adds_bos {
                true => hf.strip_prefix(bos.as_str()).unwrap_or(&hf).to_string(),
                false => hf,
            };
            let ollama = run(Command::new(&go).arg(&modelfile).arg(&messages));
            assert_eq!(ollama, hf, "{family}, conversation {i}:\n{text}");
            assert!(hf.contains("Name a prime number."), "{hf}");
        }
    }
}
