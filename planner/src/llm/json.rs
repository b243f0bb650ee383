//! Finding the JSON object in a model's reply: models wrap it in code fences or prose even when
//! asked not to. The object is returned as a slice of the reply, unchanged, and only if it parses
//! as JSON as it stands: nothing is repaired (no trailing commas, single quotes or comments).

use super::{snippet, LlmError};

/// Most `{` positions tried as the start of the object, so hostile replies (`{{{{…`) cost
/// linear time.
const MAX_CANDIDATES: usize = 64;

/// The JSON object in `text`: a fenced block (```` ```json ````) holding exactly one object, else
/// the whole text when it is an object, else the first balanced `{…}` that parses. Never panics.
pub fn extract_json(text: &str) -> Result<&str, LlmError> {
    for block in fenced_blocks(text) {
        let block = block.trim();
        if is_object(block) {
            return Ok(block);
        }
    }
    let whole = text.trim();
    if is_object(whole) {
        return Ok(whole);
    }
    // An answer that is one object cut short (a token limit, a server that stopped): an inner
    // object is not the answer, and saying which field it lacks would mislead.
    if whole.starts_with('{') && balanced_end(whole).is_none() {
        let start = whole.char_indices().rev().nth(59).map_or(0, |(i, _)| i);
        let tail = &whole[start..];
        return Err(LlmError::BadResponse(format!(
            "the reply's JSON object is cut off after {} bytes (it ends with `{tail}`)",
            whole.len()
        )));
    }
    for (start, _) in text.match_indices('{').take(MAX_CANDIDATES) {
        if let Some(end) = balanced_end(&text[start..]) {
            let candidate = &text[start..start + end];
            if is_object(candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(LlmError::BadResponse(format!(
        "no json object in the reply: {}",
        snippet(text.trim(), 200)
    )))
}

/// True when `s` is exactly one JSON object (no allocation of its values).
fn is_object(s: &str) -> bool {
    s.starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

/// The contents of each ```` ``` ```` fenced block, in order (the info string after the
/// opening fence, such as `json`, is skipped).
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        // The info string runs to the end of the line; a fence with no newline has no body.
        let Some(nl) = after.find('\n') else { break };
        let body = &after[nl + 1..];
        let Some(close) = body.find("```") else { break };
        blocks.push(&body[..close]);
        rest = &body[close + 3..];
    }
    blocks
}

/// Length of the `{…}` at the start of `s` (which starts with `{`), with braces inside JSON
/// strings ignored; `None` when it never closes.
fn balanced_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Option<&str>) {
        let got = extract_json(input).ok();
        assert_eq!(got, expect, "input: {input:?}");
    }

    #[test]
    fn plain_object() {
        check(r#"{"a": 1}"#, Some(r#"{"a": 1}"#));
        check(
            "  \n{\"a\": [1, {\"b\": null}]}\n ",
            Some(r#"{"a": [1, {"b": null}]}"#),
        );
    }

    #[test]
    fn an_object_cut_short_is_not_mistaken_for_its_first_complete_member() {
        let cut = r#"{"overrides":[{"tensor": "token_embd\.weight","type":"Q4_1"}],"ffn_prune":{"ratio":0.156"#;
        let e = extract_json(cut).unwrap_err().to_string();
        assert!(e.contains("cut off after") && e.contains("0.156"), "{e}");
    }

    #[test]
    fn fenced_object() {
        check(
            "Here is the recipe:\n```json\n{\"default_type\": \"Q4_K\"}\n```\nGood luck.",
            Some(r#"{"default_type": "Q4_K"}"#),
        );
        check("```\n{\"x\": true}\n```", Some(r#"{"x": true}"#));
        // A first fence that holds no object is skipped.
        check(
            "```sh\nsintra compress\n```\nthen\n```json\n{\"k\": 2}\n```",
            Some(r#"{"k": 2}"#),
        );
    }

    #[test]
    fn object_in_prose() {
        check(
            r#"Sure! {"overrides": [{"tensor": "blk\\.0\\..*", "type": "Q6_K"}]} Hope it helps {:"#,
            Some(r#"{"overrides": [{"tensor": "blk\\.0\\..*", "type": "Q6_K"}]}"#),
        );
        // Braces inside strings do not end the object.
        check(r#"x {"s": "}{\"}"} y"#, Some(r#"{"s": "}{\"}"}"#));
        // A braced aside that is not JSON is skipped for the next candidate.
        check(r#"use {x} like {"a": "b"}"#, Some(r#"{"a": "b"}"#));
        // Non-ASCII around and inside.
        check("résumé → {\"é\": \"ü\"} ✓", Some("{\"é\": \"ü\"}"));
    }

    #[test]
    fn rejects_what_is_not_a_strict_object() {
        for bad in [
            "",
            "no json here",
            "[1, 2, 3]",
            "\"string\"",
            "42",
            "{",
            "}",
            "{\"a\": 1,}",
            "{'a': 1}",
            "{\"a\": 1 // comment\n}",
            "```json\n{\"a\":\n```",
            "```json",
            "{\"a\": \"unterminated}",
            "{{{{{{{{{{",
            "}}}}{{{{",
        ] {
            let err = extract_json(bad).expect_err(bad);
            let err = err.to_string();
            assert!(
                err.starts_with("bad response: no json object")
                    || err.starts_with("bad response: the reply's JSON object is cut off"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn hostile_inputs_do_not_panic_or_take_long() {
        let deep = "{\"a\":".repeat(10_000) + &"}".repeat(10_000);
        assert!(extract_json(&deep).is_err(), "recursion past serde's limit");
        let many = "{".repeat(1_000_000);
        let t = std::time::Instant::now();
        assert!(extract_json(&many).is_err());
        assert!(t.elapsed().as_secs() < 5, "took {:?}", t.elapsed());

        // Deterministic pseudo-random strings over a JSON-ish alphabet, with multi-byte chars.
        let alphabet: Vec<char> = "{}[]\":,\\ ab1`\nééλ🙂".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5_000 {
            let len = (state % 40) as usize;
            let mut s = String::new();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            if let Ok(obj) = extract_json(&s) {
                assert!(is_object(obj), "{s:?} gave {obj:?}");
            }
        }
    }
}
