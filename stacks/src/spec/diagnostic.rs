//! Validation problems with their place and their fix, and how they are
//! shown: rustc-style text (`error:` or `warning:` / `-->` file:line:col /
//! source line / `^^^` / `= help:`) or JSON. Errors make a spec invalid;
//! warnings point at something that loads but will not work as meant.

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

/// Whether a problem stops the spec from being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The spec is invalid.
    Error,
    /// The spec is valid, but something in it will not work as meant.
    Warning,
}

impl Severity {
    /// `error` or `warning`, as the rendered text labels it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

/// One problem in a spec or function file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning; in JSON, the list a diagnostic is in says which.
    #[serde(skip)]
    pub severity: Severity,
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
    /// An error at `span` in `file`.
    pub fn new(
        file: &FsPath,
        span: Span,
        path: impl ToString,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: span.pos.line,
            column: span.pos.column,
            len: span.len.max(1),
            message: message.into(),
            help: help.into(),
            path: path.to_string(),
        }
    }

    /// The same problem as a warning.
    pub fn warning(self) -> Self {
        Self {
            severity: Severity::Warning,
            ..self
        }
    }

    fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Every problem found in a spec and its function files: at least one error,
/// and the warnings found beside them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} in {}", count(self.errors().count(), "error"), self.spec_file.display())]
pub struct SpecErrors {
    /// The spec file that was loaded.
    pub spec_file: PathBuf,
    /// The problems, errors and warnings, in file order, then line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// Source text by file, to show the offending lines.
    sources: BTreeMap<PathBuf, String>,
}

/// The warnings of a spec that loaded (none for most specs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecWarnings {
    /// The warnings, in file order, then line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// Source text of the files they are in.
    sources: BTreeMap<PathBuf, String>,
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `3 errors`, `3 errors, 1 warning` or `2 warnings`.
fn tally(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    match (errors, warnings) {
        (e, 0) => count(e, "error"),
        (0, w) => count(w, "warning"),
        (e, w) => format!("{}, {}", count(e, "error"), count(w, "warning")),
    }
}

/// Sorts by file (in load order), line and column, and drops repeats.
fn sort(diagnostics: &mut Vec<Diagnostic>, file_order: &[PathBuf]) {
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
}

fn strip(path: &FsPath, base: &FsPath) -> PathBuf {
    path.strip_prefix(base)
        .map_or_else(|_| path.to_path_buf(), FsPath::to_path_buf)
}

/// [`SpecErrors::relative_to`] and [`SpecWarnings::relative_to`].
fn relative(
    diagnostics: &mut [Diagnostic],
    sources: BTreeMap<PathBuf, String>,
    base: &FsPath,
) -> BTreeMap<PathBuf, String> {
    for d in diagnostics {
        d.file = strip(&d.file, base);
    }
    sources
        .into_iter()
        .map(|(k, v)| (strip(&k, base), v))
        .collect()
}

/// rustc-style text of every diagnostic, then the tally.
fn render_all(diagnostics: &[Diagnostic], sources: &BTreeMap<PathBuf, String>) -> String {
    let mut out = String::new();
    for d in diagnostics {
        render_one(&mut out, d, sources.get(&d.file).map(String::as_str));
        out.push('\n');
    }
    let _ = writeln!(out, "{}", tally(diagnostics));
    out
}

impl SpecErrors {
    pub(crate) fn new(
        spec_file: PathBuf,
        mut diagnostics: Vec<Diagnostic>,
        sources: BTreeMap<PathBuf, String>,
        file_order: &[PathBuf],
    ) -> Self {
        sort(&mut diagnostics, file_order);
        Self {
            spec_file,
            diagnostics,
            sources,
        }
    }

    /// The errors (what makes the spec invalid).
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// The warnings found beside the errors.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }

    /// Shows file paths relative to `base` (used by tests so that output does
    /// not depend on where the repository is checked out).
    pub fn relative_to(mut self, base: &FsPath) -> Self {
        self.spec_file = strip(&self.spec_file, base);
        self.sources = relative(&mut self.diagnostics, self.sources, base);
        self
    }

    /// rustc-style text of every diagnostic, then the count (`3 errors`, or
    /// `3 errors, 1 warning`).
    pub fn render(&self) -> String {
        render_all(&self.diagnostics, &self.sources)
    }

    /// `{"valid": false, "errors": [{file, line, column, message, help, path}], "warnings": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let errors: Vec<&Diagnostic> = self.errors().collect();
        let warnings: Vec<&Diagnostic> = self.warnings().collect();
        serde_json::json!({ "valid": false, "errors": errors, "warnings": warnings })
    }
}

impl SpecWarnings {
    pub(crate) fn new(
        mut diagnostics: Vec<Diagnostic>,
        mut sources: BTreeMap<PathBuf, String>,
        file_order: &[PathBuf],
    ) -> Self {
        sort(&mut diagnostics, file_order);
        sources.retain(|file, _| diagnostics.iter().any(|d| &d.file == file));
        Self {
            diagnostics,
            sources,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// Shows file paths relative to `base`, as [`SpecErrors::relative_to`].
    pub fn relative_to(mut self, base: &FsPath) -> Self {
        self.sources = relative(&mut self.diagnostics, self.sources, base);
        self
    }

    /// rustc-style text of every warning, then the count (`2 warnings`);
    /// empty when there are none.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        render_all(&self.diagnostics, &self.sources)
    }
}

fn render_one(out: &mut String, d: &Diagnostic, source: Option<&str>) {
    let _ = writeln!(out, "{}: {}", d.severity.as_str(), d.message);
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

    #[test]
    fn warnings_are_labelled_and_counted_apart() {
        let file = PathBuf::from("f.yaml");
        let at = |line| Span {
            pos: Pos { line, column: 1 },
            len: 1,
        };
        let error = Diagnostic::new(&file, at(2), "b", "bad", "fix b");
        let warning = Diagnostic::new(&file, at(1), "a", "odd", "fix a").warning();
        let mut sources = BTreeMap::new();
        sources.insert(file.clone(), "a: 1\nb: 2\n".to_string());
        let order = [file.clone()];
        let errors = SpecErrors::new(
            file.clone(),
            vec![error, warning.clone()],
            sources.clone(),
            &order,
        );
        let text = errors.render();
        assert!(text.starts_with("warning: odd\n"), "{text}");
        assert!(text.contains("\nerror: bad\n"), "{text}");
        assert!(text.ends_with("\n1 error, 1 warning\n"), "{text}");
        assert_eq!(errors.to_string(), "1 error in f.yaml");
        let json = errors.to_json();
        assert_eq!(
            (
                json["errors"][0]["path"].as_str(),
                json["warnings"][0]["path"].as_str()
            ),
            (Some("b"), Some("a"))
        );

        let warnings = SpecWarnings::new(vec![warning], sources, &order);
        assert!(warnings.render().ends_with("\n1 warning\n"));
        assert!(SpecWarnings::default().render().is_empty());
    }
}
