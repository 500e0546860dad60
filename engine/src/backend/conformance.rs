//! The conformance suite every backend passes: queue semantics (durability,
//! delays, visibility, acks, extend, dead letters, depth, batches, concurrent
//! sends) and state semantics (claims, run creation, write-once outcomes,
//! single-winner waits, the event index, slots, throttle reservations,
//! debounce keys, batches, finishing runs, ranked slots) including two
//! independent handles on one store.
//!
//! A backend's test file implements [`Harness`] (each `open` returns a new
//! handle on the SAME store; a fresh store per harness value) and expands
//! [`backend_conformance!`](crate::backend_conformance) with an expression
//! that builds a fresh harness; one `#[tokio::test]` is generated per case.
//! The cases panic with a message on failure, like any test.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::{
    Attempt, Backends, Batched, Event, Message, Queue, Run, RunStatus, StepEnd, StepOutcome, Wait,
};
use crate::config::QueuesConfig;
use crate::functions::FunctionDef;

/// Opens handles on one store under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new handle on this harness's store (the same store on every call),
    /// with these queue settings.
    async fn open(&self, queues: &QueuesConfig) -> Backends;

    /// Whether an ack with the receipt of an earlier delivery may still
    /// delete the redelivered message. SQS documents that it may; the engine
    /// acks only after the work is recorded, so either is safe.
    fn stale_ack_may_delete(&self) -> bool {
        false
    }
}

/// Expands to one `#[tokio::test]` per conformance case; `$harness` is
/// evaluated once per test and must build a fresh store.
#[macro_export]
macro_rules! backend_conformance {
    ($harness:expr) => {
        $crate::backend_conformance!(@cases $harness;
            durable_send, delays, visibility_and_redelivery, ack_and_stale_receipts, extend,
            dead_letter_after_max_receives, depth, batch_send, concurrent_sends,
            claims, runs, set_outcome_once_under_concurrency, attempts, take_wait_single_winner,
            events_since, slots, throttle_reservations, debounces, batches, finish_run_once, functions, two_handles_share_the_store,
            create_run_and_send_once, end_step_once, purge_finished, ranked_slots);
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::backend::conformance::$case(&harness).await;
            }
        )*
    };
}

/// Generous: moto answers a receive in about 150 ms, slower while other
/// builds share the machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn msg(body: &str) -> Message {
    Message {
        body: body.as_bytes().to_vec(),
        delay: Duration::ZERO,
    }
}

fn queues() -> QueuesConfig {
    QueuesConfig::default()
}

fn now() -> i64 {
    super::embedded::now_ms()
}

/// Receives until `n` messages arrived or the deadline passed.
async fn drain(q: &Arc<dyn Queue>, n: usize, visibility: Duration) -> Vec<super::Received> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < deadline {
        let batch = q
            .receive(n - got.len(), visibility, Duration::from_millis(500))
            .await
            .expect("receive");
        got.extend(batch);
    }
    got
}

/// Polls `f` until it returns true or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn event(internal_id: &str, name: &str, ts: i64) -> Event {
    Event {
        internal_id: internal_id.into(),
        id: None,
        name: name.into(),
        data: json!({"n": ts}),
        user: serde_json::Value::Null,
        ts,
        v: None,
        traceparent: None,
    }
}

fn run(id: &str, event_id: &str, created_at: i64) -> Run {
    Run {
        id: id.into(),
        function_id: "f".into(),
        event: event(event_id, "app/thing", created_at),
        status: RunStatus::Running,
        error: None,
        created_at,
        ended_at: None,
        traceparent: None,
    }
}

/// A send that returned is there after the handle is dropped and the store reopened.
pub async fn durable_send(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    b.events
        .send(vec![msg("a"), msg("b"), msg("c")])
        .await
        .expect("send");
    b.work.send(vec![msg("w")]).await.expect("send");
    drop(b);
    let b = h.open(&queues()).await;
    let got = drain(&b.events, 3, Duration::from_secs(30)).await;
    let mut bodies: Vec<_> = got
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["a", "b", "c"]);
    assert!(got.iter().all(|r| r.receive_count == 1));
    let w = drain(&b.work, 1, Duration::from_secs(30)).await;
    assert_eq!(w.len(), 1, "the work queue is separate and durable");
    assert_eq!(w[0].body, b"w");
}

/// A delayed message is invisible (and counted as delayed) until its delay passes.
pub async fn delays(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let delay = Duration::from_millis(400);
    let sent = tokio::time::Instant::now();
    b.work
        .send(vec![
            Message {
                body: b"later".to_vec(),
                delay,
            },
            msg("now"),
        ])
        .await
        .expect("send");
    let first = b
        .work
        .receive(10, Duration::from_secs(30), Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body, b"now");
    let d = b.work.depth().await.expect("depth");
    assert_eq!((d.delayed, d.in_flight, d.visible), (1, 1, 0), "{d:?}");
    let later = drain(&b.work, 1, Duration::from_secs(30)).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].body, b"later");
    assert!(
        sent.elapsed() >= delay - Duration::from_millis(20),
        "delivered after {:?}",
        sent.elapsed()
    );
    assert!(
        b.work.max_delay() > delay,
        "max_delay is {:?}",
        b.work.max_delay()
    );
}

