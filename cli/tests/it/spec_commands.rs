//! `stackctl validate`, `init` and `schema` as a user runs them: the built
//! binary, real files, exit codes and output.

use crate::support::{repo_root, stackctl as stackctl_command};
use std::process::{Command, Output};

/// Runs stackctl in the workspace root with a clean interpolation
/// environment (the examples' defaults apply).
fn stackctl(args: &[&str]) -> Output {
    stackctl_with(args, &[])
}

/// [`stackctl`] with these variables set.
fn stackctl_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = stackctl_command();
    command
        .args(args)
        .current_dir(repo_root())
        .env_remove("STACKCTL_EVENT_KEY")
        .env_remove("STACKCTL_API_TOKEN")
        .env_remove("STEP_URL");
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().expect("run stackctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that the command exited with `code` and said `says` on stderr.
#[track_caller]
fn assert_fails_saying(out: &Output, code: i32, says: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

#[test]
fn examples_are_valid() {
    for file in ["examples/aws.yaml", "examples/local.yaml"] {
        let out = stackctl(&["validate", file]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with(&format!("{file} is valid")), "{stdout}");
        assert_eq!(stdout.lines().count(), 1, "a one-line summary: {stdout}");
    }
}

/// What a person reads from `validate`: each example's one-line summary,
/// and a spec with mistakes in its expressions, each at its place with the
/// fix (exit 2). The step URL is set so that the aws example's loopback
/// warnings stay out of its snapshot.
#[test]
fn validate_reads_as_the_snapshots_say() {
    for (name, file, code) in [
        ("validate_local", "examples/local.yaml", 0),
        ("validate_aws", "examples/aws.yaml", 0),
        ("validate_broken", "tests/specs/broken/cel-invalid.yaml", 2),
    ] {
        let out = stackctl_with(
            &["validate", file],
            &[("STEP_URL", "http://steps.internal:8300")],
        );
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        insta::assert_snapshot!(
            name,
            format!(
                "stdout:\n{}\nstderr:\n{}",
                text(&out.stdout),
                text(&out.stderr)
            )
        );
    }
}

#[test]
fn aws_example_warns_of_loopback_step_urls_and_stays_valid() {
    let out = stackctl(&["validate", "examples/aws.yaml"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "examples/aws.yaml is valid: stack `reference` on aws, 4 functions (4 warnings)\n"
    );
    for expected in [
        "warning: step `charge` of function `charge-pro-plan` calls `http://127.0.0.1:8300/charge`, a loopback address\n",
        "--> examples/functions/billing.yaml:14:14\n",
        "--> examples/functions/onboarding.yaml:35:12\n",
        "= help: on AWS this calls the executor host itself; set `STEP_URL` (or the url) to an address the executors can reach",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in\n{stderr}");
    }
    assert!(stderr.ends_with("\n4 warnings\n"), "{stderr}");

    let out = stackctl(&["validate", "-o", "json", "examples/aws.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        (&doc["valid"], &doc["errors"]),
        (&true.into(), &serde_json::json!([]))
    );
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 4, "{doc}");
    assert_eq!(warnings[0]["file"], "examples/functions/billing.yaml");
    assert_eq!(
        (warnings[0]["line"].as_u64(), warnings[0]["column"].as_u64()),
        (Some(14), Some(14))
    );
    assert_eq!(warnings[0]["path"], "[0].steps[0].http.url");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));

    let steps = [("STEP_URL", "http://steps.internal:8300")];
    for (file, vars) in [
        ("examples/aws.yaml", &steps[..]),
        ("examples/local.yaml", &[][..]),
    ] {
        let out = stackctl_with(&["validate", file], vars);
        assert_eq!(out.status.code(), Some(0), "{file}");
        assert!(
            text(&out.stderr).is_empty(),
            "{file}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stdout).contains("warning"), "{file}");
        let out = stackctl_with(&["validate", "-o", "json", file], vars);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        assert_eq!(doc["warnings"], serde_json::json!([]), "{file}");
    }
}

#[test]
fn broken_specs_exit_2_with_file_line_and_column() {
    for (file, place, message) in [
        (
            "tests/specs/broken/unknown-field-typo.yaml",
            "tests/specs/broken/unknown-field-typo.yaml:8:5",
            "unknown field `cuont` in `services.runner`",
        ),
        (
            "tests/specs/broken/fargate-memory.yaml",
            "tests/specs/broken/fargate-memory.yaml:8:13",
            "Fargate does not accept memory 8192 MiB with cpu 512",
        ),
        (
            "tests/specs/broken/after-cycle.yaml",
            "tests/specs/broken/after-cycle.yaml:23:18",
            "steps form a cycle: extract -> transform -> load -> extract",
        ),
        (
            "tests/specs/broken/function-files-broken.yaml",
            "tests/specs/functions/broken-list.yaml:6:14",
            "invalid duration `1 hour`",
        ),
    ] {
        let out = stackctl(&["validate", file]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{file}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("--> {place}\n")),
            "{file}: no `{place}` in\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("error: {message}")),
            "{file}: no `{message}` in\n{stdout}"
        );
        assert!(stdout.contains("= help: "), "{stdout}");
        let last = stdout.lines().last().unwrap_or_default();
        assert!(
            last.ends_with(" error") || last.ends_with(" errors"),
            "ends with the count: {last}"
        );
    }
}

#[test]
fn json_output_lists_every_error() {
    let out = stackctl(&[
        "validate",
        "--output",
        "json",
        "tests/specs/broken/executors-bounds.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["valid"], false);
    let errors = doc["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[0]["file"],
        "tests/specs/broken/executors-bounds.yaml"
    );
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[0]["column"].as_u64()),
        (Some(11), Some(12))
    );
    assert_eq!(errors[0]["path"], "executors.desired");
    assert!(errors[0]["help"].as_str().is_some_and(|h| !h.is_empty()));

    let out = stackctl(&["validate", "-o", "json", "examples/local.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["errors"], serde_json::json!([]));
}

#[test]
fn unreadable_file_exits_1() {
    let out = stackctl(&["validate", "tests/specs/no-such-file.yaml"]);
    assert_fails_saying(&out, 1, "cannot read tests/specs/no-such-file.yaml");
}

#[test]
fn init_writes_valid_specs_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("temp dir");
    for provider in ["aws", "local"] {
        let file = dir.path().join(format!("{provider}.yaml"));
        let file_arg = file.to_str().expect("utf-8 path");
        let out = stackctl(&["init", "--provider", provider, file_arg]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let out = stackctl(&["validate", file_arg]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{provider}: {}",
            text(&out.stdout)
        );

        std::fs::write(&file, "mine").expect("overwrite with user content");
        let out = stackctl(&["init", "--provider", provider, file_arg]);
        assert_fails_saying(&out, 1, "--force");
        assert_eq!(std::fs::read_to_string(&file).expect("still there"), "mine");
        let out = stackctl(&["init", "--provider", provider, "--force", file_arg]);
        assert_eq!(out.status.code(), Some(0));
        assert_ne!(std::fs::read_to_string(&file).expect("rewritten"), "mine");
    }
}

#[test]
fn init_names_the_file_after_the_provider() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, file, provider) in [
        (&["init"][..], "local.yaml", "provider: local"),
        (
            &["init", "--provider", "aws"][..],
            "aws.yaml",
            "provider: aws",
        ),
    ] {
        let out = stackctl_command()
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run stackctl");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let written = std::fs::read_to_string(dir.path().join(file)).expect(file);
        assert!(written.contains(provider), "{file}");
    }
}

#[test]
fn schema_prints_the_checked_in_schema() {
    let out = stackctl(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let checked_in: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schema/stack.schema.json"))
            .expect("schema file"),
    )
    .expect("JSON");
    assert_eq!(printed, checked_in);
}

#[test]
fn named_stackctl_engine_the_binary_is_the_engine() {
    // How the engine image built from an installed stackctl runs it.
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = dir.path().join("stackctl-engine");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_stackctl"), &engine).expect("symlink");
    let out = Command::new(&engine)
        .arg("--version")
        .output()
        .expect("run it");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("stackctl-engine "),
        "{}",
        text(&out.stdout)
    );
    let out = Command::new(&engine)
        .args(["health", "--port", "1"])
        .output()
        .expect("run it");
    // Nothing listens on port 1.
    assert_fails_saying(&out, 1, "unhealthy");
}

/// Output into a reader that went away (`stackctl status | head -0`) ends
/// quietly with the command's own exit code, instead of a panic (101).
#[test]
fn status_into_a_closed_reader_exits_with_its_own_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("local.yaml");
    let file_arg = file.to_str().expect("utf-8 path");
    let out = stackctl(&["init", "--provider", "local", file_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = stackctl_command()
        .args(["status", file_arg])
        .current_dir(dir.path())
        .stdout(writer)
        .output()
        .expect("run stackctl");
    let stderr = text(&out.stderr);
    // Not up: exit 1, its line lost with the reader.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
