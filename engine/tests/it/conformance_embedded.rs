//! The backend conformance suite against the embedded (SQLite) backend, each
//! case on a fresh database file in a temporary directory.

use async_trait::async_trait;
use engine::backend::conformance::Harness;
use engine::backend::{BackendConfig, Backends};
use engine::config::QueuesConfig;

struct Embedded {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Harness for Embedded {
    async fn open(&self, queues: &QueuesConfig) -> Backends {
        let config = BackendConfig::Embedded {
            path: self.dir.path().join("engine.db"),
        };
        engine::backend::open(&config, queues)
            .await
            .expect("open the embedded backend")
    }
}

fn embedded() -> Embedded {
    Embedded {
        dir: tempfile::tempdir().expect("temporary directory"),
    }
}

engine::backend_conformance!(embedded());