/// An unacked message comes back after its visibility timeout with a higher count.
pub async fn visibility_and_redelivery(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    b.events.send(vec![msg("x")]).await.expect("send");
    let vis = Duration::from_millis(300);
    let first = drain(&b.events, 1, vis).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    let hidden = b
        .events
        .receive(1, vis, Duration::ZERO)
        .await
        .expect("receive");
    assert!(hidden.is_empty(), "invisible during its visibility timeout");
    let again = drain(&b.events, 1, vis).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id, "same message id on redelivery");
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(
        again[0].receipt, first[0].receipt,
        "a new receipt per delivery"
    );
}

/// An ack deletes; an ack with the receipt of an earlier delivery does not.
pub async fn ack_and_stale_receipts(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    b.events.send(vec![msg("x"), msg("y")]).await.expect("send");
    let got = drain(&b.events, 2, Duration::from_millis(200)).await;
    assert_eq!(got.len(), 2);
    let (x, y) = (&got[0], &got[1]);
    b.events
        .ack(std::slice::from_ref(&x.receipt))
        .await
        .expect("ack");
    let y2 = drain(&b.events, 1, Duration::from_secs(30)).await;
    assert_eq!(y2.len(), 1, "only the unacked message comes back");
    assert_eq!(y2[0].id, y.id);
    b.events
        .ack(std::slice::from_ref(&y.receipt))
        .await
        .expect("stale ack is not an error");
    if !h.stale_ack_may_delete() {
        let d = b.events.depth().await.expect("depth");
        assert_eq!(
            d.in_flight, 1,
            "a stale receipt does not delete the redelivered message: {d:?}"
        );
    }
    b.events
        .ack(std::slice::from_ref(&y2[0].receipt))
        .await
        .expect("ack");
    let d = b.events.depth().await.expect("depth");
    assert_eq!(
        (d.visible, d.in_flight, d.delayed, d.dead),
        (0, 0, 0, 0),
        "{d:?}"
    );
}

/// `extend` keeps a message invisible past its original timeout.
pub async fn extend(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    b.work.send(vec![msg("long")]).await.expect("send");
    let got = drain(&b.work, 1, Duration::from_millis(200)).await;
    assert_eq!(got.len(), 1);
    b.work
        .extend(&got[0].receipt, Duration::from_secs(30))
        .await
        .expect("extend");
    let none = b
        .work
        .receive(1, Duration::from_secs(30), Duration::from_millis(600))
        .await
        .expect("receive");
    assert!(none.is_empty(), "extended message stayed invisible");
    b.work
        .ack(std::slice::from_ref(&got[0].receipt))
        .await
        .expect("ack");
    assert_eq!(b.work.depth().await.expect("depth").in_flight, 0);
}

/// A message received `max_receives` times without an ack moves to the
/// dead-letter queue, where it can be looked at and from where it can be
/// moved back.
pub async fn dead_letter_after_max_receives(h: &dyn Harness) {
    let mut q = queues();
    q.work.max_receives = 2;
    let b = h.open(&q).await;
    b.work
        .send(vec![msg("poison"), msg("fine")])
        .await
        .expect("send");
    let vis = Duration::from_millis(150);
    let mut poison_receives = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = b
            .work
            .receive(10, vis, Duration::from_millis(300))
            .await
            .expect("receive");
        for r in &got {
            if r.body == b"fine" {
                b.work
                    .ack(std::slice::from_ref(&r.receipt))
                    .await
                    .expect("ack");
            } else {
                poison_receives += 1;
                assert!(
                    r.receive_count <= 2,
                    "received past max_receives: {}",
                    r.receive_count
                );
            }
        }
        let d = b.work.depth().await.expect("depth");
        if d.dead == 1 {
            assert_eq!((d.visible, d.in_flight, d.delayed), (0, 0, 0), "{d:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered: {d:?}"
        );
    }
    assert_eq!(poison_receives, 2);
    let after = b
        .work
        .receive(10, vis, Duration::from_millis(300))
        .await
        .expect("receive");
    assert!(after.is_empty(), "a dead message is not delivered");

    // A look at the dead letters leaves them there; a redrive moves them
    // back as new messages, delivered with their count from zero.
    let dead = b.work.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body, b"poison");
    assert!(dead[0].sent_at > 0, "{dead:?}");
    assert_eq!(b.work.depth().await.expect("depth").dead, 1);
    assert_eq!(b.work.dead_letters(10).await.expect("again").len(), 1);
    assert_eq!(b.work.redrive(10).await.expect("redrive"), 1);
    assert_eq!(b.work.depth().await.expect("depth").dead, 0);
    let again = b
        .work
        .receive(10, vis, DEADLINE)
        .await
        .expect("receive the redriven message");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        (again[0].body.as_slice(), again[0].receive_count),
        (b"poison".as_slice(), 1)
    );
    assert!(b.work.dead_letters(10).await.expect("none").is_empty());
    assert_eq!(b.work.redrive(10).await.expect("nothing to move"), 0);
}

