//! Loading a spec: read the file and the function files its globs match,
//! build located trees (with `${VAR}` interpolation), check them against the
//! JSON Schema, deserialize the typed [`Spec`] and functions, then run the
//! semantic checks. Every problem of every file is collected before
//! anything is returned, each placed at its file, line and column; warnings
//! come back with the loaded spec, or beside the errors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};

use engine::functions::{FunctionDef, Path, PathSegment, validate_function};
use serde_json::Value as J;

use super::diagnostic::{At, Diagnostic, Problem, SpecErrors, SpecWarnings};
use super::interpolate::{Lookup, process_env};
use super::schema::{Document, check_structure};
use super::semantic::{check_loopback_steps, check_observability_locally, check_sections};
use super::yaml::{Node, parse};
use super::{Driver, Provider, Spec};

/// A spec that loaded and validated, with all its functions.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSpec {
    /// The spec file, as given.
    pub path: PathBuf,
    /// The typed spec (inline functions are also in `functions`).
    pub spec: Spec,
    /// Every function: inline ones first, then those of each file in glob order.
    pub functions: Vec<LoadedFunction>,
    /// What is valid but will not work as meant (commands show it, then go on).
    pub warnings: SpecWarnings,
}

impl LoadedSpec {
    /// The function definitions, in load order.
    pub fn function_defs(&self) -> impl Iterator<Item = &FunctionDef> {
        self.functions.iter().map(|f| &f.def)
    }
}

/// A function and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedFunction {
    /// The definition.
    pub def: FunctionDef,
    /// The file it is in (the spec file for inline functions).
    pub file: PathBuf,
    /// Where in that file, e.g. `functions.inline[0]` or `[2]`.
    pub path: Path,
}

/// Why a spec did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The spec file itself could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spec (or a function file) is invalid.
    #[error(transparent)]
    Invalid(#[from] SpecErrors),
}

/// Loads and validates the spec at `path`, interpolating from the process
/// environment.
pub fn load(path: impl AsRef<FsPath>) -> Result<LoadedSpec, LoadError> {
    load_with_env(path, &process_env)
}

/// [`load`] with another source of `${VAR}` values.
pub fn load_with_env(path: impl AsRef<FsPath>, env: &Lookup<'_>) -> Result<LoadedSpec, LoadError> {
    let path = path.as_ref();
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(path, &source, env)
}

/// Validates spec text as if it were the file at `path` (function globs are
/// resolved relative to `path`'s folder).
pub fn load_str(path: &FsPath, source: &str, env: &Lookup<'_>) -> Result<LoadedSpec, LoadError> {
    Loader::new(env)
        .run(path, source)
        .map_err(LoadError::Invalid)
}

/// A function to check: where it is and its JSON (pruned of what the schema
/// rejected once `checked`).
struct Candidate {
    file: usize,
    at: Path,
    json: J,
    checked: bool,
    pruned: Vec<Path>,
}

impl Candidate {
    fn unchecked(file: usize, at: Path, json: J) -> Self {
        Self {
            file,
            at,
            json,
            checked: false,
            pruned: Vec::new(),
        }
    }
}

struct FileDoc {
    path: PathBuf,
    source: String,
    tree: Option<Node>,
    /// Values that kept their raw text (failed interpolation).
    broken: Vec<Path>,
}

struct Loader<'e> {
    env: &'e Lookup<'e>,
    files: Vec<FileDoc>,
    /// Problems by file index.
    problems: Vec<(usize, Problem)>,
    /// Warnings by file index.
    warnings: Vec<(usize, Problem)>,
    /// Direct diagnostics (syntax errors) that already have a position.
    diagnostics: Vec<Diagnostic>,
}

impl<'e> Loader<'e> {
    fn new(env: &'e Lookup<'e>) -> Self {
        Self {
            env,
            files: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            diagnostics: Vec::new(),
        }
    }

    /// Parses a file into a tree, recording YAML problems.
    fn add_file(&mut self, path: PathBuf, source: String) -> usize {
        let (tree, errors) = parse(&source, self.env);
        let mut broken = Vec::new();
        for e in errors {
            if e.broken_value {
                broken.push(e.path.clone());
            }
            self.diagnostics
                .push(Diagnostic::new(&path, e.span, &e.path, e.message, e.help));
        }
        self.files.push(FileDoc {
            path,
            source,
            tree,
            broken,
        });
        self.files.len() - 1
    }

