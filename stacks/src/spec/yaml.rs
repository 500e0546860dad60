//! YAML to a tree whose every node knows its line and column.
//!
//! serde_yaml stops at the first error and forgets where values came from,
//! so specs are read with `yaml-rust2`'s marked event parser instead: the
//! events are assembled into a [`Node`] tree, `${VAR}` interpolation is
//! applied to each scalar *before* its plain-scalar type is resolved (so
//! `count: ${N:-2}` is an integer), and the tree is later turned into JSON
//! for schema validation and serde, while positions stay available for every
//! error message.

use std::collections::HashMap;

use engine::functions::{Path, PathSegment};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::interpolate::{Lookup, interpolate};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// A place in a file with the width of what is there (for underlining).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// Where it starts.
    pub pos: Pos,
    /// How many characters to underline (at least 1).
    pub len: usize,
}

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub span: Span,
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key as text.
    pub name: String,
    /// Where the key is written.
    pub span: Span,
}

/// A resolved YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Key, Node)>),
}

/// A problem found while reading YAML: syntax, duplicate keys, interpolation.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// Where.
    pub span: Span,
    /// Path of the value it concerns.
    pub path: Path,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// The value at `path` is not what the author meant (it kept its raw
    /// text): later checks must not judge it.
    pub broken_value: bool,
}

impl Node {
    /// The node at `path` below this one, if it exists.
    pub fn get(&self, path: &[PathSegment]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let child = match (&self.value, first) {
            (Value::Map(entries), PathSegment::Key(k)) => {
                entries.iter().find(|(key, _)| &key.name == k).map(|e| &e.1)
            }
            (Value::Seq(items), PathSegment::Index(i)) => items.get(*i),
            _ => None,
        }?;
        child.get(rest)
    }

    /// The key holding the node at `path` (`None` for the root or a list item).
    pub fn key_of(&self, path: &[PathSegment]) -> Option<&Key> {
        let (last, parent) = path.split_last()?;
        let PathSegment::Key(k) = last else {
            return None;
        };
        match &self.get(parent)?.value {
            Value::Map(entries) => entries.iter().find(|(key, _)| &key.name == k).map(|e| &e.0),
            _ => None,
        }
    }

    /// A short description of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The value as JSON (mapping keys in source order; a repeated key keeps
    /// its last value, and is reported separately).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses one YAML document into a located tree. Problems that still leave a
/// usable tree (duplicate keys, unset variables) are returned next to it; a
/// syntax error returns no tree.
pub fn parse(source: &str, env: &Lookup<'_>) -> (Option<Node>, Vec<YamlError>) {
    let mut builder = Builder {
        source_lines: source.lines().collect(),
        env,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        errors: Vec::new(),
    };
    let mut parser = Parser::new_from_str(source);
    if let Err(e) = parser.load(&mut builder, false) {
        let marker = e.marker();
        let pos = to_pos(marker);
        builder.errors.push(YamlError {
            span: Span { pos, len: 1 },
            path: Path::root(),
            message: format!("invalid YAML: {}", e.info()),
            help: "fix the YAML syntax here (indentation, quotes, `key: value`)".into(),
            broken_value: false,
        });
        return (None, builder.errors);
    }
    let root = builder.root.take().unwrap_or(Node {
        value: Value::Null,
        span: Span {
            pos: Pos { line: 1, column: 1 },
            len: 1,
        },
    });
    (Some(root), builder.errors)
}

fn to_pos(marker: &Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Pos {
        line: marker.line().max(1),
        column: marker.col() + 1,
    }
}

enum Frame {
    Seq {
        span: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        span: Span,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        pending_key: Option<Key>,
    },
}

struct Builder<'a> {
    source_lines: Vec<&'a str>,
    env: &'a Lookup<'a>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    errors: Vec<YamlError>,
}

