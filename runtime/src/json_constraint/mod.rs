//! Constrained sampling for structured output (`response_format` of type `json_object` or
//! `json_schema`, issue #17): the text generated so far is run through a JSON parser that
//! knows the schema, byte by byte, and a token may come next only if its bytes keep the text a
//! prefix of some valid answer. Once the value is complete, only an end-of-generation token
//! may follow. What llama-server does with a grammar made from the schema, without the
//! grammar: the schema ([`schema::Schema`]) is walked directly by a pushdown matcher.
//!
//! The matcher is a set of parser stacks (more than one only inside `anyOf`), each a stack of
//! [`Frame`]s: a value expected, an object or array being read, a string, a number, a literal.
//! Whitespace between tokens is allowed in runs of at most [`MAX_WHITESPACE`] bytes, so a model
//! cannot stall in blank space, objects and arrays nest at most [`MAX_NESTING`] deep, and
//! `maxItems`/`maxLength` bound what could otherwise grow without end.

pub mod schema;

#[cfg(test)]
mod tests;

pub use schema::{Node, Schema};

/// The longest run of whitespace allowed between JSON tokens (pretty printing needs a newline
/// and some indentation).
pub const MAX_WHITESPACE: usize = 24;

/// The deepest nesting of objects and arrays (a small model asked for "any JSON object" can
/// otherwise nest without end).
pub const MAX_NESTING: usize = 6;

/// The longest number, in characters.
const MAX_NUMBER: usize = 24;

/// Most parser stacks followed at once (alternatives of `anyOf`).
const MAX_STACKS: usize = 64;

/// Where a number is in JSON's number grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumState {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpInt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjState {
    /// After `{`.
    Start,
    /// A key is being read (the key frame is above).
    InKey,
    /// After a key: `:` next, then a value of this node.
    AfterKey(usize),
    /// The value frame is above.
    InValue,
    AfterValue,
    /// After `,`.
    ExpectKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrState {
    Start,
    InValue,
    AfterValue,
    ExpectValue,
}

#[derive(Debug, Clone, PartialEq)]
enum Frame {
    /// A value of this node is expected (whitespace first allowed).
    Value(usize),
    Object {
        node: usize,
        /// The properties present so far (indices into the node's `props`; `u16::MAX` for
        /// others, which are not tracked beyond their count).
        seen: Vec<u16>,
        state: ObjState,
    },
    Array {
        node: usize,
        count: usize,
        state: ArrState,
    },
    /// A string without a fixed set of values, after its opening quote.
    Str {
        /// A key (its text is kept to find its schema) or a value.
        key: bool,
        raw: Vec<u8>,
        chars: usize,
        min_len: usize,
        max_len: Option<usize>,
        /// 0: plain; 1: after a backslash; 2 to 5: hex digits of `\u` still to read + 1.
        esc: u8,
    },
    Num {
        node: usize,
        text: Vec<u8>,
        state: NumState,
    },
    /// One of a few exact texts (`true`, `null`, an enum's JSON text, a key's), `pos` bytes in.
    Lit {
        /// The texts still possible.
        options: Vec<std::sync::Arc<str>>,
        pos: usize,
        /// A key (its object below learns which) or a value.
        key: bool,
    },
}

/// The matcher: a schema and where the text so far has taken it.
#[derive(Debug, Clone)]
pub struct JsonMatcher {
    nodes: std::sync::Arc<Vec<Node>>,
    any_object: usize,
    any_array: usize,
    stacks: Vec<Vec<Frame>>,
    ws_run: usize,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn json_text(s: &str) -> std::sync::Arc<str> {
    serde_json::to_string(s)
        .unwrap_or_else(|_| format!("\"{s}\""))
        .into()
}

impl JsonMatcher {
    /// A matcher at the start of the answer.
    pub fn new(schema: &Schema) -> JsonMatcher {
        let mut nodes = schema.nodes.clone();
        let any = nodes.len();
        nodes.push(Node::Any);
        let any_object = nodes.len();
        nodes.push(Node::Object {
            props: Vec::new(),
            required: Vec::new(),
            additional: Some(any),
        });
        let any_array = nodes.len();
        nodes.push(Node::Array {
            items: any,
            min_items: 0,
            max_items: None,
        });
        JsonMatcher {
            nodes: std::sync::Arc::new(nodes),
            any_object,
            any_array,
            stacks: vec![vec![Frame::Value(0)]],
            ws_run: 0,
        }
    }

