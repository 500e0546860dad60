//! CEL evaluation for functions: trigger filters (`event`), step conditions
//! (`event`, `steps`), wait and cancel matches (`event`, `async`),
//! concurrency and flow-control keys, and priorities. Expressions are
//! compiled once per function ([`CompiledFunction`]) and evaluated many
//! times against [`Vars`].
//!
//! Evaluation errors are reported, never guessed: callers decide whether an
//! error means "no match" (triggers, waits) or a failed step (conditions).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value as CelValue};
use serde_json::Value;

use super::{CancelOn, FunctionDef, Trigger};

/// The standard CEL environment, built once: building it registers every
/// standard function, which is too slow to repeat per evaluation.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Why an expression could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The source does not parse.
    #[error("invalid CEL expression `{source_text}`: {message}")]
    Parse {
        /// The expression.
        source_text: String,
        /// The parser's message.
        message: String,
    },
    /// Evaluation failed (unknown key, type mismatch, ...).
    #[error("CEL expression `{source_text}` failed: {message}")]
    Eval {
        /// The expression.
        source_text: String,
        /// The interpreter's message.
        message: String,
    },
    /// A condition evaluated to something other than a bool.
    #[error("CEL expression `{source_text}` must give a bool, got {got}")]
    NotBool {
        /// The expression.
        source_text: String,
        /// What it gave.
        got: String,
    },
}

/// One compiled CEL expression with its source (for error messages).
#[derive(Debug)]
pub struct Expression {
    source: String,
    program: Program,
}

impl Expression {
    /// Compiles `source`.
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        // The parser recurses on deeply nested input; a panic there must not
        // take an engine process down with it.
        let parsed = std::panic::catch_unwind(|| ENV.compile(source));
        let program = match parsed {
            Ok(Ok(program)) => program,
            Ok(Err(e)) => {
                return Err(ExprError::Parse {
                    source_text: source.to_string(),
                    message: e.to_string(),
                });
            }
            Err(_) => {
                return Err(ExprError::Parse {
                    source_text: source.to_string(),
                    message: "expression too deeply nested".to_string(),
                });
            }
        };
        Ok(Self {
            source: source.to_string(),
            program,
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn execute(&self, vars: &Vars) -> Result<CelValue, ExprError> {
        let mut context = Context::with_env(ENV.clone());
        for (name, value) in &vars.values {
            context.add_variable_from_value(*name, value.clone());
        }
        self.program.execute(&context).map_err(|e| ExprError::Eval {
            source_text: self.source.clone(),
            message: e.to_string(),
        })
    }

    /// Evaluates a condition.
    pub fn eval_bool(&self, vars: &Vars) -> Result<bool, ExprError> {
        match self.execute(vars)? {
            CelValue::Bool(b) => Ok(b),
            other => Err(ExprError::NotBool {
                source_text: self.source.clone(),
                got: describe(&other),
            }),
        }
    }

    /// Evaluates to a string key (strings as they are, numbers and bools
    /// printed), for concurrency partitions.
    pub fn eval_key(&self, vars: &Vars) -> Result<String, ExprError> {
        Ok(match self.execute(vars)? {
            CelValue::String(s) => s.to_string(),
            CelValue::Int(i) => i.to_string(),
            CelValue::UInt(u) => u.to_string(),
            CelValue::Float(f) => f.to_string(),
            CelValue::Bool(b) => b.to_string(),
            CelValue::Null => "null".to_string(),
            other => {
                return Err(ExprError::Eval {
                    source_text: self.source.clone(),
                    message: format!(
                        "a key must be a string, number or bool, got {}",
                        describe(&other)
                    ),
                });
            }
        })
    }
}

/// The bound of a priority either way, in seconds (Inngest's too).
pub const PRIORITY_MAX_SECONDS: i64 = 600;

impl Expression {
    /// Evaluates to a priority in seconds, clamped to
    /// ±[`PRIORITY_MAX_SECONDS`]; a fraction is cut toward zero.
    pub fn eval_priority(&self, vars: &Vars) -> Result<i64, ExprError> {
        let seconds = match self.execute(vars)? {
            CelValue::Int(i) => i,
            CelValue::UInt(u) => i64::try_from(u).unwrap_or(i64::MAX),
            // `as` saturates, and NaN becomes 0.
            CelValue::Float(f) => f as i64,
            other => {
                return Err(ExprError::Eval {
                    source_text: self.source.clone(),
                    message: format!("a priority must be a number, got {}", describe(&other)),
                });
            }
        };
        Ok(seconds.clamp(-PRIORITY_MAX_SECONDS, PRIORITY_MAX_SECONDS))
    }
}

fn describe(value: &CelValue) -> String {
    format!("{:?}", value.type_of())
}

/// The variables an expression sees, converted to CEL once and shared by
/// every expression evaluated against them.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: Vec<(&'static str, CelValue)>,
}

impl Vars {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a variable.
    pub fn with(mut self, name: &'static str, value: &Value) -> Self {
        let converted = to_cel(value);
        self.values.retain(|(n, _)| *n != name);
        self.values.push((name, converted));
        self
    }
}

/// Converts JSON to CEL. Integers become `int` (CEL's `uint` only above
/// `i64::MAX`) so that `event.data.n + 1` and `event.data.n == 1` work as a
/// user reads them; `cel::to_value` would make every positive integer a
/// `uint`, which CEL refuses to add to or compare with an `int` literal.
fn to_cel(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                CelValue::UInt(u)
            } else {
                CelValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let entries: HashMap<String, CelValue> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            CelValue::from(entries)
        }
    }
}

