//! JSON Schema, compiled to what constrained sampling checks: the subset structured-output
//! servers honour (llama.cpp's `json-schema-to-grammar`, OpenAI's strict mode): `type` (one or
//! a list), `enum` and `const` of strings, numbers, booleans and null, `properties`,
//! `required`, `additionalProperties`, `items`, `minItems`, `maxItems`, `minimum`, `maximum`,
//! `minLength`, `maxLength`, `anyOf`/`oneOf`, `$ref` into `$defs`/`definitions`. Keywords
//! that only describe (`title`, `description`, `default`, `format`, ...) are ignored; a
//! keyword that would change what is valid and is not supported is an error naming it, so a
//! request is never silently held to less than it asked.

use serde_json::Value;

/// A compiled schema node; nodes refer to each other by index into [`Schema::nodes`].
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Any JSON value.
    Any,
    Null,
    Boolean,
    /// A string, optionally one of `values` (raw, unescaped), within length bounds (chars).
    String {
        values: Option<Vec<String>>,
        min_len: usize,
        max_len: Option<usize>,
    },
    /// A number (`integer`: no fraction or exponent) within inclusive bounds.
    Number {
        integer: bool,
        min: Option<f64>,
        max: Option<f64>,
    },
    Array {
        items: usize,
        min_items: usize,
        max_items: Option<usize>,
    },
    Object {
        /// Known properties and their schemas, in the schema's order.
        props: Vec<(String, usize)>,
        required: Vec<String>,
        /// Schema of any other property, or `None` when none are allowed.
        additional: Option<usize>,
    },
    /// One of several schemas.
    AnyOf(Vec<usize>),
    /// Exactly this JSON value (an `enum` or `const` of a non-string), compared as text.
    Literal(Vec<String>),
}

/// A compiled schema: its nodes, the root first.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub nodes: Vec<Node>,
}

/// Deepest nesting of `$ref`s and sub-schemas compiled (a recursive schema is refused).
const MAX_DEPTH: usize = 32;

/// Most nodes one schema may compile to.
const MAX_NODES: usize = 4096;

impl Schema {
    /// Any JSON object (OpenAI's `json_object` response format).
    pub fn any_object() -> Schema {
        Schema {
            nodes: vec![
                Node::Object {
                    props: Vec::new(),
                    required: Vec::new(),
                    additional: Some(1),
                },
                Node::Any,
            ],
        }
    }

    /// Compile `schema`; errors name the keyword and where it is (a JSON pointer).
    pub fn compile(schema: &Value) -> Result<Schema, String> {
        let mut c = Compiler {
            root: schema,
            nodes: Vec::new(),
        };
        c.node(schema, "#", 0)?;
        Ok(Schema { nodes: c.nodes })
    }
}

/// The sub-schema a local `$ref` (`#/$defs/name`, a JSON pointer) names.
fn resolve<'v>(root: &'v Value, r: &str) -> Option<&'v Value> {
    let path = r.strip_prefix("#/")?;
    let mut v = root;
    for part in path.split('/') {
        let part = part.replace("~1", "/").replace("~0", "~");
        v = v.get(part.as_str())?;
    }
    Some(v)
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
}