    /// Whether the value is complete (so generation may, and must, end here).
    pub fn is_complete(&self) -> bool {
        self.stacks.iter().any(|s| self.can_end(s))
    }

    /// Whether the text so far leads nowhere (no parse is alive).
    pub fn is_dead(&self) -> bool {
        self.stacks.is_empty()
    }

    /// Whether `bytes` may come next.
    pub fn allows(&self, bytes: &[u8]) -> bool {
        let mut m = self.clone();
        m.feed(bytes)
    }

    /// Take `bytes`; false (and the matcher dead) if they do not fit. Every run of whitespace
    /// counts against [`MAX_WHITESPACE`], inside strings too (a model padding a string with
    /// blanks is rambling as well).
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            self.ws_run = if is_ws(b) { self.ws_run + 1 } else { 0 };
            if self.ws_run > MAX_WHITESPACE || !self.feed_byte(b) {
                self.stacks.clear();
                return false;
            }
        }
        true
    }

    fn feed_byte(&mut self, b: u8) -> bool {
        let stacks = std::mem::take(&mut self.stacks);
        let mut next: Vec<Vec<Frame>> = Vec::new();
        for s in stacks {
            for t in self.step(s, b) {
                if !next.contains(&t) && next.len() < MAX_STACKS {
                    next.push(t);
                }
            }
        }
        self.stacks = next;
        !self.stacks.is_empty()
    }

    /// Whether `s` is a complete value: nothing left, or a top-level number or literal that
    /// may end here.
    fn can_end(&self, s: &[Frame]) -> bool {
        match s {
            [] => true,
            [f] => match f {
                Frame::Num { node, text, state } => self.num_complete(*node, text, *state),
                Frame::Lit { options, pos, .. } => options.iter().any(|o| o.len() == *pos),
                _ => false,
            },
            _ => false,
        }
    }

    fn num_complete(&self, node: usize, text: &[u8], state: NumState) -> bool {
        if !matches!(
            state,
            NumState::Zero | NumState::Int | NumState::Frac | NumState::ExpInt
        ) {
            return false;
        }
        let Some(v) = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
        else {
            return false;
        };
        match self.nodes[node] {
            Node::Number { min, max, .. } => {
                min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
            }
            _ => true,
        }
    }

    /// The stacks `s` becomes after byte `b` (none if `b` cannot come next).
    fn step(&self, mut s: Vec<Frame>, b: u8) -> Vec<Vec<Frame>> {
        let Some(top) = s.pop() else {
            // Complete: nothing may follow.
            return Vec::new();
        };
        let nodes = &*self.nodes;
        match top {
            Frame::Value(n) => {
                if is_ws(b) {
                    s.push(Frame::Value(n));
                    return vec![s];
                }
                match &nodes[n] {
                    Node::AnyOf(alts) => alts
                        .iter()
                        .flat_map(|&a| {
                            let mut t = s.clone();
                            t.push(Frame::Value(a));
                            self.step(t, b)
                        })
                        .collect(),
                    node => self.start_value(s, n, node, b),
                }
            }
            Frame::Str {
                key,
                mut raw,
                mut chars,
                min_len,
                max_len,
                mut esc,
            } => {
                match esc {
                    1 => {
                        if !b"\"\\/bfnrtu".contains(&b) {
                            return Vec::new();
                        }
                        esc = if b == b'u' { 5 } else { 0 };
                        chars += usize::from(b != b'u');
                    }
                    2..=5 => {
                        if !b.is_ascii_hexdigit() {
                            return Vec::new();
                        }
                        esc -= 1;
                        if esc == 1 {
                            esc = 0;
                            chars += 1;
                        }
                    }
                    _ => match b {
                        b'"' => {
                            if chars < min_len {
                                return Vec::new();
                            }
                            return if key {
                                self.key_done(s, KeyText::Raw(&raw))
                            } else {
                                self.value_done(s)
                            };
                        }
                        b'\\' => esc = 1,
                        0..0x20 => return Vec::new(),
                        // A UTF-8 continuation byte is part of the character before it.
                        0x80..=0xbf => {}
                        _ => chars += 1,
                    },
                }
                if max_len.is_some_and(|m| chars > m) {
                    return Vec::new();
                }
                if key {
                    raw.push(b);
                }
                s.push(Frame::Str {
                    key,
                    raw,
                    chars,
                    min_len,
                    max_len,
                    esc,
                });
                vec![s]
            }
            Frame::Lit {
                mut options,
                pos,
                key,
            } => {
                let before = options.clone();
                options.retain(|o| o.as_bytes().get(pos) == Some(&b));
                if options.is_empty() {
                    // An option that ended here ends the literal; the byte belongs to the
                    // parent (`true,` or `10]`). String texts end in a quote, so this only
                    // happens for numbers and keywords.
                    if !key && before.iter().any(|o| o.len() == pos) {
                        let done = self.value_done(s);
                        return done.into_iter().flat_map(|t| self.step(t, b)).collect();
                    }
                    return Vec::new();
                }
                let pos = pos + 1;
                // The only option left is complete: the literal ends now.
                if options.len() == 1 && options[0].len() == pos {
                    return if key {
                        self.key_done(s, KeyText::Json(&options[0]))
                    } else {
                        self.value_done(s)
                    };
                }
                s.push(Frame::Lit { options, pos, key });
                vec![s]
            }
            Frame::Num { node, text, state } => {
                let integer = matches!(nodes[node], Node::Number { integer: true, .. });
                let next = match (state, b) {
                    (NumState::Minus, b'0') => Some(NumState::Zero),
                    (NumState::Minus, b'1'..=b'9') => Some(NumState::Int),
                    (NumState::Int, b'0'..=b'9') => Some(NumState::Int),
                    (NumState::Zero | NumState::Int, b'.') if !integer => Some(NumState::Dot),
                    (NumState::Zero | NumState::Int | NumState::Frac, b'e' | b'E') if !integer => {
                        Some(NumState::Exp)
                    }
                    (NumState::Dot | NumState::Frac, b'0'..=b'9') => Some(NumState::Frac),
                    (NumState::Exp, b'+' | b'-') => Some(NumState::ExpSign),
                    (NumState::Exp | NumState::ExpSign | NumState::ExpInt, b'0'..=b'9') => {
                        Some(NumState::ExpInt)
                    }
                    _ => None,
                };
                match next {
                    Some(state) if text.len() < MAX_NUMBER => {
                        let mut text = text;
                        text.push(b);
                        if !self.num_feasible(node, &text, state) {
                            return Vec::new();
                        }
                        s.push(Frame::Num { node, text, state });
                        vec![s]
                    }
                    // The number ended before this byte, which belongs to the parent.
                    _ if self.num_complete(node, &text, state) => self
                        .value_done(s)
                        .into_iter()
                        .flat_map(|t| self.step(t, b))
                        .collect(),
                    _ => Vec::new(),
                }
            }
            Frame::Object { node, seen, state } => self.step_object(s, node, seen, state, b),
            Frame::Array { node, count, state } => self.step_array(s, node, count, state, b),
        }
    }

    /// Whether digits may still make an integer prefix valid: appending digits only moves a
    /// number away from zero, so a prefix already past a bound on that side is dead.
    fn num_feasible(&self, node: usize, text: &[u8], state: NumState) -> bool {
        let Node::Number { min, max, .. } = self.nodes[node] else {
            return true;
        };
        let negative = text.first() == Some(&b'-');
        if state == NumState::Minus {
            // A negative number when none is allowed.
            return min.is_none_or(|m| m < 0.0);
        }
        if !matches!(state, NumState::Zero | NumState::Int) {
            return true;
        }
        let Some(v) = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
        else {
            return false;
        };
        if negative {
            min.is_none_or(|m| v >= m)
        } else {
            max.is_none_or(|m| v <= m)
        }
    }

    /// A value of node `n` starts with byte `b` (not whitespace).
    fn start_value(&self, mut s: Vec<Frame>, n: usize, node: &Node, b: u8) -> Vec<Vec<Frame>> {
        let depth = s
            .iter()
            .filter(|f| matches!(f, Frame::Object { .. } | Frame::Array { .. }))
            .count();
        if (b == b'{' || b == b'[') && depth >= MAX_NESTING {
            return Vec::new();
        }
        let any = matches!(node, Node::Any);
        let lit = |texts: &[&str]| Frame::Lit {
            options: texts.iter().map(|&t| std::sync::Arc::from(t)).collect(),
            pos: 0,
            key: false,
        };
        let frame = match (node, b) {
            (Node::Object { .. }, b'{') | (Node::Any, b'{') => {
                let node = if any { self.any_object } else { n };
                s.push(Frame::Object {
                    node,
                    seen: Vec::new(),
                    state: ObjState::Start,
                });
                return vec![s];
            }
            (Node::Array { .. }, b'[') | (Node::Any, b'[') => {
                let node = if any { self.any_array } else { n };
                s.push(Frame::Array {
                    node,
                    count: 0,
                    state: ArrState::Start,
                });
                return vec![s];
            }
            (
                Node::String {
                    values: Some(values),
                    ..
                },
                b'"',
            ) => {
                s.push(Frame::Lit {
                    options: values.iter().map(|v| json_text(v)).collect(),
                    pos: 1,
                    key: false,
                });
                return vec![s];
            }
            (
                Node::String {
                    values: None,
                    min_len,
                    max_len,
                },
                b'"',
            ) => {
                s.push(Frame::Str {
                    key: false,
                    raw: Vec::new(),
                    chars: 0,
                    min_len: *min_len,
                    max_len: *max_len,
                    esc: 0,
                });
                return vec![s];
            }
            (Node::Any, b'"') => {
                s.push(Frame::Str {
                    key: false,
                    raw: Vec::new(),
                    chars: 0,
                    min_len: 0,
                    max_len: None,
                    esc: 0,
                });
                return vec![s];
            }
            (Node::Number { .. } | Node::Any, b'-' | b'0'..=b'9') => {
                let state = match b {
                    b'-' => NumState::Minus,
                    b'0' => NumState::Zero,
                    _ => NumState::Int,
                };
                if !self.num_feasible(n, &[b], state) {
                    return Vec::new();
                }
                s.push(Frame::Num {
                    node: n,
                    text: vec![b],
                    state,
                });
                return vec![s];
            }
            (Node::Boolean, _) => lit(&["true", "false"]),
            (Node::Null, _) => lit(&["null"]),
            (Node::Any, _) => lit(&["true", "false", "null"]),
            (Node::Literal(texts), _) => Frame::Lit {
                options: texts
                    .iter()
                    .map(|t| std::sync::Arc::from(t.as_str()))
                    .collect(),
                pos: 0,
                key: false,
            },
            _ => return Vec::new(),
        };
        s.push(frame);
        self.step(s, b)
    }

    /// A value ended: tell its container (or the answer is complete).
    fn value_done(&self, mut s: Vec<Frame>) -> Vec<Vec<Frame>> {
        match s.last_mut() {
            None => {}
            Some(Frame::Object { state, .. }) => *state = ObjState::AfterValue,
            Some(Frame::Array { count, state, .. }) => {
                *count += 1;
                *state = ArrState::AfterValue;
            }
            Some(_) => return Vec::new(),
        }
        vec![s]
    }

    /// The properties of object node `node`: known ones, the schema of others, what is required.
    fn object(&self, node: usize) -> (&[(String, usize)], Option<usize>, &[String]) {
        match &self.nodes[node] {
            Node::Object {
                props,
                additional,
                required,
            } => (props, *additional, required),
            _ => (&[], None, &[]),
        }
    }

    /// A key ended: find its schema in the object below.
    fn key_done(&self, mut s: Vec<Frame>, key: KeyText<'_>) -> Vec<Vec<Frame>> {
        let Some(Frame::Object {
            node, seen, state, ..
        }) = s.last_mut()
        else {
            return Vec::new();
        };
        let (props, additional, _) = self.object(*node);
        let index = props.iter().position(|(name, _)| key.is(name));
        let value = match index {
            Some(i) => {
                if seen.contains(&(i as u16)) {
                    return Vec::new(); // a property twice
                }
                seen.push(i as u16);
                props[i].1
            }
            None => match additional {
                Some(a) => {
                    seen.push(u16::MAX);
                    a
                }
                None => return Vec::new(),
            },
        };
        *state = ObjState::AfterKey(value);
        vec![s]
    }

    fn required_met(&self, node: usize, seen: &[u16]) -> bool {
        let (props, _, required) = self.object(node);
        required.iter().all(|r| {
            props
                .iter()
                .position(|(k, _)| k == r)
                .is_some_and(|i| seen.contains(&(i as u16)))
        })
    }

    /// Whether another key may follow (`,` then a key).
    fn more_keys(&self, node: usize, seen: &[u16]) -> bool {
        let (props, additional, _) = self.object(node);
        additional.is_some() || (0..props.len()).any(|i| !seen.contains(&(i as u16)))
    }

    /// A key starts (after its opening quote): a literal of the properties not yet present
    /// when no others are allowed, a free string otherwise.
    fn key_frame(&self, node: usize, seen: &[u16]) -> Frame {
        let (props, additional, _) = self.object(node);
        if additional.is_none() {
            Frame::Lit {
                options: props
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !seen.contains(&(*i as u16)))
                    .map(|(_, (k, _))| json_text(k))
                    .collect(),
                pos: 1,
                key: true,
            }
        } else {
            Frame::Str {
                key: true,
                raw: Vec::new(),
                chars: 0,
                min_len: 0,
                max_len: Some(256),
                esc: 0,
            }
        }
    }

    fn step_object(
        &self,
        mut s: Vec<Frame>,
        node: usize,
        seen: Vec<u16>,
        state: ObjState,
        b: u8,
    ) -> Vec<Vec<Frame>> {
        let frame = |seen: Vec<u16>, state| Frame::Object { node, seen, state };
        if is_ws(b) && state != ObjState::InKey && state != ObjState::InValue {
            s.push(frame(seen, state));
            return vec![s];
        }
        match (state, b) {
            (ObjState::Start | ObjState::ExpectKey, b'"') => {
                if state == ObjState::ExpectKey || self.more_keys(node, &seen) {
                    let key = self.key_frame(node, &seen);
                    s.push(frame(seen, ObjState::InKey));
                    s.push(key);
                    return vec![s];
                }
                Vec::new()
            }
            (ObjState::Start | ObjState::AfterValue, b'}') if self.required_met(node, &seen) => {
                self.value_done(s)
            }
            (ObjState::AfterKey(v), b':') => {
                s.push(frame(seen, ObjState::InValue));
                s.push(Frame::Value(v));
                vec![s]
            }
            (ObjState::AfterValue, b',') if self.more_keys(node, &seen) => {
                s.push(frame(seen, ObjState::ExpectKey));
                vec![s]
            }
            _ => Vec::new(),
        }
    }

    fn step_array(
        &self,
        mut s: Vec<Frame>,
        node: usize,
        count: usize,
        state: ArrState,
        b: u8,
    ) -> Vec<Vec<Frame>> {
        let Node::Array {
            items,
            min_items,
            max_items,
        } = self.nodes[node]
        else {
            return Vec::new();
        };
        let frame = |count, state| Frame::Array { node, count, state };
        if is_ws(b) && state != ArrState::InValue {
            s.push(frame(count, state));
            return vec![s];
        }
        match (state, b) {
            (ArrState::Start | ArrState::AfterValue, b']') if count >= min_items => {
                self.value_done(s)
            }
            (ArrState::AfterValue, b',') if max_items.is_none_or(|m| count < m) => {
                s.push(frame(count, ArrState::ExpectValue));
                vec![s]
            }
            (ArrState::Start, _) if max_items == Some(0) => Vec::new(),
            (ArrState::Start | ArrState::ExpectValue, _) => {
                s.push(frame(count, ArrState::InValue));
                s.push(Frame::Value(items));
                self.step(s, b)
            }
            _ => Vec::new(),
        }
    }
}