/// Every expression of one function, compiled.
#[derive(Debug, Default)]
pub struct CompiledFunction {
    /// Trigger filters by trigger index (only event triggers with `if`).
    pub triggers: HashMap<usize, Expression>,
    /// Step conditions by step id.
    pub conditions: HashMap<String, Expression>,
    /// `wait_for_event.match` by step id.
    pub wait_matches: HashMap<String, Expression>,
    /// `cancel_on[i].match` by index.
    pub cancel_matches: HashMap<usize, Expression>,
    /// The concurrency key, if any.
    pub concurrency_key: Option<Expression>,
    /// The idempotency key, if any.
    pub idempotency_key: Option<Expression>,
    /// The rate limit's key, if any.
    pub rate_limit_key: Option<Expression>,
    /// The throttle's key, if any.
    pub throttle_key: Option<Expression>,
    /// The debounce key, if any.
    pub debounce_key: Option<Expression>,
    /// The batch key, if any.
    pub batch_key: Option<Expression>,
    /// The priority expression, if any.
    pub priority: Option<Expression>,
}

impl CompiledFunction {
    /// Compiles every expression of `function`; the first one that does not
    /// parse is the error.
    pub fn compile(function: &FunctionDef) -> Result<Self, ExprError> {
        let mut compiled = Self::default();
        for (i, trigger) in function.triggers.iter().enumerate() {
            if let Trigger::Event {
                expression: Some(e),
                ..
            } = trigger
            {
                compiled.triggers.insert(i, Expression::compile(e)?);
            }
        }
        for step in &function.steps {
            if let Some(c) = &step.condition {
                compiled
                    .conditions
                    .insert(step.id.clone(), Expression::compile(c)?);
            }
            if let Some(m) = step
                .wait_for_event
                .as_ref()
                .and_then(|w| w.matches.as_ref())
            {
                compiled
                    .wait_matches
                    .insert(step.id.clone(), Expression::compile(m)?);
            }
        }
        for (i, CancelOn { matches, .. }) in function.cancel_on.iter().enumerate() {
            if let Some(m) = matches {
                compiled.cancel_matches.insert(i, Expression::compile(m)?);
            }
        }
        if let Some(key) = function.concurrency.as_ref().and_then(|c| c.key.as_ref()) {
            compiled.concurrency_key = Some(Expression::compile(key)?);
        }
        if let Some(key) = &function.idempotency {
            compiled.idempotency_key = Some(Expression::compile(key)?);
        }
        if let Some(key) = function.rate_limit.as_ref().and_then(|r| r.key.as_ref()) {
            compiled.rate_limit_key = Some(Expression::compile(key)?);
        }
        if let Some(key) = function.throttle.as_ref().and_then(|t| t.key.as_ref()) {
            compiled.throttle_key = Some(Expression::compile(key)?);
        }
        if let Some(key) = function.debounce.as_ref().and_then(|d| d.key.as_ref()) {
            compiled.debounce_key = Some(Expression::compile(key)?);
        }
        if let Some(key) = function.batch_events.as_ref().and_then(|b| b.key.as_ref()) {
            compiled.batch_key = Some(Expression::compile(key)?);
        }
        if let Some(priority) = &function.priority {
            compiled.priority = Some(Expression::compile(&priority.run)?);
        }
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(event: Value) -> Vars {
        Vars::new().with("event", &event)
    }

    #[test]
    fn conditions_over_event_and_steps() {
        let e = Expression::compile("event.data.plan == 'pro' && steps.a.n > 2").unwrap();
        let v = vars(json!({"name": "x", "data": {"plan": "pro"}}))
            .with("steps", &json!({"a": {"n": 3}}));
        assert!(e.eval_bool(&v).unwrap());
        let v = v.with("steps", &json!({"a": {"n": 1}}));
        assert!(!e.eval_bool(&v).unwrap());
    }

    #[test]
    fn async_is_a_usable_variable_name() {
        let e = Expression::compile("async.data.id == event.data.id").unwrap();
        let v = vars(json!({"data": {"id": 7}})).with("async", &json!({"data": {"id": 7}}));
        assert!(e.eval_bool(&v).unwrap());
        let v = v.with("async", &json!({"data": {"id": 8}}));
        assert!(!e.eval_bool(&v).unwrap());
    }

    #[test]
    fn has_checks_absent_steps() {
        let e = Expression::compile("!has(steps.skipped)").unwrap();
        let v = vars(json!({})).with("steps", &json!({"other": 1}));
        assert!(e.eval_bool(&v).unwrap());
    }

    #[test]
    fn errors_name_the_expression() {
        let err = Expression::compile("event.data. ==").unwrap_err();
        assert!(matches!(err, ExprError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("event.data. =="));

        let e = Expression::compile("event.data.missing == 1").unwrap();
        let err = e.eval_bool(&vars(json!({"data": {}}))).unwrap_err();
        assert!(matches!(err, ExprError::Eval { .. }), "{err}");

        let e = Expression::compile("event.data.n + 1 == 2 && event.data.f > 1.0").unwrap();
        assert!(
            e.eval_bool(&vars(json!({"data": {"n": 1, "f": 1.5}})))
                .unwrap()
        );

        let e = Expression::compile("event.data.n + 1").unwrap();
        let err = e.eval_bool(&vars(json!({"data": {"n": 1}}))).unwrap_err();
        assert!(matches!(err, ExprError::NotBool { .. }), "{err}");
    }

    #[test]
    fn keys_print_scalars() {
        let v = vars(json!({"data": {"user": "u1", "n": 42, "ok": true}}));
        for (src, want) in [
            ("event.data.user", "u1"),
            ("event.data.n", "42"),
            ("event.data.ok", "true"),
        ] {
            assert_eq!(
                Expression::compile(src).unwrap().eval_key(&v).unwrap(),
                want
            );
        }
        assert!(
            Expression::compile("event.data")
                .unwrap()
                .eval_key(&v)
                .is_err()
        );
    }

    #[test]
    fn compiles_every_expression_of_a_function() {
        let f: FunctionDef = serde_json::from_value(json!({
            "id": "f",
            "triggers": [{"event": "a", "if": "event.data.x == 1"}, {"cron": "* * * * *"}],
            "concurrency": {"limit": 1, "key": "event.data.user"},
            "cancel_on": [{"event": "c", "match": "async.data.id == event.data.id"}],
            "steps": [
                {"id": "s1", "http": {"url": "http://127.0.0.1:1/"}, "if": "true"},
                {"id": "w", "after": ["s1"], "wait_for_event": {"event": "b", "match": "true", "timeout": "1s"}}
            ]
        }))
        .unwrap();
        let c = CompiledFunction::compile(&f).unwrap();
        assert_eq!(c.triggers.len(), 1);
        assert!(c.triggers.contains_key(&0));
        assert!(c.conditions.contains_key("s1"));
        assert!(c.wait_matches.contains_key("w"));
        assert!(c.cancel_matches.contains_key(&0));
        assert!(c.concurrency_key.is_some());

        let mut bad = f.clone();
        bad.steps[0].condition = Some("((".into());
        assert!(CompiledFunction::compile(&bad).is_err());
    }

    #[test]
    fn priorities_are_numbers_clamped_to_ten_minutes() {
        let e = Expression::compile("event.data.vip ? 60 : 0").unwrap();
        assert_eq!(
            e.eval_priority(&vars(json!({"data": {"vip": true}})))
                .unwrap(),
            60
        );
        assert_eq!(
            e.eval_priority(&vars(json!({"data": {"vip": false}})))
                .unwrap(),
            0
        );
        assert!(e.eval_priority(&vars(json!({"data": {}}))).is_err());
        for (src, want) in [("5000", 600), ("-5000", -600), ("1.9", 1), ("-30", -30)] {
            let e = Expression::compile(src).unwrap();
            assert_eq!(e.eval_priority(&vars(json!({}))).unwrap(), want, "{src}");
        }
        assert!(
            Expression::compile("'high'")
                .unwrap()
                .eval_priority(&vars(json!({})))
                .is_err()
        );
    }

    #[test]
    fn compiled_functions_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledFunction>();
    }
}
