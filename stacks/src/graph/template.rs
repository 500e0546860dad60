//! Rendering of the text files under `templates/` that the graph embeds
//! (executor user data, engine container environment): `{{name}}` is
//! replaced by a value; a name without a value, or a value never used, is
//! an error, so a template and its caller cannot drift apart silently.

use std::collections::{BTreeMap, BTreeSet};

/// The executor host's boot script (EC2 user data).
pub const EXECUTOR_USER_DATA: &str = include_str!("../../../templates/executor-user-data.sh");

/// The part of the executor host's boot script that starts the
/// OpenTelemetry collector (`observability.traces: xray`).
pub const EXECUTOR_OTEL_COLLECTOR: &str =
    include_str!("../../../templates/executor-otel-collector.sh");

/// The environment of every engine container, one `NAME=value` per line.
pub const ENGINE_ENV: &str = include_str!("../../../templates/engine.env");

/// Why a template did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{name}}` with no value given.
    #[error("template `{template}` uses `{{{{{name}}}}}`, which has no value")]
    Missing {
        /// Which template.
        template: String,
        /// The placeholder name.
        name: String,
    },
    /// A value the template never uses.
    #[error("template `{template}` does not use the value `{name}`")]
    Unused {
        /// Which template.
        template: String,
        /// The value's name.
        name: String,
    },
    /// `{{` without `}}`.
    #[error("template `{template}` has an unclosed `{{{{`")]
    Unclosed {
        /// Which template.
        template: String,
    },
}

/// Renders `text` (called `template` in errors) with `values`.
pub fn render(
    template: &str,
    text: &str,
    values: &BTreeMap<&str, String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len() + 256);
    let mut used = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TemplateError::Unclosed {
            template: template.to_string(),
        })?;
        let name = after[..end].trim();
        let value = values.get(name).ok_or_else(|| TemplateError::Missing {
            template: template.to_string(),
            name: name.to_string(),
        })?;
        out.push_str(value);
        used.insert(name);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(unused) = values.keys().find(|k| !used.contains(*k)) {
        return Err(TemplateError::Unused {
            template: template.to_string(),
            name: unused.to_string(),
        });
    }
    Ok(out)
}

/// Renders [`ENGINE_ENV`] and parses it into variables (comment and blank
/// lines skipped).
pub fn engine_env(
    values: &BTreeMap<&str, String>,
) -> Result<BTreeMap<String, String>, TemplateError> {
    let text = render("engine.env", ENGINE_ENV, values)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_reports_mismatches() {
        let values = BTreeMap::from([("a", "1".to_string()), ("b", "two".to_string())]);
        assert_eq!(
            render("t", "x={{a}} y={{ b }}", &values).unwrap(),
            "x=1 y=two"
        );
        assert!(matches!(
            render("t", "{{a}} {{c}}", &values),
            Err(TemplateError::Missing { name, .. }) if name == "c"
        ));
        assert!(matches!(
            render("t", "{{a}}", &values),
            Err(TemplateError::Unused { name, .. }) if name == "b"
        ));
        assert!(matches!(
            render("t", "{{a", &values),
            Err(TemplateError::Unclosed { .. })
        ));
    }
}