    fn run(mut self, path: &FsPath, source: &str) -> Result<LoadedSpec, SpecErrors> {
        let spec_idx = self.add_file(path.to_path_buf(), source.to_string());
        let spec_json = self.files[spec_idx].tree.as_ref().map(Node::to_json);
        let mut spec = None;
        let mut candidates: Vec<Candidate> = Vec::new();
        if let Some(json) = &spec_json {
            let broken = self.files[spec_idx].broken.clone();
            let mut structural = check_structure(Document::Spec, json);
            structural.retain(|p| !broken.iter().any(|b| starts_with(&p.path, b)));
            let (pruned_json, pruned) = prune(json, &structural, &broken);
            spec = self.typed_spec(&pruned_json, structural.is_empty());
            self.problems
                .extend(structural.into_iter().map(|p| (spec_idx, p)));
            {
                // Pruned values were replaced by defaults: checks of their
                // neighbours would judge values the author did not write.
                let semantic = check_sections(&pruned_json)
                    .into_iter()
                    .filter(|p| !pruned.iter().any(|q| starts_with(&p.path, q)));
                self.problems.extend(semantic.map(|p| (spec_idx, p)));
            }
            if let Some(J::Array(inline)) = pruned_json.pointer("/functions/inline") {
                for (i, f) in inline.iter().enumerate() {
                    candidates.push(Candidate {
                        file: spec_idx,
                        at: Path::root().join("functions").join("inline").join(i),
                        json: f.clone(),
                        checked: true,
                        pruned: pruned.clone(),
                    });
                }
            }
            self.load_function_files(spec_idx, path, json, &mut candidates);
        }
        let functions = self.functions(candidates);
        if let Some(spec) = &spec {
            self.check_drivers(spec, &functions);
            if spec.provider == Provider::Aws {
                self.check_loopback_steps(&functions);
            }
            self.warnings.extend(
                check_observability_locally(spec)
                    .into_iter()
                    .map(|p| (spec_idx, p)),
            );
        }
        self.check_duplicate_functions(&functions);
        self.finish(spec, functions)
    }

    /// Deserializes the spec (already pruned of what the schema rejected).
    fn typed_spec(&mut self, json: &J, structurally_valid: bool) -> Option<Spec> {
        match serde_json::from_value::<Spec>(json.clone()) {
            Ok(spec) => Some(spec),
            Err(e) if structurally_valid => {
                self.problems.push((
                    0,
                    Problem::new(
                        Path::root(),
                        At::Value,
                        format!("invalid spec: {e}"),
                        "see `stackctl schema` for the expected shape",
                    ),
                ));
                None
            }
            Err(_) => None,
        }
    }

