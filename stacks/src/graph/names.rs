//! Physical names of a stack's resources (the table is in the `graph`
//! module doc) and the stack-name rules that keep them valid in AWS.

use super::GraphError;

/// Longest stack name: with the longest suffix (`-event-api`) a load
/// balancer or target group name stays within AWS's 32 characters.
pub const STACK_NAME_MAX: usize = 20;

/// Checks that a stack name can prefix every AWS resource name: 1-20
/// characters, lowercase ASCII letters, digits and single hyphens, starting
/// with a letter and not ending with a hyphen (ElastiCache's rules are the
/// strictest).
pub fn check_stack_name(name: &str) -> Result<(), GraphError> {
    let fail = |reason: &str| {
        Err(GraphError::StackName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > STACK_NAME_MAX {
        return fail(&format!(
            "it has {} characters; at most {STACK_NAME_MAX} keep every AWS name within its limit",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return fail("it must start with a lowercase letter");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return fail(&format!(
            "`{c}` is not allowed: use lowercase letters, digits and `-`"
        ));
    }
    if name.ends_with('-') {
        return fail("it must not end with `-`");
    }
    if name.contains("--") {
        return fail("it must not contain `--`");
    }
    Ok(())
}

/// The SSM parameter holding a secret of `stack`, from the spec or
/// generated (`redis_auth_token` → `/stackctl/{stack}/redis-auth-token`): where `up`
/// stores it and where the engine's containers read it from.
pub fn secret_parameter_name(stack: &str, secret: &str) -> String {
    format!("/stackctl/{stack}/{}", secret.replace('_', "-"))
}

/// Name builder for one stack.
pub(crate) struct Names<'a> {
    stack: &'a str,
}

impl<'a> Names<'a> {
    pub(crate) fn new(stack: &'a str) -> Self {
        Self { stack }
    }

    /// `{stack}-{suffix}`, the common form.
    pub(crate) fn dashed(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.stack)
    }

    pub(crate) fn cluster(&self) -> String {
        self.stack.to_string()
    }

    pub(crate) fn secret_parameter(&self, secret: &str) -> String {
        secret_parameter_name(self.stack, secret)
    }

    pub(crate) fn log_group(&self, role: &str) -> String {
        format!("/stackctl/{}/{role}", self.stack)
    }

    pub(crate) fn namespace(&self) -> String {
        format!("{}.internal", self.stack)
    }

    pub(crate) fn scalable_target(&self, service: &str) -> String {
        format!("service/{}/{}", self.cluster(), self.dashed(service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects_stack_names() {
        for ok in ["a", "demo", "my-stack-2", "abcdefghijklmnopqrst"] {
            assert!(check_stack_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("abcdefghijklmnopqrstu", "21 characters"),
            ("1abc", "start with"),
            ("Demo", "start with"),
            ("de_mo", "`_`"),
            ("demo-", "end with"),
            ("de--mo", "`--`"),
        ] {
            let err = check_stack_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
