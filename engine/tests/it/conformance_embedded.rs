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

/// The roles of a local stack start at the same moment and each opens the
/// same new database file: every one of them must get it (the first sets
/// up WAL and the schema while the others wait), never "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_openers_of_a_new_database_all_succeed() {
    const OPENERS: usize = 6;
    for round in 0..30 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = BackendConfig::Embedded {
            path: dir.path().join("engine.db"),
        };
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(OPENERS));
        let mut opens = tokio::task::JoinSet::new();
        for _ in 0..OPENERS {
            let (config, start) = (config.clone(), std::sync::Arc::clone(&start));
            opens.spawn(async move {
                start.wait().await;
                engine::backend::open(&config, &QueuesConfig::default())
                    .await
                    .map(|_| ())
            });
        }
        while let Some(opened) = opens.join_next().await {
            let opened = opened.expect("open task");
            assert!(opened.is_ok(), "round {round}: {:?}", opened.err());
        }
    }
}