    fn load_function_files(
        &mut self,
        spec_idx: usize,
        spec_path: &FsPath,
        json: &J,
        candidates: &mut Vec<Candidate>,
    ) {
        let Some(J::Array(globs)) = json.pointer("/functions/files") else {
            return;
        };
        let base = spec_path.parent().unwrap_or(FsPath::new(""));
        let mut seen: Vec<PathBuf> = Vec::new();
        for (i, pattern) in globs.iter().enumerate() {
            let Some(pattern) = pattern.as_str() else {
                continue;
            };
            let at = Path::root().join("functions").join("files").join(i);
            let full = normalize(&base.join(pattern));
            let matches = match glob::glob(&full.to_string_lossy()) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .collect();
                    found.sort();
                    found
                }
                Err(e) => {
                    self.problems.push((
                        spec_idx,
                        Problem::new(
                            at,
                            At::Value,
                            format!("invalid glob `{pattern}`: {}", e.msg),
                            "write a glob relative to the spec file, e.g. `functions/*.yaml`",
                        ),
                    ));
                    continue;
                }
            };
            if matches.is_empty() {
                self.problems.push((
                    spec_idx,
                    Problem::new(
                        at,
                        At::Value,
                        format!("`{pattern}` matches no files"),
                        "globs are relative to the folder of the spec file; check the folder and the file extension",
                    ),
                ));
                continue;
            }
            for file in matches {
                if seen.contains(&file) {
                    continue;
                }
                seen.push(file.clone());
                match std::fs::read_to_string(&file) {
                    Ok(text) => self.function_file(file, text, candidates),
                    Err(e) => self.problems.push((
                        spec_idx,
                        Problem::new(
                            at.clone(),
                            At::Value,
                            format!("cannot read function file {}: {e}", file.display()),
                            "check the file's permissions, or narrow the glob",
                        ),
                    )),
                }
            }
        }
    }

    fn function_file(&mut self, file: PathBuf, text: String, candidates: &mut Vec<Candidate>) {
        let idx = self.add_file(file, text);
        let Some(json) = self.files[idx].tree.as_ref().map(Node::to_json) else {
            return;
        };
        match json {
            J::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    candidates.push(Candidate::unchecked(idx, Path::root().join(i), item));
                }
            }
            J::Object(_) => candidates.push(Candidate::unchecked(idx, Path::root(), json)),
            _ => self.problems.push((
                idx,
                Problem::new(
                    Path::root(),
                    At::Value,
                    "a function file holds one function (a mapping) or a list of them",
                    "start the file with `id: my-function`, or with `- id: my-function` for a list",
                ),
            )),
        }
    }

    /// Checks each function on its own, so one broken function does not hide
    /// the problems of the others.
    fn functions(&mut self, candidates: Vec<Candidate>) -> Vec<LoadedFunction> {
        let mut out = Vec::new();
        for mut candidate in candidates {
            if !candidate.checked {
                // Broken values of the file, relative to this function.
                let at = candidate.at.segments();
                let broken: Vec<Path> = self.files[candidate.file]
                    .broken
                    .iter()
                    .filter(|b| b.segments().starts_with(at))
                    .map(|b| Path(b.segments()[at.len()..].to_vec()))
                    .collect();
                let mut structural = check_structure(Document::Function, &candidate.json);
                structural.retain(|p| !broken.iter().any(|b| starts_with(&p.path, b)));
                let (json, pruned) = prune(&candidate.json, &structural, &broken);
                candidate.json = json;
                candidate.pruned = pruned.iter().map(|p| p.prefixed(&candidate.at)).collect();
                for p in structural {
                    self.problems.push((
                        candidate.file,
                        Problem {
                            path: p.path.prefixed(&candidate.at),
                            ..p
                        },
                    ));
                }
            }
            let Candidate {
                file: idx,
                at,
                json,
                pruned,
                ..
            } = candidate;
            let (idx, at) = (&idx, &at);
            let def = match serde_json::from_value::<FunctionDef>(json) {
                Ok(def) => def,
                // What the schema rejected has been reported already.
                Err(_) if !pruned.is_empty() => continue,
                Err(e) => {
                    self.problems.push((
                        *idx,
                        Problem::new(
                            at.clone(),
                            At::Value,
                            format!("invalid function: {e}"),
                            "see `stackctl schema` for the function format",
                        ),
                    ));
                    continue;
                }
            };
            for e in validate_function(&def) {
                let path = e.path.prefixed(at);
                if pruned.iter().any(|p| starts_with(&path, p)) {
                    continue;
                }
                let help = e.help();
                self.problems.push((
                    *idx,
                    Problem::new(path, At::Value, e.kind.to_string(), help),
                ));
            }
            out.push(LoadedFunction {
                def,
                file: self.files[*idx].path.clone(),
                path: at.clone(),
            });
        }
        out
    }

    fn check_duplicate_functions(&mut self, functions: &[LoadedFunction]) {
        let mut first: HashMap<&str, &LoadedFunction> = HashMap::new();
        for f in functions {
            match first.get(f.def.id.as_str()) {
                Some(prev) => {
                    let idx = self.file_index(&f.file);
                    let prev_place = self.place(prev);
                    self.problems.push((
                        idx,
                        Problem::new(
                            f.path.join("id"),
                            At::Value,
                            format!("duplicate function id `{}`", f.def.id),
                            format!("function ids are unique within a stack; `{}` is already defined at {prev_place}", f.def.id),
                        ),
                    ));
                }
                None => {
                    first.insert(&f.def.id, f);
                }
            }
        }
    }

    fn check_drivers(&mut self, spec: &Spec, functions: &[LoadedFunction]) {
        for f in functions {
            for (i, step) in f.def.steps.iter().enumerate() {
                let needs = match (step.http.is_some(), step.docker.is_some()) {
                    (true, _) => Some((Driver::Http, "http")),
                    (_, true) => Some((Driver::Docker, "docker")),
                    _ => None,
                };
                if let Some((driver, key)) = needs
                    && !spec.executors.drivers.contains(&driver)
                {
                    let idx = self.file_index(&f.file);
                    self.problems.push((
                        idx,
                        Problem::new(
                            f.path.join("steps").join(i).join(key),
                            At::Key,
                            format!("step `{}` uses the `{key}` driver, which the executors do not offer", step.id),
                            format!("add `{key}` to `executors.drivers` in the spec"),
                        ),
                    ));
                }
            }
        }
    }

    fn check_loopback_steps(&mut self, functions: &[LoadedFunction]) {
        for f in functions {
            let idx = self.file_index(&f.file);
            let found = check_loopback_steps(&f.def, &f.path, |path| self.written(idx, path));
            self.warnings.extend(found.into_iter().map(|p| (idx, p)));
        }
    }

    /// The text of the value at `path` as written in file `idx`, before
    /// interpolation (one line at most).
    fn written(&self, idx: usize, path: &Path) -> Option<String> {
        let file = &self.files[idx];
        let span = file.tree.as_ref()?.get(path.segments())?.span;
        let line = file.source.lines().nth(span.pos.line.checked_sub(1)?)?;
        Some(
            line.chars()
                .skip(span.pos.column.saturating_sub(1))
                .take(span.len)
                .collect(),
        )
    }

    fn file_index(&self, file: &FsPath) -> usize {
        self.files.iter().position(|f| f.path == file).unwrap_or(0)
    }

    fn place(&self, f: &LoadedFunction) -> String {
        let idx = self.file_index(&f.file);
        let line = self.files[idx]
            .tree
            .as_ref()
            .map(|t| {
                Problem::new(f.path.join("id"), At::Value, "", "")
                    .span(t)
                    .pos
                    .line
            })
            .unwrap_or(1);
        let base = self.files[0].path.parent().unwrap_or(FsPath::new(""));
        let shown = f.file.strip_prefix(base).unwrap_or(&f.file);
        format!("{}:{line}", shown.display())
    }

    fn finish(
        mut self,
        spec: Option<Spec>,
        functions: Vec<LoadedFunction>,
    ) -> Result<LoadedSpec, SpecErrors> {
        let place = |files: &[FileDoc], (idx, problem): (usize, Problem)| {
            let file = &files[idx];
            let tree = file.tree.as_ref()?;
            Some(Diagnostic::new(
                &file.path,
                problem.span(tree),
                &problem.path,
                problem.message,
                problem.help,
            ))
        };
        for problem in std::mem::take(&mut self.problems) {
            self.diagnostics.extend(place(&self.files, problem));
        }
        let warnings: Vec<Diagnostic> = std::mem::take(&mut self.warnings)
            .into_iter()
            .filter_map(|problem| place(&self.files, problem))
            .map(Diagnostic::warning)
            .collect();
        let order: Vec<PathBuf> = self.files.iter().map(|f| f.path.clone()).collect();
        let sources: BTreeMap<PathBuf, String> =
            self.files.into_iter().map(|f| (f.path, f.source)).collect();
        match spec {
            Some(spec) if self.diagnostics.is_empty() => Ok(LoadedSpec {
                path: order[0].clone(),
                spec,
                functions,
                warnings: SpecWarnings::new(warnings, sources, &order),
            }),
            _ => {
                self.diagnostics.extend(warnings);
                Err(SpecErrors::new(
                    order[0].clone(),
                    self.diagnostics,
                    sources,
                    &order,
                ))
            }
        }
    }
}