/// Runs that ended before the cutoff go, with their steps and index
/// entries; running runs and runs that ended later stay.
pub async fn purge_finished(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let s = &b.state;
    let t = now();
    let attempt = Attempt {
        number: 1,
        started_at: t - 9_000,
        ended_at: t - 8_000,
        error: None,
        host: None,
        running: false,
    };
    for (id, event_id) in [("old", "e-old"), ("new", "e-new"), ("live", "e-live")] {
        s.create_run(&run(id, event_id, t - 10_000)).await.unwrap();
        s.record_attempt(id, "step", attempt.clone()).await.unwrap();
    }
    assert!(
        s.finish_run("old", RunStatus::Completed, None, t - 5_000)
            .await
            .unwrap()
    );
    assert!(
        s.finish_run("new", RunStatus::Failed, Some("x".into()), t)
            .await
            .unwrap()
    );

    assert_eq!(s.purge_finished(t - 1_000, 10).await.unwrap(), 1);
    assert_eq!(s.get_run("old").await.unwrap(), None);
    assert!(s.steps("old").await.unwrap().is_empty());
    assert!(s.runs_for_event("e-old").await.unwrap().is_empty());
    let listed: Vec<String> = s
        .list_runs(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(!listed.contains(&"old".to_string()), "{listed:?}");
    assert_eq!(
        s.list_runs(Some(RunStatus::Completed), 10).await.unwrap(),
        vec![]
    );
    assert_eq!(
        s.run_counts().await.unwrap().get(&RunStatus::Completed),
        None
    );
    for kept in ["new", "live"] {
        assert!(s.get_run(kept).await.unwrap().is_some(), "{kept}");
        assert_eq!(s.steps(kept).await.unwrap().len(), 1, "{kept}");
    }
    // A running run is never deleted, however old.
    assert_eq!(s.purge_finished(t + 60_000, 10).await.unwrap(), 1);
    assert!(s.get_run("new").await.unwrap().is_none());
    assert_eq!(
        s.get_run("live").await.unwrap().unwrap().status,
        RunStatus::Running
    );
    assert_eq!(s.purge_finished(t + 60_000, 10).await.unwrap(), 0);
}

/// Depth counts visible, in-flight, delayed and dead messages per queue.
pub async fn depth(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    b.events
        .send(vec![
            msg("1"),
            msg("2"),
            msg("3"),
            Message {
                body: b"d".to_vec(),
                delay: Duration::from_secs(60),
            },
        ])
        .await
        .expect("send");
    let got = b
        .events
        .receive(1, Duration::from_secs(60), Duration::ZERO)
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    let d = b.events.depth().await.expect("depth");
    assert_eq!(
        (d.visible, d.in_flight, d.delayed, d.dead),
        (2, 1, 1, 0),
        "{d:?}"
    );
    assert_eq!(
        b.work.depth().await.expect("depth"),
        Default::default(),
        "queues are separate"
    );
}

/// One call sends many messages; all arrive once.
pub async fn batch_send(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let messages: Vec<Message> = (0..200).map(|i| msg(&i.to_string())).collect();
    b.events.send(messages).await.expect("send");
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < 200 && tokio::time::Instant::now() < deadline {
        for r in b
            .events
            .receive(10, Duration::from_secs(30), Duration::from_millis(200))
            .await
            .expect("receive")
        {
            assert!(r.receive_count == 1);
            assert!(
                seen.insert(String::from_utf8(r.body).unwrap()),
                "delivered twice"
            );
        }
    }
    assert_eq!(seen.len(), 200);
}

/// Many concurrent senders (coalesced by group commit) all land.
pub async fn concurrent_sends(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let q = Arc::clone(&b.events);
        tasks.spawn(async move { q.send(vec![msg(&format!("m{i}"))]).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("join").expect("send");
    }
    let got = drain(&b.events, 64, Duration::from_secs(30)).await;
    let unique: HashSet<_> = got.iter().map(|r| r.body.clone()).collect();
    assert_eq!(unique.len(), 64);
}

/// The first claimer holds a key until its TTL passes; then another can take it.
pub async fn claims(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let s = &b.state;
    let ttl = Duration::from_millis(300);
    assert_eq!(s.claim("k", "a", ttl).await.unwrap(), "a");
    assert_eq!(s.claim("k", "b", ttl).await.unwrap(), "a", "held by a");
    assert_eq!(
        s.claim("k", "a", ttl).await.unwrap(),
        "a",
        "idempotent for the holder"
    );
    assert_eq!(
        s.claim("other", "b", Duration::from_secs(60))
            .await
            .unwrap(),
        "b"
    );
    eventually("the claim to expire", || async {
        s.claim("k", "b", ttl).await.unwrap() == "b"
    })
    .await;
    assert_eq!(s.claim("k", "a", ttl).await.unwrap(), "b");
}

/// Runs: create once, look up by id and by event, list by status, count.
pub async fn runs(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let s = &b.state;
    let t = now();
    assert!(s.create_run(&run("r1", "e1", t)).await.unwrap());
    let mut dup = run("r1", "e1", t + 5);
    dup.function_id = "other".into();
    assert!(
        !s.create_run(&dup).await.unwrap(),
        "second create is refused"
    );
    assert_eq!(
        s.get_run("r1").await.unwrap().unwrap(),
        run("r1", "e1", t),
        "first one kept"
    );
    let traced = Run {
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        ..run("r2", "e1", t + 1)
    };
    assert!(s.create_run(&traced).await.unwrap());
    assert!(s.create_run(&run("r3", "e2", t + 2)).await.unwrap());
    assert_eq!(
        s.get_run("r2").await.unwrap().unwrap(),
        traced,
        "the trace context is kept"
    );
    assert!(s.get_run("nope").await.unwrap().is_none());
    let of_e1: Vec<String> = s
        .runs_for_event("e1")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(of_e1, ["r1", "r2"]);
    assert!(
        s.finish_run("r2", RunStatus::Completed, None, t + 10)
            .await
            .unwrap()
    );
    let recent: Vec<String> = s
        .list_runs(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(recent, ["r3", "r2", "r1"], "most recent first");
    assert_eq!(s.list_runs(None, 2).await.unwrap().len(), 2);
    let done = s.list_runs(Some(RunStatus::Completed), 10).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, "r2");
    assert_eq!(done[0].ended_at, Some(t + 10));
    let counts = s.run_counts().await.unwrap();
    assert_eq!(counts.get(&RunStatus::Running), Some(&2));
    assert_eq!(counts.get(&RunStatus::Completed), Some(&1));
}

/// Of N racing `set_outcome` calls exactly one wins and its outcome stays.
pub async fn set_outcome_once_under_concurrency(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let s = Arc::clone(&b.state);
        tasks.spawn(async move {
            let outcome = StepOutcome::Completed {
                output: json!({ "writer": i }),
            };
            (
                i,
                s.set_outcome("run", "step", &outcome, 1000 + i)
                    .await
                    .expect("set_outcome"),
            )
        });
    }
    let mut winners = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (i, won) = r.expect("join");
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    let steps = b.state.steps("run").await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].outcome,
        Some(StepOutcome::Completed {
            output: json!({ "writer": winners[0] })
        })
    );
    assert_eq!(steps[0].ended_at, Some(1000 + winners[0]));
    assert!(
        !b.state
            .set_outcome("run", "step", &StepOutcome::Skipped, 1)
            .await
            .unwrap()
    );
}

