//! The backend conformance suite against SQS (a moto server) and Redis (a
//! real `redis-server`), each case with its own servers, and against the
//! embedded queues over Redis state (`embedded_redis`, the local mix), with
//! Redis as one server and as a Redis Cluster (MemoryDB's shape).

use crate::common;

use async_trait::async_trait;
use engine::backend::conformance::Harness;
use engine::backend::{BackendConfig, Backends};
use engine::config::QueuesConfig;

/// SQS queues (created by the engine, with their dead-letter queues) over
/// Redis state, which also takes bodies too large for SQS.
struct SqsRedis {
    moto: harness::Moto,
    redis: harness::RedisServer,
}

#[async_trait]
impl Harness for SqsRedis {
    async fn open(&self, queues: &QueuesConfig) -> Backends {
        common::open_sqs_redis(
            &self.moto.endpoint(),
            &self.redis.url(),
            "conformance",
            queues,
        )
        .await
    }

    fn stale_ack_may_delete(&self) -> bool {
        true
    }
}

fn sqs_redis() -> SqsRedis {
    tokio::task::block_in_place(|| SqsRedis {
        moto: harness::Moto::start().expect("start moto"),
        redis: harness::RedisServer::start().expect("start redis-server"),
    })
}

mod sqs_and_redis {
    use super::*;
    engine::backend_conformance!(sqs_redis());
}

/// Embedded queues over Redis state, through the factory.
struct EmbeddedRedis {
    dir: tempfile::TempDir,
    redis: harness::RedisServer,
    cluster: bool,
}

#[async_trait]
impl Harness for EmbeddedRedis {
    async fn open(&self, queues: &QueuesConfig) -> Backends {
        let config = BackendConfig::EmbeddedRedis {
            path: self.dir.path().join("queues.db"),
            redis_url: self.redis.url(),
            redis_cluster: self.cluster,
        };
        engine::backend::open(&config, queues)
            .await
            .expect("open embedded queues over Redis")
    }
}

fn embedded_redis(cluster: bool) -> EmbeddedRedis {
    tokio::task::block_in_place(|| EmbeddedRedis {
        dir: tempfile::tempdir().expect("temporary directory"),
        redis: harness::RedisServer::builder()
            .cluster(cluster)
            .start()
            .expect("start redis-server"),
        cluster,
    })
}

mod embedded_queues_redis_state {
    use super::*;
    engine::backend_conformance!(embedded_redis(false));
}

/// Every key in one slot of a Redis Cluster: the scripts that span runs and
/// indexes must not meet CROSSSLOT.
mod embedded_queues_redis_cluster_state {
    use super::*;
    engine::backend_conformance!(embedded_redis(true));
}
