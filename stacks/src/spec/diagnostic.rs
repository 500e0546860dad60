//! Validation errors with their place and their fix, and how they are shown:
//! rustc-style text (`error:` / `-->` file:line:col / source line / `^^^` /
//! `= help:`) or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path as FsPath, PathBuf};

use serde::Serialize;

use engine::functions::{Path as EnginePath, PathSegment};

use super::yaml::{Node, Span, Value};

/// Which part of a located value a problem points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// The value itself (wrong type, out of range).
    Value,
    /// The key that holds the value (unknown field).
    Key,
    /// The mapping at the path, shown at the key that holds it (missing field).
    Parent,
}

/// A problem before it is placed in a file: a path into the document, and
/// which part of the value there to point at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub path: EnginePath,
    pub at: At,
    pub message: String,
    pub help: String,
    /// What a schema problem is about, to merge related ones.
    pub note: Option<Note>,
}

/// The field a schema problem concerns, so that a missing field and an
/// unknown one suggested in its place are reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Note {
    /// The mapping at the path misses this field.
    Missing(String),
    /// The unknown key at the path is probably this field.
    Suggests(String),
}

impl Problem {
    pub(crate) fn new(
        path: EnginePath,
        at: At,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Self {
            path,
            at,
            message: message.into(),
            help: help.into(),
            note: None,
        }
    }

    pub(crate) fn with_note(mut self, note: Note) -> Self {
        self.note = Some(note);
        self
    }

    /// Where the problem is in `tree`. A path that is not in the file (a
    /// default value) is shown at the nearest ancestor that is.
    pub(crate) fn span(&self, tree: &Node) -> Span {
        let segments = self.path.segments();
        let key_or_node = |path: &[PathSegment]| {
            tree.key_of(path)
                .map(|k| k.span)
                .or_else(|| tree.get(path).map(|n| n.span))
        };
        let exact = match self.at {
            At::Key | At::Parent => key_or_node(segments),
            // A block mapping starts on the line below its key: show the key.
            At::Value => match (tree.get(segments), tree.key_of(segments)) {
                (Some(n), Some(k))
                    if matches!(n.value, Value::Map(_)) && n.span.pos.line != k.span.pos.line =>
                {
                    Some(k.span)
                }
                (node, _) => node.map(|n| n.span),
            },
        };
        exact
            .or_else(|| {
                (0..segments.len())
                    .rev()
                    .find_map(|n| key_or_node(&segments[..n]))
            })
            .unwrap_or(tree.span)
    }
}

/// One problem in a spec or function file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as it was named to the loader (or joined to the spec's folder).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Characters to underline.
    #[serde(skip)]
    pub len: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// Where in the document, e.g. `services.runner.count`.
    pub path: String,
}

impl Diagnostic {
    /// A diagnostic at `span` in `file`.
    pub fn new(
        file: &FsPath,
        span: Span,
        path: impl ToString,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            line: span.pos.line,
            column: span.pos.column,
            len: span.len.max(1),
            message: message.into(),
            help: help.into(),
            path: path.to_string(),
        }
    }
}

/// Every problem found in a spec and its function files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} in {}", count(self.diagnostics.len()), self.spec_file.display())]
pub struct SpecErrors {
    /// The spec file that was loaded.
    pub spec_file: PathBuf,
    /// The problems, in file order, then line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// Source text by file, to show the offending lines.
    sources: BTreeMap<PathBuf, String>,
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 error".into()
    } else {
        format!("{n} errors")
    }
}

impl SpecErrors {
    pub(crate) fn new(
        spec_file: PathBuf,
        mut diagnostics: Vec<Diagnostic>,
        sources: BTreeMap<PathBuf, String>,
        file_order: &[PathBuf],
    ) -> Self {
        let rank = |f: &PathBuf| file_order.iter().position(|o| o == f).unwrap_or(usize::MAX);
        diagnostics.sort_by(|a, b| {
            (rank(&a.file), a.line, a.column, &a.message).cmp(&(
                rank(&b.file),
                b.line,
                b.column,
                &b.message,
            ))
        });
        diagnostics.dedup();
        Self {
            spec_file,
            diagnostics,
            sources,
        }
    }

    /// Shows file paths relative to `base` (used by tests so that output does
    /// not depend on where the repository is checked out).
    pub fn relative_to(mut self, base: &FsPath) -> Self {
        let strip = |p: &PathBuf| {
            p.strip_prefix(base)
                .map_or_else(|_| p.clone(), FsPath::to_path_buf)
        };
        self.spec_file = strip(&self.spec_file);
        for d in &mut self.diagnostics {
            d.file = strip(&d.file);
        }
        self.sources = self
            .sources
            .iter()
            .map(|(k, v)| (strip(k), v.clone()))
            .collect();
        self
    }

    /// rustc-style text of every diagnostic, then the count (`3 errors`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            render_one(&mut out, d, self.sources.get(&d.file).map(String::as_str));
            out.push('\n');
        }
        let _ = writeln!(out, "{}", count(self.diagnostics.len()));
        out
    }

    /// `{"valid": false, "errors": [{file, line, column, message, help, path}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "valid": false, "errors": self.diagnostics })
    }
}

fn render_one(out: &mut String, d: &Diagnostic, source: Option<&str>) {
    let _ = writeln!(out, "error: {}", d.message);
    let line_text = source.and_then(|s| s.lines().nth(d.line.saturating_sub(1)));
    let gutter = d.line.to_string().len();
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad}--> {}:{}:{}", d.file.display(), d.line, d.column);
    if let Some(text) = line_text {
        let text = text.trim_end();
        let width = text.chars().count();
        let start = d.column.saturating_sub(1);
        let len = d.len.min(width.saturating_sub(start).max(1));
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{} | {text}", d.line);
        let _ = writeln!(out, "{pad} | {}{}", " ".repeat(start), "^".repeat(len));
        let _ = writeln!(out, "{pad} |");
    }
    let _ = writeln!(out, "{pad} = help: {}", d.help);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::Pos;

    #[test]
    fn renders_like_rustc() {
        let file = PathBuf::from("stack.yaml");
        let d = Diagnostic::new(
            &file,
            Span {
                pos: Pos { line: 2, column: 3 },
                len: 5,
            },
            "services.cuont",
            "unknown field `cuont`",
            "did you mean `count`?",
        );
        let mut sources = BTreeMap::new();
        sources.insert(file.clone(), "services:\n  cuont: 2\n".to_string());
        let errors = SpecErrors::new(file.clone(), vec![d], sources, &[file]);
        assert_eq!(
            errors.render(),
            "error: unknown field `cuont`\n --> stack.yaml:2:3\n  |\n2 |   cuont: 2\n  |   ^^^^^\n  |\n  = help: did you mean `count`?\n\n1 error\n"
        );
        assert_eq!(errors.to_json()["errors"][0]["line"], 2);
        assert_eq!(errors.to_string(), "1 error in stack.yaml");
    }
}
