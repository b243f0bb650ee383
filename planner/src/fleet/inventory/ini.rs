//! Ansible's INI inventory format: host lines (`name key=value ...`, ranges such as
//! `www[01:50].example.com`, `host:port`), `[group]`, `[group:vars]` and `[group:children]`
//! sections, `#` and `;` comments. Hosts before the first section are ungrouped.

use super::{expand_range, InventoryError, Raw, Var};
use std::collections::BTreeMap;
use std::path::Path;

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Raw, InventoryError> {
    let err = |line: usize, key: Option<&str>, message: String| {
        InventoryError::at(path, line, key, message)
    };
    let mut raw = Raw::default();
    let mut section = Section::Hosts("ungrouped".into());
    // Per group, the line each of its hosts was listed on (a second listing is a mistake).
    let mut listed: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, full) in text.lines().enumerate() {
        let n = i + 1;
        let line = full.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            let Some(inner) = line.strip_prefix('[').and_then(|l| l.split_once(']')) else {
                return Err(err(
                    n,
                    None,
                    format!("section header '{line}' has no closing ']'"),
                ));
            };
            let (head, after) = inner;
            if !after.trim().is_empty()
                && !after.trim().starts_with('#')
                && !after.trim().starts_with(';')
            {
                return Err(err(
                    n,
                    None,
                    format!("text after the section header: '{}'", after.trim()),
                ));
            }
            let (name, kind) = match head.split_once(':') {
                Some((g, k)) => (g.trim(), Some(k.trim())),
                None => (head.trim(), None),
            };
            check_group_name(name).map_err(|m| err(n, None, m))?;
            raw.group(name, n);
            section = match kind {
                None => Section::Hosts(name.into()),
                Some("vars") => Section::Vars(name.into()),
                Some("children") => Section::Children(name.into()),
                Some(other) => {
                    return Err(err(
                        n,
                        None,
                        format!("section '[{head}]': '{other}' is not a kind of section ([{name}], [{name}:vars] or [{name}:children])"),
                    ))
                }
            };
            continue;
        }
        match &section {
            Section::Vars(g) => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(err(
                        n,
                        None,
                        format!("'{line}' in [{g}:vars] is not KEY=VALUE"),
                    ));
                };
                let k = k.trim();
                check_var_name(k).map_err(|m| err(n, Some(k), m))?;
                let value = unquote(v.trim());
                raw.group(g, n)
                    .vars
                    .insert(k.to_string(), Var { value, line: n });
            }
            Section::Children(g) => {
                if line.contains('=') || line.split_whitespace().count() > 1 {
                    return Err(err(
                        n,
                        None,
                        format!("'{line}' in [{g}:children] is not a group name"),
                    ));
                }
                check_group_name(line).map_err(|m| err(n, None, m))?;
                if line == g {
                    return Err(err(n, None, format!("group '{g}' is its own child")));
                }
                let group = raw.group(g, n);
                if !group.children.iter().any(|c| c == line) {
                    group.children.push(line.to_string());
                }
                raw.group(line, n);
            }
            Section::Hosts(g) => {
                let tokens = split_words(line).map_err(|m| err(n, None, m))?;
                let Some((pattern, rest)) = tokens.split_first() else {
                    continue;
                };
                let (pattern, port) = split_port(pattern);
                let mut vars: BTreeMap<String, Var> = BTreeMap::new();
                if let Some(p) = port {
                    vars.insert("ansible_port".into(), Var { value: p, line: n });
                }
                for t in rest {
                    let Some((k, v)) = t.split_once('=') else {
                        return Err(err(
                            n,
                            None,
                            format!("'{t}' after host '{pattern}' is not KEY=VALUE (a host line is: NAME [KEY=VALUE ...])"),
                        ));
                    };
                    check_var_name(k).map_err(|m| err(n, Some(k), m))?;
                    vars.insert(
                        k.to_string(),
                        Var {
                            value: v.to_string(),
                            line: n,
                        },
                    );
                }
                let names = expand_range(pattern).map_err(|m| err(n, None, m))?;
                for name in names {
                    if let Some(first) = listed.insert((g.clone(), name.clone()), n) {
                        let here = if g == "ungrouped" {
                            "outside any group".to_string()
                        } else {
                            format!("in group [{g}]")
                        };
                        return Err(err(n, None, format!("duplicate host '{name}': listed twice {here} (lines {first} and {n})")));
                    }
                    let h = raw.host(&name, n);
                    for (k, v) in &vars {
                        raw.hosts[h].2.insert(k.clone(), v.clone());
                    }
                    let group = raw.group(g, n);
                    group.hosts.push(name);
                }
            }
        }
    }
    Ok(raw)
}

/// `host:port` (one colon outside the host's `[a:b]` ranges, a number after it) as the host
/// and `ansible_port`; anything else (an IPv6 address, a plain name) as it is.
pub(super) fn split_port(pattern: &str) -> (&str, Option<String>) {
    // The colons that are not inside a range.
    let mut depth = 0;
    let outside: Vec<usize> = pattern
        .char_indices()
        .filter_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ':' if depth == 0 => return Some(i),
                _ => {}
            }
            None
        })
        .collect();
    match outside.as_slice() {
        [i] => {
            let (h, p) = (&pattern[..*i], &pattern[i + 1..]);
            if !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                (h, Some(p.to_string()))
            } else {
                (pattern, None)
            }
        }
        _ => (pattern, None),
    }
}

/// Words of a host line as a POSIX shell splits them (Ansible uses `shlex`): quotes group, an
/// unquoted `#` starts a comment.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed {c} quote in '{line}'")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A `[group:vars]` value without its quotes.
fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// Group names as Ansible takes them: letters, digits, `_` and `-`.
pub(super) fn check_group_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a group needs a name".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "group name '{name}' has '{c}': use letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

/// Variable names: letters, digits and `_`, not starting with a digit.
pub(super) fn check_var_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a variable name (letters, digits and '_')"
        ))
    }
}