/// Attempts accumulate on a step record, and a repeated attempt number replaces itself.
pub async fn attempts(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let s = &b.state;
    let a = |n: u32, err: Option<&str>| Attempt {
        number: n,
        started_at: 100 * i64::from(n),
        ended_at: 100 * i64::from(n) + 10,
        error: err.map(String::from),
        host: Some(format!("host-{n}")),
        running: false,
    };
    s.record_attempt("r", "s", a(1, Some("500"))).await.unwrap();
    s.record_attempt("r", "s", a(2, Some("timeout")))
        .await
        .unwrap();
    s.record_attempt("r", "s", a(2, Some("timeout")))
        .await
        .unwrap();
    s.record_attempt("r", "s", a(3, None)).await.unwrap();
    s.set_outcome("r", "s", &StepOutcome::Completed { output: json!(1) }, 400)
        .await
        .unwrap();
    s.set_outcome("r", "skipped", &StepOutcome::Skipped, 401)
        .await
        .unwrap();
    let steps = s.steps("r").await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].step_id, "s");
    assert_eq!(
        steps[0].attempts,
        vec![a(1, Some("500")), a(2, Some("timeout")), a(3, None)]
    );
    assert_eq!(steps[0].started_at, Some(100));
    assert_eq!(steps[0].ended_at, Some(400));
    assert_eq!(steps[1].outcome, Some(StepOutcome::Skipped));
    assert!(steps[1].attempts.is_empty());
    assert!(s.steps("other").await.unwrap().is_empty());
}

/// A wait is listed by event name; of racing `take_wait` calls one wins.
pub async fn take_wait_single_winner(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let wait = Wait {
        run_id: "r".into(),
        step_id: "w".into(),
        event_name: "app/approved".into(),
        matches: Some("async.data.id == event.data.id".into()),
        since: 5,
        expires_at: now() + 60_000,
    };
    b.state.add_wait(&wait).await.unwrap();
    b.state.add_wait(&wait).await.unwrap();
    assert_eq!(
        b.state.waits_for("app/approved").await.unwrap(),
        vec![wait.clone()],
        "add_wait is an upsert"
    );
    assert!(b.state.waits_for("app/other").await.unwrap().is_empty());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = Arc::clone(&b.state);
        tasks.spawn(async move { s.take_wait("r", "w").await.expect("take_wait") });
    }
    let mut won = 0;
    while let Some(r) = tasks.join_next().await {
        won += usize::from(r.expect("join"));
    }
    assert_eq!(won, 1);
    assert!(b.state.waits_for("app/approved").await.unwrap().is_empty());
}

/// The event index answers by name and `ts >= since`, oldest first, limited.
pub async fn events_since(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let s = &b.state;
    let keep = Duration::from_secs(3600);
    for (id, name, ts) in [
        ("e3", "x", 300),
        ("e1", "x", 100),
        ("e2", "x", 200),
        ("e4", "y", 250),
    ] {
        s.index_event(&event(id, name, ts), keep).await.unwrap();
    }
    let ids = |v: Vec<Event>| v.into_iter().map(|e| e.internal_id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.events_since("x", 200, 10).await.unwrap()),
        ["e2", "e3"]
    );
    assert_eq!(ids(s.events_since("x", 0, 2).await.unwrap()), ["e1", "e2"]);
    assert!(s.events_since("x", 301, 10).await.unwrap().is_empty());
    assert_eq!(
        s.events_since("y", 0, 10).await.unwrap(),
        vec![event("e4", "y", 250)]
    );
}

/// At most `limit` holders per key; a holder renews; a release or an expired lease frees a slot.
pub async fn slots(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let s = &b.state;
    let lease = Duration::from_secs(60);
    assert!(s.acquire_slot("k", "a", 2, lease).await.unwrap());
    assert!(s.acquire_slot("k", "b", 2, lease).await.unwrap());
    assert!(!s.acquire_slot("k", "c", 2, lease).await.unwrap(), "full");
    assert!(
        s.acquire_slot("k", "a", 2, lease).await.unwrap(),
        "a holder renews"
    );
    assert!(
        s.acquire_slot("other", "c", 1, lease).await.unwrap(),
        "keys are separate"
    );
    s.release_slot("k", "a").await.unwrap();
    assert!(
        s.acquire_slot("k", "c", 2, lease).await.unwrap(),
        "a released slot is free"
    );
    let short = Duration::from_millis(200);
    assert!(s.acquire_slot("lease", "x", 1, short).await.unwrap());
    assert!(!s.acquire_slot("lease", "y", 1, short).await.unwrap());
    eventually("the lease to expire", || async {
        s.acquire_slot("lease", "y", 1, lease).await.unwrap()
    })
    .await;
    assert!(
        !s.acquire_slot("lease", "x", 1, lease).await.unwrap(),
        "x lost its expired slot"
    );
}

