//! `${VAR}` and `${VAR:-default}` interpolation of scalar values from the
//! environment, with `$${` as the escape for a literal `${`.
//!
//! Shell semantics: `${VAR:-default}` uses the default when `VAR` is unset or
//! empty; `${VAR}` with `VAR` unset is an error (an empty `VAR` is allowed).

/// Reads a variable; `std::env::var` in production, a map in tests.
pub type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The process environment as a [`Lookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Why a scalar could not be interpolated, with the place inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    /// Character offset of the `${` inside the scalar.
    pub offset: usize,
    /// Characters to underline.
    pub len: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

/// The variables `text` reads, each once, in order; none when it does not
/// interpolate.
pub fn variables(text: &str) -> Vec<String> {
    let names = std::cell::RefCell::new(Vec::<String>::new());
    let record = |name: &str| {
        let mut names = names.borrow_mut();
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        Some(String::new())
    };
    match interpolate(text, &record) {
        Ok(_) => names.into_inner(),
        Err(_) => Vec::new(),
    }
}

/// Expands every `${...}` in `text`.
pub fn interpolate(text: &str, env: &Lookup<'_>) -> Result<String, InterpolationError> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1) == Some(&'$') && chars.get(i + 2) == Some(&'{') {
            out.push_str("${");
            i += 3;
            continue;
        }
        if c != '$' || chars.get(i + 1) != Some(&'{') {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
            return Err(InterpolationError {
                offset: i,
                len: chars.len() - i,
                message: "unterminated `${`".into(),
                help: "close it with `}`, or write `$${` for a literal `${`".into(),
            });
        };
        let inner: String = chars[i + 2..i + 2 + close].iter().collect();
        let len = close + 3;
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner.as_str(), None),
        };
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(InterpolationError {
                offset: i,
                len,
                message: format!("invalid variable name `{name}` in `${{{inner}}}`"),
                help: "write `${NAME}` or `${NAME:-default}` with letters, digits and `_`, or `$${` for a literal `${`".into(),
            });
        }
        match (env(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(InterpolationError {
                    offset: i,
                    len,
                    message: format!("environment variable `{name}` is not set"),
                    help: format!(
                        "set `{name}` in the environment, or give a default: `${{{name}:-value}}`"
                    ),
                });
            }
        }
        i += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_defaults_and_escapes() {
        for (input, expected) in [
            ("plain", "plain"),
            ("http://${HOST}:80", "http://example:80"),
            ("${MISSING:-fallback}", "fallback"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY}", ""),
            ("${MISSING:-}", ""),
            ("$${HOST}", "${HOST}"),
            ("cost: $5", "cost: $5"),
            ("${HOST}${HOST}", "exampleexample"),
        ] {
            assert_eq!(interpolate(input, &env).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn lists_the_variables_read() {
        assert_eq!(
            variables("${STEP_URL:-http://127.0.0.1:8300}/a/${STEP_URL}/${B}"),
            ["STEP_URL", "B"]
        );
        assert!(variables("$${NOT} plain").is_empty());
        assert!(variables("${1X}").is_empty());
    }

    #[test]
    fn reports_unset_bad_and_unterminated() {
        let e = interpolate("ab ${MISSING} c", &env).unwrap_err();
        assert_eq!((e.offset, e.len), (3, 10));
        assert!(e.message.contains("`MISSING` is not set"));
        let e = interpolate("${1X}", &env).unwrap_err();
        assert!(e.message.contains("invalid variable name"), "{}", e.message);
        let e = interpolate("x ${HOST", &env).unwrap_err();
        assert_eq!(e.message, "unterminated `${`");
    }
}
