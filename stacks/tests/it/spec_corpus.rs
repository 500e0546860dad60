//! The broken-spec corpus: every file under `tests/specs/broken/` fails
//! validation, and its rendered errors (messages, `file:line:column`, help)
//! are snapshot-tested. Review changes with `cargo insta review`, or accept
//! them with `INSTA_UPDATE=always cargo test -p stacks --test it spec_corpus`.

use std::path::Path;

use stacks::spec::{LoadError, load_with_env};

/// No variables: specs under test must not depend on the caller's environment.
fn empty_env(_: &str) -> Option<String> {
    None
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("stacks/ lives in the workspace")
}

#[test]
fn broken_specs() {
    let mut seen = 0;
    insta::glob!("../../../tests/specs/broken", "*.yaml", |path| {
        seen += 1;
        let errors = match load_with_env(path, &empty_env) {
            Err(LoadError::Invalid(errors)) => errors,
            Err(other) => panic!(
                "{}: expected validation errors, got {other}",
                path.display()
            ),
            Ok(_) => panic!("{}: a broken spec validated", path.display()),
        };
        assert!(!errors.diagnostics.is_empty());
        for d in &errors.diagnostics {
            assert!(d.line >= 1 && d.column >= 1, "{d:?}");
            assert!(!d.help.is_empty(), "every error says how to fix it: {d:?}");
        }
        insta::assert_snapshot!(errors.relative_to(workspace_root()).render());
    });
    assert!(
        seen >= 30,
        "the corpus has {seen} specs, expected at least 30"
    );
}