/// Throttle reservations follow GCRA: `burst` starts at once beside the
/// first, then one per interval; a holder asking again (from any handle)
/// gets its own start back and takes no other, until `keep` after it.
pub async fn throttle_reservations(h: &dyn Harness) {
    let (one, two) = (h.open(&queues()).await, h.open(&queues()).await);
    let (s1, s2) = (&one.state, &two.state);
    let interval = Duration::from_secs(10);
    let keep = Duration::from_secs(3600);
    let before = now();
    let a = s1.reserve_start("k", "a", interval, 1, keep).await.unwrap();
    assert!(
        a >= before - 1000 && a <= now() + 1000,
        "the first starts now: {a} vs {before}"
    );
    let b = s2.reserve_start("k", "b", interval, 1, keep).await.unwrap();
    assert!(b - a < 5000, "one more at once (burst 1): {b} vs {a}");
    let c = s1.reserve_start("k", "c", interval, 1, keep).await.unwrap();
    assert_eq!(c, a + 10_000, "then one per interval");
    assert_eq!(
        s2.reserve_start("k", "c", interval, 1, keep).await.unwrap(),
        c,
        "asking again gets the same start"
    );
    assert_eq!(
        s2.reserve_start("k", "a", interval, 1, keep).await.unwrap(),
        a
    );
    let d = s2.reserve_start("k", "d", interval, 1, keep).await.unwrap();
    assert_eq!(d, a + 20_000, "the repeats took no start");
    let other = s1
        .reserve_start("other", "x", interval, 1, keep)
        .await
        .unwrap();
    assert!(other < a + 5000, "keys are separate: {other} vs {a}");

    let x = s1
        .reserve_start("smooth", "x", interval, 0, keep)
        .await
        .unwrap();
    let y = s1
        .reserve_start("smooth", "y", interval, 0, keep)
        .await
        .unwrap();
    assert_eq!(y, x + 10_000, "without a burst every start is spaced");

    // A fraction of a millisecond apart: 4 starts in about 1 ms.
    let fast = Duration::from_micros(250);
    let firsts: Vec<i64> = {
        let mut v = Vec::new();
        for holder in ["p", "q", "r", "s", "t"] {
            v.push(
                s1.reserve_start("fast", holder, fast, 0, keep)
                    .await
                    .unwrap(),
            );
        }
        v
    };
    assert!(
        firsts.windows(2).all(|w| w[0] <= w[1]) && firsts[4] - firsts[0] <= 1000,
        "{firsts:?}"
    );

    let short = Duration::from_millis(300);
    let first = s1
        .reserve_start("forget", "z", Duration::from_millis(1), 0, short)
        .await
        .unwrap();
    eventually("the reservation to be forgotten", || async {
        s2.reserve_start("forget", "z", Duration::from_millis(1), 0, short)
            .await
            .unwrap()
            != first
    })
    .await;
}

/// A debounce key holds the latest event of its burst with the time the
/// burst began; an older event (a redelivery) changes nothing; taking it
/// is a compare-and-delete with one winner; it lapses after its ttl.
pub async fn debounces(h: &dyn Harness) {
    let (one, two) = (h.open(&queues()).await, h.open(&queues()).await);
    let (s1, s2) = (&one.state, &two.state);
    let ttl = Duration::from_secs(3600);
    let (e1, e2, e3) = (
        event("01J0000000000000000000000A", "app/edit", 1),
        event("01J0000000000000000000000B", "app/edit", 2),
        event("01J0000000000000000000000C", "app/edit", 3),
    );
    assert_eq!(s1.debounced("d").await.unwrap(), None);
    let held = s1.debounce("d", &e1, 1000, ttl).await.unwrap();
    assert_eq!(
        (held.event.internal_id.as_str(), held.since, held.last),
        (e1.internal_id.as_str(), 1000, 1000)
    );
    let held = s2.debounce("d", &e2, 1500, ttl).await.unwrap();
    assert_eq!(
        (held.event.clone(), held.since, held.last),
        (e2.clone(), 1000, 1500),
        "the latest event, the burst's start"
    );
    let again = s1.debounce("d", &e1, 1700, ttl).await.unwrap();
    assert_eq!(again, held, "an older event changes nothing");
    let again = s1.debounce("d", &e2, 1800, ttl).await.unwrap();
    assert_eq!(again, held, "the one held again keeps its times");
    assert_eq!(s2.debounced("d").await.unwrap(), Some(held.clone()));
    assert_eq!(s1.debounced("other").await.unwrap(), None);

    assert!(
        !s1.take_debounced("d", &e1.internal_id).await.unwrap(),
        "not the event held"
    );
    let (t1, t2) = tokio::join!(
        s1.take_debounced("d", &e2.internal_id),
        s2.take_debounced("d", &e2.internal_id)
    );
    assert_eq!(
        [t1.unwrap(), t2.unwrap()].iter().filter(|t| **t).count(),
        1,
        "one winner"
    );
    assert_eq!(s1.debounced("d").await.unwrap(), None);
    let held = s2.debounce("d", &e3, 3000, ttl).await.unwrap();
    assert_eq!((held.since, held.last), (3000, 3000), "a new burst");

    s1.debounce("lapses", &e1, 1000, Duration::from_millis(200))
        .await
        .unwrap();
    eventually("the debounce key to lapse", || async {
        s2.debounced("lapses").await.unwrap().is_none()
    })
    .await;
}

