//! Request bodies: one event or an array of them, either the built-in event
//! (`{"name": ..., "data": {"seq": N, "pad": "xx.."}, "ts": ...}`) or a
//! template file (one JSON event) with `{{seq}}`, `{{uuid}}` and `{{ts}}`
//! replaced per event. Templates are split once so the hot loop only
//! concatenates.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::LoadError;

/// What each request carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The built-in event.
    Builtin {
        /// Its `name`.
        name: String,
        /// Length of the `data.pad` string (0: no pad).
        pad: usize,
    },
    /// A template of one event.
    Template(Template),
}

/// A parsed template: literal parts and the placeholders between them.
/// In JSON it is its source text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl TryFrom<String> for Template {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        t.source
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Seq,
    Uuid,
    Ts,
}

impl Template {
    /// Reads and checks a template file: rendered once, it must be a JSON object with a `name`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            action: "read the template",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| LoadError::Option {
            option: "--template",
            message: format!("{}: {message}", path.display()),
        })
    }

    /// Parses template text (see [`Template::load`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text.trim();
        while let Some(open) = rest.find("{{") {
            let close = rest[open..]
                .find("}}")
                .map(|c| open + c)
                .ok_or("a `{{` has no closing `}}`")?;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            parts.push(match rest[open + 2..close].trim() {
                "seq" => Part::Seq,
                "uuid" => Part::Uuid,
                "ts" => Part::Ts,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{{{other}}}}}`: expected seq, uuid or ts"
                    ));
                }
            });
            rest = &rest[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let template = Self {
            source: text.to_string(),
            parts,
        };
        let mut sample = String::new();
        template.render(&mut sample, 0, 0);
        let value: serde_json::Value = serde_json::from_str(&sample)
            .map_err(|e| format!("rendered, it is not JSON ({e}): {sample}"))?;
        if !value.get("name").is_some_and(serde_json::Value::is_string) {
            return Err("rendered, it must be one JSON event object with a string `name`".into());
        }
        Ok(template)
    }

    fn render(&self, out: &mut String, seq: u64, ts_ms: i64) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Seq => {
                    let _ = write!(out, "{seq}");
                }
                Part::Uuid => {
                    let _ = write!(out, "{}", uuid::Uuid::new_v4());
                }
                Part::Ts => {
                    let _ = write!(out, "{ts_ms}");
                }
            }
        }
    }
}

impl Body {
    /// The body of request `seq` carrying `events` events (numbered
    /// `seq * events ..`), stamped with `ts_ms` (milliseconds since the epoch).
    pub fn render(&self, seq: u64, events: u32, ts_ms: i64) -> Vec<u8> {
        let mut out = String::with_capacity(self.size_hint() * events as usize + 2);
        self.render_to(&mut out, seq, events, ts_ms);
        out.into_bytes()
    }

    /// [`Body::render`] into `out` (cleared first), so the hot loop reuses one buffer.
    pub fn render_to(&self, out: &mut String, seq: u64, events: u32, ts_ms: i64) {
        out.clear();
        if events != 1 {
            out.push('[');
        }
        for i in 0..u64::from(events) {
            if i > 0 {
                out.push(',');
            }
            let n = seq * u64::from(events) + i;
            match self {
                Body::Builtin { name, pad } => {
                    out.push_str("{\"name\":");
                    // Names are checked for JSON-safety when the run is configured.
                    out.push('"');
                    out.push_str(name);
                    let _ = write!(out, "\",\"data\":{{\"seq\":{n}");
                    if *pad > 0 {
                        out.push_str(",\"pad\":\"");
                        out.extend(std::iter::repeat_n('x', *pad));
                        out.push('"');
                    }
                    let _ = write!(out, "}},\"ts\":{ts_ms}}}");
                }
                Body::Template(t) => t.render(out, n, ts_ms),
            }
        }
        if events != 1 {
            out.push(']');
        }
    }

    fn size_hint(&self) -> usize {
        match self {
            Body::Builtin { name, pad } => 64 + name.len() + pad,
            Body::Template(t) => t
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.len(),
                    _ => 36,
                })
                .sum(),
        }
    }

    /// Checks a built-in event name needs no JSON escaping.
    pub fn check_name(name: &str) -> Result<(), LoadError> {
        if name.is_empty()
            || name
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(LoadError::Option {
                option: "--event-name",
                message: format!(
                    "`{name}` must be non-empty without quotes, backslashes or control characters"
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn builtin_bodies_are_valid_json_with_numbered_events() {
        let b = Body::Builtin {
            name: "bench/x".into(),
            pad: 5,
        };
        let one: Value = serde_json::from_slice(&b.render(7, 1, 1000)).unwrap();
        assert_eq!(one["name"], "bench/x");
        assert_eq!(one["data"]["seq"], 7);
        assert_eq!(one["data"]["pad"], "xxxxx");
        assert_eq!(one["ts"], 1000);
        let many: Value = serde_json::from_slice(&b.render(2, 3, 5)).unwrap();
        let seqs: Vec<u64> = many
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, vec![6, 7, 8]);
    }

    #[test]
    fn templates_substitute_placeholders_and_reject_bad_ones() {
        let t =
            Template::parse(r#"{"name":"t","id":"{{uuid}}","data":{"n":{{seq}}},"ts":{{ ts }}}"#)
                .unwrap();
        let body = Body::Template(t);
        let v: Value = serde_json::from_slice(&body.render(4, 2, 99)).unwrap();
        assert_eq!(v[1]["data"]["n"], 9);
        assert_eq!(v[0]["ts"], 99);
        assert_ne!(v[0]["id"], v[1]["id"]);
        assert_eq!(v[0]["id"].as_str().unwrap().len(), 36);
        assert!(
            Template::parse(r#"{"name":"t","x":"{{nope}}"}"#)
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(
            Template::parse(r#"{"data":{}}"#)
                .unwrap_err()
                .contains("name")
        );
        assert!(
            Template::parse(r#"{"name":"t","x":{{seq}"#)
                .unwrap_err()
                .contains("closing")
        );
    }
}