/// Keywords that change what is valid and are not supported.
const UNSUPPORTED: &[&str] = &[
    "pattern",
    "patternProperties",
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "uniqueItems",
    "contains",
    "prefixItems",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

impl Compiler<'_> {
    fn push(&mut self, n: Node) -> Result<usize, String> {
        if self.nodes.len() >= MAX_NODES {
            return Err(format!("the schema is larger than {MAX_NODES} nodes"));
        }
        self.nodes.push(n);
        Ok(self.nodes.len() - 1)
    }

    fn node(&mut self, s: &Value, at: &str, depth: usize) -> Result<usize, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "{at}: the schema nests deeper than {MAX_DEPTH} (a recursive $ref?)"
            ));
        }
        let obj = match s {
            Value::Bool(true) => return self.push(Node::Any),
            Value::Bool(false) => return Err(format!("{at}: a `false` schema accepts nothing")),
            Value::Object(o) => o,
            _ => return Err(format!("{at}: a schema must be an object or a boolean")),
        };
        if let Some(k) = UNSUPPORTED.iter().find(|k| obj.contains_key(**k)) {
            return Err(format!("{at}: keyword `{k}` is not supported"));
        }
        if let Some(r) = obj.get("$ref") {
            let r = r
                .as_str()
                .ok_or_else(|| format!("{at}/$ref: must be a string"))?;
            let target = resolve(self.root, r).ok_or_else(|| {
                format!("{at}/$ref: '{r}' is not a local reference into $defs or definitions")
            })?;
            return self.node(target, r, depth + 1);
        }
        // Reserve the slot so that the root stays node 0 and children follow their parent.
        let me = self.push(Node::Any)?;
        let node = if let Some(v) = obj.get("const") {
            self.literals(std::slice::from_ref(v), &format!("{at}/const"))?
        } else if let Some(v) = obj.get("enum") {
            let list = v
                .as_array()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| format!("{at}/enum: must be a non-empty array"))?;
            self.literals(list, &format!("{at}/enum"))?
        } else if let Some(v) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
            let list = v
                .as_array()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| format!("{at}/anyOf: must be a non-empty array"))?;
            let mut alts = Vec::new();
            for (i, sub) in list.iter().enumerate() {
                alts.push(self.node(sub, &format!("{at}/anyOf/{i}"), depth + 1)?);
            }
            Node::AnyOf(alts)
        } else {
            match obj.get("type") {
                None => self.typed(obj, None, at, depth)?,
                Some(Value::String(t)) => self.typed(obj, Some(t), at, depth)?,
                Some(Value::Array(ts)) => {
                    let mut alts = Vec::new();
                    for (i, t) in ts.iter().enumerate() {
                        let t = t
                            .as_str()
                            .ok_or_else(|| format!("{at}/type/{i}: must be a string"))?;
                        let n = self.typed(obj, Some(t), at, depth)?;
                        alts.push(self.push(n)?);
                    }
                    Node::AnyOf(alts)
                }
                Some(_) => return Err(format!("{at}/type: must be a string or a list")),
            }
        };
        self.nodes[me] = node;
        Ok(me)
    }

    fn literals(&mut self, list: &[Value], at: &str) -> Result<Node, String> {
        if list.iter().all(Value::is_string) {
            return Ok(Node::String {
                values: Some(
                    list.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                ),
                min_len: 0,
                max_len: None,
            });
        }
        if let Some(v) = list.iter().find(|v| v.is_object() || v.is_array()) {
            return Err(format!(
                "{at}: object and array values ({v}) are not supported"
            ));
        }
        Ok(Node::Literal(list.iter().map(Value::to_string).collect()))
    }

    fn typed(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        ty: Option<&str>,
        at: &str,
        depth: usize,
    ) -> Result<Node, String> {
        let num = |k: &str| -> Result<Option<f64>, String> {
            match obj.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| format!("{at}/{k}: must be a number")),
            }
        };
        let count = |k: &str| -> Result<Option<usize>, String> {
            match obj.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|n| Some(n.min(1 << 20) as usize))
                    .ok_or_else(|| format!("{at}/{k}: must be a non-negative integer")),
            }
        };
        // Without `type`, the keywords present say what is meant (as llama.cpp reads them).
        let ty = match ty {
            Some(t) => t,
            None if obj.contains_key("properties") => "object",
            None if obj.contains_key("items") => "array",
            None => return Ok(Node::Any),
        };
        Ok(match ty {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "string" => Node::String {
                values: None,
                min_len: count("minLength")?.unwrap_or(0),
                max_len: count("maxLength")?,
            },
            "integer" | "number" => Node::Number {
                integer: ty == "integer",
                min: num("minimum")?,
                max: num("maximum")?,
            },
            "array" => {
                let items = match obj.get("items") {
                    None => self.push(Node::Any)?,
                    Some(s) => self.node(s, &format!("{at}/items"), depth + 1)?,
                };
                Node::Array {
                    items,
                    min_items: count("minItems")?.unwrap_or(0),
                    max_items: count("maxItems")?,
                }
            }
            "object" => {
                let mut props = Vec::new();
                if let Some(p) = obj.get("properties") {
                    let p = p
                        .as_object()
                        .ok_or_else(|| format!("{at}/properties: must be an object"))?;
                    for (k, s) in p {
                        let n = self.node(s, &format!("{at}/properties/{k}"), depth + 1)?;
                        props.push((k.clone(), n));
                    }
                }
                let required = match obj.get("required") {
                    None => Vec::new(),
                    Some(r) => r
                        .as_array()
                        .and_then(|l| {
                            l.iter()
                                .map(|v| v.as_str().map(str::to_string))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| format!("{at}/required: must be a list of names"))?,
                };
                for r in &required {
                    if !props.iter().any(|(k, _)| k == r)
                        && obj.get("additionalProperties") == Some(&Value::Bool(false))
                    {
                        return Err(format!(
                            "{at}/required: '{r}' is required but not a property and no other property is allowed"
                        ));
                    }
                }
                // Other properties: as `additionalProperties` says; when it is absent, none if
                // properties are listed (as llama.cpp's converter does: models follow a closed
                // object better), any otherwise.
                let additional = match obj.get("additionalProperties") {
                    Some(Value::Bool(false)) => None,
                    Some(Value::Bool(true)) => Some(self.push(Node::Any)?),
                    Some(s @ Value::Object(_)) => {
                        Some(self.node(s, &format!("{at}/additionalProperties"), depth + 1)?)
                    }
                    Some(_) => {
                        return Err(format!(
                            "{at}/additionalProperties: must be a boolean or a schema"
                        ))
                    }
                    None if props.is_empty() => Some(self.push(Node::Any)?),
                    None => None,
                };
                Node::Object {
                    props,
                    required,
                    additional,
                }
            }
            other => return Err(format!("{at}/type: unknown type '{other}'")),
        })
    }
}