/// Batches gather events per key up to their max size, in order; an event
/// added again (from any handle) joins nothing and gets its batch back;
/// sealing closes a batch to new events (once, for the batch it names);
/// concurrent adds lose none and double none.
pub async fn batches(h: &dyn Harness) {
    let (one, two) = (h.open(&queues()).await, h.open(&queues()).await);
    let (s1, s2) = (&one.state, &two.state);
    let keep = Duration::from_secs(3600);
    let e: Vec<Event> = (0..7)
        .map(|i| event(&format!("01J00000000000000000000B{i:02}"), "app/row", i))
        .collect();
    assert_eq!(s1.batch("b0").await.unwrap(), None);
    let a = s1.batch_add("k", "b0", &e[0], 3, 1000, keep).await.unwrap();
    assert_eq!(
        a,
        Batched {
            id: "b0".into(),
            size: 1,
            opened_at: 1000
        },
        "the first event opens a batch named by its candidate"
    );
    let b = s2.batch_add("k", "b1", &e[1], 3, 1100, keep).await.unwrap();
    assert_eq!((b.id.as_str(), b.size, b.opened_at), ("b0", 2, 1000));
    let again = s1.batch_add("k", "b1", &e[1], 3, 1200, keep).await.unwrap();
    assert_eq!(again, b, "a redelivery joins nothing");
    let other = s1
        .batch_add("other", "o", &e[2], 3, 1300, keep)
        .await
        .unwrap();
    assert_eq!((other.id.as_str(), other.size), ("o", 1), "keys are apart");
    let full = s2.batch_add("k", "b3", &e[3], 3, 1400, keep).await.unwrap();
    assert_eq!((full.id.as_str(), full.size), ("b0", 3), "full: sealed");
    let next = s1.batch_add("k", "b4", &e[4], 3, 1500, keep).await.unwrap();
    assert_eq!(
        (next.id.as_str(), next.size),
        ("b4", 1),
        "a full batch takes no more"
    );
    assert_eq!(
        s2.batch_add("k", "b0", &e[0], 3, 1600, keep).await.unwrap(),
        full,
        "a redelivery of a sealed batch's event goes back to it"
    );
    let batch = s2.batch("b0").await.unwrap().expect("batch b0");
    assert_eq!(batch.opened_at, 1000);
    assert_eq!(batch.events, vec![e[0].clone(), e[1].clone(), e[3].clone()]);

    s1.seal_batch("k", "b0").await.unwrap();
    assert_eq!(
        s1.batch_add("k", "b5", &e[5], 3, 1700, keep)
            .await
            .unwrap()
            .id,
        "b4",
        "sealing another batch leaves the open one open"
    );
    s2.seal_batch("k", "b4").await.unwrap();
    s2.seal_batch("k", "b4").await.unwrap();
    let after = s1.batch_add("k", "b6", &e[6], 3, 1800, keep).await.unwrap();
    assert_eq!(
        (after.id.as_str(), after.size),
        ("b6", 1),
        "sealed: a new batch"
    );
    let sealed = s1.batch("b4").await.unwrap().expect("batch b4");
    assert_eq!(sealed.events, vec![e[4].clone(), e[5].clone()]);

    let many: Vec<Event> = (0..40)
        .map(|i| event(&format!("01J00000000000000000000C{i:02}"), "app/row", i))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, ev) in many.iter().cloned().enumerate() {
        let s = Arc::clone(if i % 2 == 0 { s1 } else { s2 });
        tasks.spawn(async move {
            s.batch_add("busy", &format!("c{i}"), &ev, 10, 2000, keep)
                .await
                .expect("batch_add")
        });
    }
    let mut got = Vec::new();
    while let Some(r) = tasks.join_next().await {
        got.push(r.expect("join"));
    }
    let mut ids: Vec<&str> = got.iter().map(|b| b.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "40 events in batches of 10: {ids:?}");
    let mut seen = Vec::new();
    for id in ids {
        let batch = s1.batch(id).await.unwrap().expect("batch");
        assert_eq!(batch.events.len(), 10, "batch {id}");
        seen.extend(batch.events.into_iter().map(|e| e.internal_id));
    }
    seen.sort_unstable();
    let mut all: Vec<String> = many.iter().map(|e| e.internal_id.clone()).collect();
    all.sort_unstable();
    assert_eq!(seen, all, "every event in exactly one batch");
}

/// A run ends once: racing `finish_run` calls have one winner, later ones change nothing.
pub async fn finish_run_once(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let t = now();
    b.state.create_run(&run("r", "e", t)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let s = Arc::clone(&b.state);
        let status = if i % 2 == 0 {
            RunStatus::Completed
        } else {
            RunStatus::Failed
        };
        tasks.spawn(async move {
            let won = s
                .finish_run("r", status, Some(format!("by {i}")), t + i)
                .await
                .expect("finish_run");
            (status, i, won)
        });
    }
    let mut winners = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (status, i, won) = r.expect("join");
        if won {
            winners.push((status, i));
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let (status, i) = winners[0];
    let stored = b.state.get_run("r").await.unwrap().unwrap();
    assert_eq!(stored.status, status);
    assert_eq!(stored.error, Some(format!("by {i}")));
    assert_eq!(stored.ended_at, Some(t + i));
    assert!(
        !b.state
            .finish_run("r", RunStatus::Cancelled, None, t)
            .await
            .unwrap()
    );
    assert!(
        !b.state
            .finish_run("missing", RunStatus::Cancelled, None, t)
            .await
            .unwrap()
    );
    // Every ended status is stored, read back and counted as itself.
    for (i, status) in RunStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .enumerate()
    {
        let id = format!("ended-{i}");
        b.state.create_run(&run(&id, "e", t)).await.unwrap();
        assert!(
            b.state
                .finish_run(&id, status, Some("why".into()), t)
                .await
                .unwrap()
        );
        let stored = b.state.get_run(&id).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.error.as_deref()),
            (status, Some("why"))
        );
    }
    let counts = b.state.run_counts().await.unwrap();
    assert_eq!(counts.get(&RunStatus::Skipped), Some(&1), "{counts:?}");
}