impl Builder<'_> {
    fn current_path(&self) -> Path {
        let mut segments = Vec::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => segments.push(PathSegment::Index(items.len())),
                Frame::Map {
                    pending_key: Some(k),
                    ..
                } => segments.push(PathSegment::Key(k.name.clone())),
                Frame::Map { .. } => {}
            }
        }
        Path(segments)
    }

    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map {
                pending_key: None,
                ..
            })
        )
    }

    fn char_at(&self, pos: Pos) -> Option<char> {
        self.source_lines
            .get(pos.line.checked_sub(1)?)?
            .chars()
            .nth(pos.column.checked_sub(1)?)
    }

    /// The width of the token starting at `pos`, read from the source line.
    fn token_len(&self, pos: Pos, style: TScalarStyle, raw: &str) -> usize {
        let Some(line) = self.source_lines.get(pos.line - 1) else {
            return 1;
        };
        let rest: Vec<char> = line.chars().skip(pos.column - 1).collect();
        let len = match style {
            TScalarStyle::Plain => {
                let raw_len = raw.chars().count();
                if rest.iter().take(raw_len).copied().eq(raw.chars()) {
                    raw_len
                } else {
                    1
                }
            }
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                let quote = rest.first().copied().unwrap_or('"');
                let mut i = 1;
                let mut end = None;
                while i < rest.len() {
                    if quote == '"' && rest[i] == '\\' {
                        i += 2;
                        continue;
                    }
                    if rest[i] == quote {
                        if quote == '\'' && rest.get(i + 1) == Some(&'\'') {
                            i += 2;
                            continue;
                        }
                        end = Some(i + 1);
                        break;
                    }
                    i += 1;
                }
                end.unwrap_or(rest.len())
            }
            _ => 1,
        };
        len.max(1)
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => {
                if let Some(key) = pending_key.take() {
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == key.name) {
                        let first_line = first.span.pos.line;
                        let path = self.current_path().join(key.name.as_str());
                        self.errors.push(YamlError {
                            span: key.span,
                            path,
                            message: format!("duplicate key `{}`", key.name),
                            help: format!(
                                "remove one of the two: `{}` is already set on line {first_line}",
                                key.name
                            ),
                            broken_value: false,
                        });
                        // Keep the last value, as YAML loaders that accept duplicates do.
                        if let Some(Frame::Map { entries, .. }) = self.stack.last_mut() {
                            entries.retain(|(k, _)| k.name != key.name);
                            entries.push((key, node));
                        }
                    } else {
                        entries.push((key, node));
                    }
                }
            }
        }
    }

    fn scalar(&mut self, raw: String, style: TScalarStyle, anchor: usize, tag: bool, pos: Pos) {
        let span = Span {
            pos,
            len: self.token_len(pos, style, &raw),
        };
        if self.expecting_key() {
            if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                *pending_key = Some(Key { name: raw, span });
            }
            return;
        }
        let path = self.current_path();
        let offset = match style {
            TScalarStyle::Plain => Some(0),
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => Some(1),
            _ => None,
        };
        let text = match interpolate(&raw, self.env) {
            Ok(text) => text,
            Err(e) => {
                let column = match offset {
                    Some(o) if style != TScalarStyle::Plain || span.len == raw.chars().count() => {
                        pos.column + o + e.offset
                    }
                    _ => pos.column,
                };
                self.errors.push(YamlError {
                    span: Span {
                        pos: Pos {
                            line: pos.line,
                            column,
                        },
                        len: e.len.max(1),
                    },
                    path: path.clone(),
                    message: e.message,
                    help: e.help,
                    broken_value: true,
                });
                raw.clone()
            }
        };
        let value = if style == TScalarStyle::Plain && !tag {
            resolve_plain(text)
        } else {
            Value::Str(text)
        };
        self.push_value(Node { value, span }, anchor);
    }
}

