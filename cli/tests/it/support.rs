//! What the CLI tests share: the repository root, the stackctl command as a
//! test runs it, and readers of its JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use harness::{Moto, Registry};
use serde_json::Value;

/// The workspace root (examples/, tests/specs/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ lives in the workspace")
        .to_path_buf()
}

/// The stackctl binary under test, as a test runs it: no stack named by
/// the caller's environment (`STACKCTL_STACK`), no terminal to prompt on.
pub fn stackctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackctl"));
    cmd.env_remove("STACKCTL_STACK").stdin(Stdio::null());
    cmd
}

/// Each non-empty line of stdout as JSON (`--output json` of the streaming
/// commands).
pub fn ndjson(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The last JSON document of stdout, pretty-printed or not.
pub fn last_doc(out: &Output) -> Value {
    serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<Value>()
        .last()
        .expect("a JSON document on stdout")
        .expect("stdout is JSON")
}

/// `spec` (the text of examples/aws.yaml or a variant) with its `state.redis`
/// section (ElastiCache) replaced by a MemoryDB one.
pub fn on_memorydb(spec: &str) -> String {
    let redis = spec
        .find("  redis:\n")
        .and_then(|at| spec[at..].find("\n\n").map(|end| at..at + end))
        .expect("the example's state.redis section");
    let mut spec = spec.to_owned();
    spec.replace_range(
        redis,
        "  memorydb:\n    node_type: db.t4g.small\n    replicas: 1",
    );
    spec
}

/// A moto whose ECS services report at least every service's desired count
/// running (`up` waits for them), started off the async runtime.
pub async fn moto_for_up() -> Moto {
    tokio::task::spawn_blocking(|| {
        Moto::builder()
            .ecs_service_running(8)
            .start()
            .expect("moto_server starts (run scripts/test to install it)")
    })
    .await
    .expect("moto starts")
}

/// [`moto_for_up`] and a docker-registry for the engine image.
pub async fn moto_and_registry() -> (Moto, Registry) {
    let moto = moto_for_up().await;
    let registry =
        tokio::task::spawn_blocking(|| Registry::start().expect("docker-registry starts"))
            .await
            .expect("registry starts");
    (moto, registry)
}