/// Functions can be registered, replaced, listed and deleted.
pub async fn functions(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let f = |id: &str, url: &str| -> FunctionDef {
        serde_json::from_value(json!({
            "id": id,
            "triggers": [{"event": "app/x"}],
            "steps": [{"id": "s", "http": {"url": url}}]
        }))
        .expect("function")
    };
    b.state
        .put_function(&f("b", "http://127.0.0.1:1/"))
        .await
        .unwrap();
    b.state
        .put_function(&f("a", "http://127.0.0.1:1/"))
        .await
        .unwrap();
    b.state
        .put_function(&f("a", "http://127.0.0.1:2/"))
        .await
        .unwrap();
    let list = b.state.list_functions().await.unwrap();
    assert_eq!(
        list,
        vec![f("a", "http://127.0.0.1:2/"), f("b", "http://127.0.0.1:1/")]
    );
    assert!(b.state.delete_function("a").await.unwrap());
    assert!(!b.state.delete_function("a").await.unwrap());
    assert_eq!(b.state.list_functions().await.unwrap().len(), 1);
}

/// Two independent handles (as two processes have) see each other's writes
/// and agree on single-winner operations.
pub async fn two_handles_share_the_store(h: &dyn Harness) {
    let one = h.open(&queues()).await;
    let two = h.open(&queues()).await;
    one.events.send(vec![msg("from one")]).await.expect("send");
    let got = drain(&two.events, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"from one");
    assert!(
        one.events
            .receive(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    one.events
        .ack(std::slice::from_ref(&got[0].receipt))
        .await
        .expect("ack from the other handle");
    assert_eq!(two.events.depth().await.unwrap(), Default::default());

    let t = now();
    assert!(one.state.create_run(&run("r", "e", t)).await.unwrap());
    assert!(!two.state.create_run(&run("r", "e", t)).await.unwrap());
    assert_eq!(
        two.state.get_run("r").await.unwrap().map(|r| r.id),
        Some("r".into())
    );
    assert_eq!(
        two.state
            .claim("k", "two", Duration::from_secs(60))
            .await
            .unwrap(),
        "two"
    );
    assert_eq!(
        one.state
            .claim("k", "one", Duration::from_secs(60))
            .await
            .unwrap(),
        "two"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            Arc::clone(&one.state)
        } else {
            Arc::clone(&two.state)
        };
        tasks.spawn(async move {
            s.set_outcome("r", "step", &StepOutcome::Completed { output: json!(i) }, i)
                .await
                .expect("set_outcome")
        });
    }
    let mut won = 0;
    while let Some(r) = tasks.join_next().await {
        won += usize::from(r.expect("join"));
    }
    assert_eq!(won, 1, "one winner across handles");
}

/// A run and its first jobs: sent only by the call that created the run.
pub async fn create_run_and_send_once(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let t = now();
    let r = run("r1", "e1", t);
    assert!(
        b.state
            .create_run_and_send(&r, b.work.as_ref(), vec![msg("first")])
            .await
            .unwrap()
    );
    assert!(
        !b.state
            .create_run_and_send(&r, b.work.as_ref(), vec![msg("again")])
            .await
            .unwrap(),
        "the run exists"
    );
    assert_eq!(b.state.get_run("r1").await.unwrap().unwrap(), r);
    let got = drain(&b.work, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"first");
    let more = b
        .work
        .receive(10, Duration::from_secs(30), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(more.is_empty(), "nothing sent by the second call: {more:?}");
}

/// A step's end (outcome, attempt, jobs, run end) happens once: a second
/// call writes and sends nothing. Without jobs the run ends only when
/// asked, with its error; [`StateStore::run_with_steps`] reads both back.
pub async fn end_step_once(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let t = now();
    assert!(b.state.create_run(&run("r1", "e1", t)).await.unwrap());
    let end = |output: i64, at: i64, body: &str| StepEnd {
        run_id: "r1".into(),
        step_id: "s".into(),
        outcome: StepOutcome::Completed {
            output: json!(output),
        },
        at,
        attempt: Some(Attempt {
            number: 1,
            started_at: t,
            ended_at: at,
            error: None,
            host: None,
            running: false,
        }),
        jobs: vec![msg(body)],
        finish: Some((RunStatus::Completed, None)),
    };
    assert!(
        b.state
            .end_step(end(1, t + 5, "next"), b.work.as_ref())
            .await
            .unwrap()
    );
    assert!(
        !b.state
            .end_step(end(2, t + 9, "dup"), b.work.as_ref())
            .await
            .unwrap(),
        "the outcome was written already"
    );
    let steps = b.state.steps("r1").await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(
        steps[0].outcome,
        Some(StepOutcome::Completed { output: json!(1) })
    );
    assert_eq!(steps[0].attempts.len(), 1);
    assert_eq!(steps[0].attempts[0].ended_at, t + 5);
    let r = b.state.get_run("r1").await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.ended_at, Some(t + 5));
    let got = drain(&b.work, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"next");
    let more = b
        .work
        .receive(10, Duration::from_secs(30), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(more.is_empty(), "nothing sent by the second call: {more:?}");

    // Without jobs: a middle step leaves the run running, a failed last
    // step ends it with the error; no attempt is recorded when none is given.
    assert!(b.state.create_run(&run("r2", "e2", t)).await.unwrap());
    let quiet = |step: &str, outcome: StepOutcome, finish| StepEnd {
        run_id: "r2".into(),
        step_id: step.into(),
        outcome,
        at: t + 7,
        attempt: None,
        jobs: Vec::new(),
        finish,
    };
    let done = StepOutcome::Completed { output: json!(1) };
    assert!(
        b.state
            .end_step(quiet("a", done.clone(), None), b.work.as_ref())
            .await
            .unwrap()
    );
    let (r, steps) = b.state.run_with_steps("r2").await.unwrap();
    assert_eq!(r.expect("run r2").status, RunStatus::Running);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].outcome, Some(done));
    assert!(steps[0].attempts.is_empty(), "{steps:?}");
    let failed = StepOutcome::Failed {
        error: "boom".into(),
    };
    let finish = Some((RunStatus::Failed, Some("step `b` failed: boom".into())));
    assert!(
        b.state
            .end_step(quiet("b", failed, finish), b.work.as_ref())
            .await
            .unwrap()
    );
    let (r, steps) = b.state.run_with_steps("r2").await.unwrap();
    let r = r.expect("run r2");
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("step `b` failed: boom"));
    assert_eq!(r.ended_at, Some(t + 7));
    let mut ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b"]);
    let counts = b.state.run_counts().await.unwrap();
    assert_eq!(counts.get(&RunStatus::Failed), Some(&1), "{counts:?}");
    let (none, steps) = b.state.run_with_steps("missing").await.unwrap();
    assert!(none.is_none() && steps.is_empty());
}

