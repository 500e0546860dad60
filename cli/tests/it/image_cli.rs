//! `stackctl image build` as a user runs it: the built binary, a real file
//! as the engine binary, an OCI layout on disk, JSON and human output.

use std::path::Path;
use std::process::Output;

use crate::support::{assert_exit, stackctl};
use serde_json::Value;

/// A small dynamically linked binary: its shared libraries go in the image.
const BINARY: &str = "/bin/echo";

/// Runs `stackctl image build` from a directory that is no git checkout, so
/// the revision label (and the digest) does not follow this repository's HEAD.
fn build(binary: &Path, oci_dir: &Path, cwd: &Path, json: bool) -> Output {
    let mut cmd = stackctl();
    if json {
        cmd.args(["--output", "json"]);
    }
    cmd.args(["image", "build", "--binary"])
        .arg(binary)
        .arg("--oci-dir")
        .arg(oci_dir)
        .current_dir(cwd)
        .env("GIT_CEILING_DIRECTORIES", cwd.parent().unwrap_or(cwd))
        .output()
        .expect("run stackctl")
}

/// The JSON report of a build that succeeded.
fn json_report(out: &Output) -> Value {
    assert_exit(out, 0);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[test]
fn build_prints_a_digest_that_the_oci_layout_holds_and_repeats_it() {
    let tmp = tempfile::tempdir().unwrap();
    let first = json_report(&build(
        Path::new(BINARY),
        &tmp.path().join("first"),
        tmp.path(),
        true,
    ));
    let digest = first["digest"].as_str().expect("digest").to_owned();
    assert!(is_sha256_digest(&digest), "{first}");
    assert_eq!(first["binary"], BINARY);
    assert!(first["platform"].as_str().unwrap().starts_with("linux/"));
    let layers = first["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "base and binary layers: {first}");
    for layer in layers {
        assert!(
            is_sha256_digest(layer["digest"].as_str().unwrap()),
            "{layer}"
        );
        assert!(layer["size"].as_u64().unwrap() > 0, "{layer}");
    }
    let libs = first["shared_libraries"].as_array().expect("libraries");
    assert!(
        libs.iter().any(|l| l.as_str().unwrap().contains("libc.so")),
        "{first}"
    );
    assert!(first["push"].is_null());

    // The layout's index points at the manifest, stored under its digest.
    let index: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("first/index.json")).unwrap())
            .unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str(), "{index}");
    let hex = digest.trim_start_matches("sha256:");
    assert!(tmp.path().join("first/blobs/sha256").join(hex).is_file());
    for layer in layers {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        assert!(tmp.path().join("first/blobs/sha256").join(hex).is_file());
    }

    // Same inputs, another run: the same digest, as the human output says.
    let second = json_report(&build(
        Path::new(BINARY),
        &tmp.path().join("second"),
        tmp.path(),
        true,
    ));
    assert_eq!(second["digest"], digest.as_str());
    assert_eq!(second["layers"], first["layers"]);
    let human = build(
        Path::new(BINARY),
        &tmp.path().join("third"),
        tmp.path(),
        false,
    );
    assert_eq!(human.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&human.stdout).trim(), digest);

    // Another binary: another digest, the same base layer.
    let changed = tmp.path().join("engine");
    let mut bytes = std::fs::read(BINARY).unwrap();
    bytes.extend_from_slice(b"\0changed");
    std::fs::write(&changed, bytes).unwrap();
    let other = json_report(&build(
        &changed,
        &tmp.path().join("other"),
        tmp.path(),
        true,
    ));
    assert_ne!(other["digest"], digest.as_str());
    assert_eq!(other["layers"][0], first["layers"][0]);
    assert_ne!(other["layers"][1]["digest"], first["layers"][1]["digest"]);
}

#[test]
fn a_missing_binary_fails_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-engine");
    let out = build(&missing, &tmp.path().join("oci"), tmp.path(), true);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("no-such-engine") || stdout.contains("no-such-engine"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!tmp.path().join("oci/index.json").exists());
}