/// `json` without the values the schema rejected, and the parents of what
/// was removed (whose other checks would now see defaults).
fn prune(json: &J, structural: &[Problem], broken: &[Path]) -> (J, Vec<Path>) {
    let mut pruned = json.clone();
    let mut parents = Vec::new();
    for b in broken {
        let segments = b.segments();
        remove(&mut pruned, segments);
        parents.push(Path(segments[..segments.len().saturating_sub(1)].to_vec()));
    }
    for p in structural {
        let segments = p.path.segments();
        if p.at == At::Parent {
            // A missing field: checks of its mapping would see a hole.
            parents.push(p.path.clone());
        } else {
            remove(&mut pruned, segments);
            parents.push(Path(segments[..segments.len().saturating_sub(1)].to_vec()));
        }
    }
    (pruned, parents)
}

/// `a/b/../c` as `a/c`, without touching the file system, so messages name
/// function files the way a person would.
fn normalize(path: &FsPath) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn starts_with(path: &Path, prefix: &Path) -> bool {
    path.segments().starts_with(prefix.segments())
}

/// Removes the value at `path` from `json` (so the rest can be deserialized).
fn remove(json: &mut J, path: &[PathSegment]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut v = json;
    for s in parent {
        let next = match (s, v) {
            (PathSegment::Key(k), J::Object(o)) => o.get_mut(k),
            (PathSegment::Index(i), J::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return,
        }
    }
    match (last, v) {
        (PathSegment::Key(k), J::Object(o)) => {
            o.remove(k);
        }
        (PathSegment::Index(i), J::Array(a)) if *i < a.len() => {
            // Replace rather than remove, so later indices keep their meaning.
            a[*i] = J::Null;
        }
        _ => {}
    }
}
