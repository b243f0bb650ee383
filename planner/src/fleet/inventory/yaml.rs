//! Ansible's YAML inventory format: top-level groups (usually `all`), each a mapping of
//! `hosts` (host → its variables, or nothing), `vars` and `children` (group → the same kind of
//! mapping). Parsed from `yaml-rust2`'s events so that every key keeps its line: a host listed
//! twice, a key indented into the wrong place or a misspelt variable is reported where it is.

use super::ini::{check_group_name, check_var_name, split_port};
use super::{expand_range, InventoryError, Raw, Var};
use std::collections::BTreeMap;
use std::path::Path;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML value with the line it starts on.
#[derive(Debug, Clone)]
enum Node {
    Null(usize),
    Scalar(String, usize),
    Map(Vec<(Node, Node)>, usize),
    Seq(Vec<Node>, usize),
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Null(l) | Node::Scalar(_, l) | Node::Map(_, l) | Node::Seq(_, l) => *l,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Null(_) => "nothing",
            Node::Scalar(..) => "a single value",
            Node::Map(..) => "a mapping",
            Node::Seq(..) => "a list",
        }
    }
}

/// Builds [`Node`]s from the parser's events.
#[derive(Default)]
struct Builder {
    /// Open collections: (node, the key waiting for its value in a mapping).
    stack: Vec<(Node, Option<Node>)>,
    anchors: BTreeMap<usize, Node>,
    /// Anchor ids of the open collections (0: none).
    anchor_ids: Vec<usize>,
    docs: Vec<Node>,
    /// An alias to an anchor that does not exist (reported after parsing).
    bad_alias: Option<usize>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some((Node::Seq(items, _), _)) => items.push(node),
            Some((Node::Map(entries, _), pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
            Some(_) => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(v, style, anchor, _) => {
                let null = style == TScalarStyle::Plain
                    && matches!(v.as_str(), "" | "~" | "null" | "Null" | "NULL");
                let node = if null {
                    Node::Null(line)
                } else {
                    Node::Scalar(v, line)
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((Node::Map(Vec::new(), line), None));
                self.anchor_ids.push(anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push((Node::Seq(Vec::new(), line), None));
                self.anchor_ids.push(anchor);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    let anchor = self.anchor_ids.pop().unwrap_or(0);
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.push_value(node);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => {
                    let n = n.clone();
                    self.push_value(n);
                }
                None => {
                    self.bad_alias.get_or_insert(line);
                    self.push_value(Node::Null(line));
                }
            },
            _ => {}
        }
    }
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Raw, InventoryError> {
    let err = |line: usize, key: Option<&str>, message: String| {
        InventoryError::at(path, line, key, message)
    };
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, false)
        .map_err(|e| {
            let m = e.marker();
            err(
                m.line(),
                None,
                format!(
                    "not valid YAML: {} (column {}; check the indentation)",
                    e.info(),
                    m.col() + 1
                ),
            )
        })?;
    if let Some(line) = b.bad_alias {
        return Err(err(
            line,
            None,
            "an alias (*name) to an anchor that is not defined".into(),
        ));
    }
    let mut raw = Raw::default();
    let root = match b.docs.into_iter().next() {
        None | Some(Node::Null(_)) => return Err(err(0, None, "the inventory is empty".into())),
        Some(Node::Map(entries, _)) => entries,
        Some(other) => {
            return Err(err(
                other.line(),
                None,
                format!(
                    "the inventory is {}: it must be a mapping of groups (all:, webservers:, ...)",
                    other.kind()
                ),
            ))
        }
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (key, body) in &root {
        let name = scalar_key(key).map_err(|m| err(key.line(), None, m))?;
        if let Some(first) = seen.insert(name.clone(), key.line()) {
            return Err(err(
                key.line(),
                None,
                format!(
                    "group '{name}' is defined twice at the top level (lines {first} and {})",
                    key.line()
                ),
            ));
        }
        group(&mut raw, &name, key.line(), body, &err)?;
    }
    Ok(raw)
}

/// A mapping key as text (a group, host or variable name).
fn scalar_key(key: &Node) -> Result<String, String> {
    match key {
        Node::Scalar(s, _) => Ok(s.clone()),
        other => Err(format!("a key is {}: keys are names", other.kind())),
    }
}

type ErrFn<'a> = dyn Fn(usize, Option<&str>, String) -> InventoryError + 'a;

/// The entries of a mapping (none for an empty value); anything else is an error at its line
/// about `key`, saying what it had to be (`must`, given what it is).
fn mapping<'n>(
    node: &'n Node,
    key: Option<&str>,
    err: &ErrFn<'_>,
    must: impl FnOnce(&str) -> String,
) -> Result<&'n [(Node, Node)], InventoryError> {
    match node {
        Node::Null(_) => Ok(&[]),
        Node::Map(e, _) => Ok(e),
        other => Err(err(other.line(), key, must(other.kind()))),
    }
}

/// The group `name` (first named at `line`) with `body`: its hosts, vars and children.
fn group(
    raw: &mut Raw,
    name: &str,
    line: usize,
    body: &Node,
    err: &ErrFn<'_>,
) -> Result<(), InventoryError> {
    check_group_name(name).map_err(|m| err(line, None, m))?;
    raw.group(name, line);
    let entries = mapping(body, None, err, |kind| {
        format!("group '{name}' is {kind}: a group is a mapping with hosts, vars and children")
    })?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (k, v) in entries {
        let key = scalar_key(k).map_err(|m| err(k.line(), None, m))?;
        if let Some(first) = seen.insert(key.clone(), k.line()) {
            return Err(err(
                k.line(),
                Some(&key),
                format!(
                    "group '{name}' has '{key}' twice (lines {first} and {})",
                    k.line()
                ),
            ));
        }
        match key.as_str() {
            "hosts" => hosts(raw, name, v, err)?,
            "vars" => {
                let vars = variables(v, &format!("vars of group '{name}'"), err)?;
                raw.group(name, line).vars.extend(vars);
            }
            "children" => {
                let children = mapping(v, Some("children"), err, |kind| {
                    format!("the children of group '{name}' are {kind}: they must be a mapping of groups")
                })?;
                let mut seen_child: BTreeMap<String, usize> = BTreeMap::new();
                for (ck, cv) in children {
                    let child = scalar_key(ck).map_err(|m| err(ck.line(), None, m))?;
                    if let Some(first) = seen_child.insert(child.clone(), ck.line()) {
                        return Err(err(ck.line(), None, format!("group '{name}' lists child '{child}' twice (lines {first} and {})", ck.line())));
                    }
                    if child == name {
                        return Err(err(ck.line(), None, format!("group '{name}' is its own child")));
                    }
                    let g = raw.group(name, line);
                    if !g.children.contains(&child) {
                        g.children.push(child.clone());
                    }
                    group(raw, &child, ck.line(), cv, err)?;
                }
            }
            _ => {
                return Err(err(
                    k.line(),
                    Some(&key),
                    format!(
                        "group '{name}' has '{key}', which is not hosts, vars or children (a host or variable indented to the wrong level?)"
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// The `hosts:` of group `g`: host names (or ranges) to their variables or nothing.
fn hosts(raw: &mut Raw, g: &str, node: &Node, err: &ErrFn<'_>) -> Result<(), InventoryError> {
    let entries = mapping(node, Some("hosts"), err, |kind| {
        format!("the hosts of group '{g}' are {kind}: they must be a mapping (host: or host: {{vars}}), not a list")
    })?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (k, v) in entries {
        let pattern = scalar_key(k).map_err(|m| err(k.line(), None, m))?;
        let vars = match v {
            Node::Null(_) => BTreeMap::new(),
            Node::Map(..) => variables(v, &format!("host '{pattern}'"), err)?,
            other => {
                return Err(err(
                    other.line(),
                    None,
                    format!(
                        "host '{pattern}' is followed by {}: a host takes a mapping of its variables (KEY: VALUE) or nothing",
                        other.kind()
                    ),
                ))
            }
        };
        let (pattern, port) = split_port(&pattern);
        let mut vars = vars;
        if let Some(p) = port {
            vars.entry("ansible_port".into()).or_insert(Var {
                value: p,
                line: k.line(),
            });
        }
        for name in expand_range(pattern).map_err(|m| err(k.line(), None, m))? {
            if let Some(first) = seen.insert(name.clone(), k.line()) {
                return Err(err(
                    k.line(),
                    None,
                    format!("duplicate host '{name}': listed twice in the hosts of group '{g}' (lines {first} and {})", k.line()),
                ));
            }
            let h = raw.host(&name, k.line());
            raw.hosts[h].2.extend(vars.clone());
            raw.group(g, k.line()).hosts.push(name);
        }
    }
    Ok(())
}

/// A mapping of variables (`what` names whose, for errors). Values Sintra does not read may be
/// lists or mappings (kept as a marker); its own keys must be single values.
fn variables(
    node: &Node,
    what: &str,
    err: &ErrFn<'_>,
) -> Result<BTreeMap<String, Var>, InventoryError> {
    let entries = mapping(node, None, err, |kind| {
        format!("the variables of {what} are {kind}: they must be a mapping (KEY: VALUE)")
    })?;
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let key = scalar_key(k).map_err(|m| err(k.line(), None, m))?;
        check_var_name(&key).map_err(|m| err(k.line(), Some(&key), m))?;
        if out.contains_key(&key) {
            return Err(err(
                k.line(),
                Some(&key),
                format!("{what} sets '{key}' twice"),
            ));
        }
        let value = match v {
            Node::Null(_) => String::new(),
            Node::Scalar(s, _) => s.clone(),
            other if key.starts_with("sintra_") || key.starts_with("ansible_") => {
                return Err(err(
                    k.line(),
                    Some(&key),
                    format!("is {}: it takes a single value", other.kind()),
                ))
            }
            Node::Map(..) => "(mapping)".into(),
            Node::Seq(..) => "(list)".into(),
        };
        out.insert(
            key,
            Var {
                value,
                line: k.line(),
            },
        );
    }
    Ok(out)
}