/// A key as read: the raw text between its quotes, or a literal's JSON text (quotes included).
enum KeyText<'a> {
    Raw(&'a [u8]),
    Json(&'a str),
}

impl KeyText<'_> {
    fn is(&self, name: &str) -> bool {
        let json = json_text(name);
        match self {
            KeyText::Raw(raw) => json.as_bytes().get(1..json.len() - 1) == Some(*raw),
            KeyText::Json(t) => **t == *json,
        }
    }
}

/// The matcher as the decode loop's [`TokenFilter`]: a token is allowed when its text keeps
/// the answer valid; an end-of-generation token only when the answer is complete; a token with
/// no text (a control token) never.
#[derive(Debug)]
pub struct JsonFilter<'t> {
    pub matcher: JsonMatcher,
    tok: &'t crate::tokenizer::Tokenizer,
}

impl<'t> JsonFilter<'t> {
    pub fn new(schema: &Schema, tok: &'t crate::tokenizer::Tokenizer) -> Self {
        JsonFilter {
            matcher: JsonMatcher::new(schema),
            tok,
        }
    }
}

impl crate::speculative::TokenFilter for JsonFilter<'_> {
    fn allows(&self, token: u32) -> bool {
        if self.tok.is_eog(token) {
            return self.matcher.is_complete();
        }
        let piece = self.tok.token_to_piece(token);
        !piece.is_empty() && !self.matcher.is_complete() && self.matcher.allows(piece)
    }

    fn accept(&mut self, token: u32) {
        if !self.tok.is_eog(token) {
            self.matcher.feed(self.tok.token_to_piece(token));
        }
    }
}