/// Ranked slots: a freed slot goes to the best-ranked live waiter even when
/// a worse one asks first; ties go to the lower holder id; a waiter that
/// stops asking blocks no one once its registration expires; a holder
/// renews; free slots beyond the better waiters go to whoever asks.
pub async fn ranked_slots(h: &dyn Harness) {
    let b = h.open(&queues()).await;
    let s = &b.state;
    let lease = Duration::from_secs(60);
    let wait = Duration::from_secs(60);
    let ask = |holder: &'static str, rank: i64, wait: Duration| async move {
        s.acquire_slot_ranked("k", holder, 1, lease, rank, wait)
            .await
            .unwrap()
    };
    assert!(ask("a", 50, wait).await, "a free slot with no waiters");
    assert!(ask("a", 50, wait).await, "a holder renews");
    assert!(!ask("low", 20, wait).await, "full");
    assert!(!ask("high", 10, wait).await, "full");
    s.release_slot("k", "a").await.unwrap();
    assert!(
        !ask("low", 20, wait).await,
        "a better-ranked waiter goes first, though the worse one asked first"
    );
    assert!(
        ask("high", 10, wait).await,
        "the best waiter takes the slot"
    );
    s.release_slot("k", "high").await.unwrap();
    assert!(ask("low", 20, wait).await, "the winner no longer waits");

    // Ties by holder id; across handles.
    let other = h.open(&queues()).await;
    assert!(!ask("tie-b", 20, wait).await);
    assert!(
        !other
            .state
            .acquire_slot_ranked("k", "tie-a", 1, lease, 20, wait)
            .await
            .unwrap()
    );
    s.release_slot("k", "low").await.unwrap();
    assert!(
        !ask("tie-b", 20, wait).await,
        "same rank: the lower id first"
    );
    assert!(
        other
            .state
            .acquire_slot_ranked("k", "tie-a", 1, lease, 20, wait)
            .await
            .unwrap()
    );
    s.release_slot("k", "tie-a").await.unwrap();
    assert!(ask("tie-b", 20, wait).await);

    // An expired waiter stops blocking.
    let short = Duration::from_secs(1);
    assert!(!ask("gone", 1, short).await, "full: registers a short wait");
    s.release_slot("k", "tie-b").await.unwrap();
    assert!(!ask("late", 100, wait).await, "gone is still waiting");
    eventually("the better waiter's registration to expire", || async {
        ask("late", 100, wait).await
    })
    .await;

    // Two free slots and one better waiter: the worse one gets the other.
    let two = |holder: &'static str, rank: i64| async move {
        s.acquire_slot_ranked("k2", holder, 2, lease, rank, wait)
            .await
            .unwrap()
    };
    assert!(two("x", 0).await);
    assert!(two("y", 0).await);
    assert!(!two("best", 1).await);
    assert!(!two("worst", 9).await);
    s.release_slot("k2", "x").await.unwrap();
    s.release_slot("k2", "y").await.unwrap();
    assert!(
        two("worst", 9).await,
        "one free slot beyond the one waiter ahead"
    );
    assert!(two("best", 1).await);
    assert!(!two("third", 5).await, "full again");

    // Keys are separate, and plain acquisition is unaffected.
    assert!(
        s.acquire_slot_ranked("k3", "solo", 1, lease, 999, wait)
            .await
            .unwrap()
    );
    assert!(s.acquire_slot("plain", "p", 1, lease).await.unwrap());
}