/// YAML 1.2 core-schema resolution of a plain scalar (what an unquoted value means).
fn resolve_plain(text: String) -> Value {
    use yaml_rust2::Yaml;
    match Yaml::from_str(&text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Int(i),
        Yaml::Real(r) => r.parse::<f64>().map_or(Value::Str(text), Value::Float),
        _ => match text.as_str() {
            "True" | "TRUE" => Value::Bool(true),
            "False" | "FALSE" => Value::Bool(false),
            "Null" | "NULL" => Value::Null,
            _ => Value::Str(text),
        },
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let pos = to_pos(&marker);
        match event {
            Event::Scalar(raw, style, anchor, tag) => {
                self.scalar(raw, style, anchor, tag.is_some(), pos);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.expecting_key() {
                    self.errors.push(YamlError {
                        span: Span { pos, len: 1 },
                        path: self.current_path(),
                        message: "a mapping key must be a plain value".into(),
                        help: "write keys as `name: value`".into(),
                        broken_value: false,
                    });
                    if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                        *pending_key = Some(Key {
                            name: String::from("?"),
                            span: Span { pos, len: 1 },
                        });
                    }
                }
                let span = Span { pos, len: 1 };
                self.stack
                    .push(if matches!(event, Event::SequenceStart(..)) {
                        Frame::Seq {
                            span,
                            anchor,
                            items: Vec::new(),
                        }
                    } else {
                        Frame::Map {
                            span,
                            anchor,
                            entries: Vec::new(),
                            pending_key: None,
                        }
                    });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node_and_anchor = match self.stack.pop() {
                    Some(Frame::Seq {
                        span,
                        anchor,
                        items,
                    }) => Some((
                        Node {
                            value: Value::Seq(items),
                            span,
                        },
                        anchor,
                    )),
                    Some(Frame::Map {
                        span,
                        anchor,
                        entries,
                        ..
                    }) => {
                        // yaml-rust2 marks a block mapping after its first
                        // key; the mapping starts at that key.
                        let span = match entries.first() {
                            Some((key, _)) if self.char_at(span.pos).is_none_or(|c| c != '{') => {
                                key.span
                            }
                            _ => span,
                        };
                        Some((
                            Node {
                                value: Value::Map(entries),
                                span,
                            },
                            anchor,
                        ))
                    }
                    None => None,
                };
                if let Some((node, anchor)) = node_and_anchor {
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    value: Value::Null,
                    span: Span { pos, len: 1 },
                });
                if self.expecting_key() {
                    if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
                        let name = match node.value {
                            Value::Str(s) => s,
                            _ => String::from("?"),
                        };
                        *pending_key = Some(Key {
                            name,
                            span: Span { pos, len: 1 },
                        });
                    }
                } else {
                    self.push_value(node, 0);
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn positions_are_one_based_and_point_at_values() {
        let src = "stack: demo\nservices:\n  runner:\n    count: 2\n    name: \"x y\"\n";
        let (root, errors) = parse(src, &no_env);
        assert!(errors.is_empty(), "{errors:?}");
        let root = root.unwrap();
        let count = root
            .get(&engine::path!["services", "runner", "count"].0)
            .unwrap();
        assert_eq!(count.value, Value::Int(2));
        assert_eq!(
            count.span.pos,
            Pos {
                line: 4,
                column: 12
            }
        );
        let key = root
            .key_of(&engine::path!["services", "runner", "count"].0)
            .unwrap();
        assert_eq!(key.span.pos, Pos { line: 4, column: 5 });
        assert_eq!(key.span.len, 5);
        let name = root
            .get(&engine::path!["services", "runner", "name"].0)
            .unwrap();
        assert_eq!(name.span.len, 5);
    }

    #[test]
    fn interpolation_happens_before_type_resolution() {
        let env = |name: &str| (name == "N").then(|| "3".to_string());
        let src = "a: ${N}\nb: ${M:-true}\nc: \"${N}\"\nd: $${N}\n";
        let (root, errors) = parse(src, &env);
        assert!(errors.is_empty(), "{errors:?}");
        let root = root.unwrap();
        let get = |k: &str| root.get(&engine::path![k].0).unwrap().value.clone();
        assert_eq!(get("a"), Value::Int(3));
        assert_eq!(get("b"), Value::Bool(true));
        assert_eq!(get("c"), Value::Str("3".into()));
        assert_eq!(get("d"), Value::Str("${N}".into()));
    }

    #[test]
    fn unset_variable_is_reported_at_its_position() {
        let (_, errors) = parse("x:\n  url: http://${HOST}/a\n", &no_env);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].span.pos,
            Pos {
                line: 2,
                column: 15
            }
        );
        assert_eq!(errors[0].path.to_string(), "x.url");
    }

    #[test]
    fn duplicate_keys_and_syntax_errors() {
        let (_, errors) = parse("a: 1\nb: 2\na: 3\n", &no_env);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].span.pos, Pos { line: 3, column: 1 });
        let (root, errors) = parse("a: [1, 2\nb: 3\n", &no_env);
        assert!(root.is_none());
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn anchors_and_aliases_are_copied() {
        let (root, errors) = parse("a: &x {n: 1}\nb: *x\n", &no_env);
        assert!(errors.is_empty());
        let root = root.unwrap();
        assert_eq!(
            root.get(&engine::path!["b", "n"].0).unwrap().value,
            Value::Int(1)
        );
    }
}
