//! Operating an aws stack on the moto server: `up` waits truthfully
//! (services, executors, Redis) and fails fast or times out with what it
//! waited for; `status` shows live counts; `scale` sets ECS desired counts
//! and the Auto Scaling Group, moving or keeping auto-scaling bounds;
//! `logs` reads and follows CloudWatch Logs. Every effect is checked with
//! describe calls of the test's own.
//!
//! The spec is examples/aws.yaml with a prebuilt `image.uri` (building
//! the engine image is tested elsewhere and would only slow these down).
//!
//! moto is configured, not worked around: `MOTO_ECS_SERVICE_RUNNING=4`
//! makes new services report 4 running tasks (at least every desired
//! count of examples/aws.yaml), and a server without it leaves every
//! service at 0 running, which is what the timeout test needs.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{aws_on, find_by, now_ms, queue_url, repo_root, stackctl_on, strings};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use harness::Moto;
use stacks::aws::Aws;

const STACK: &str = "reference";

/// examples/aws.yaml and its functions, with a prebuilt image, in `dir`.
fn write_spec(dir: &Path) -> PathBuf {
    let examples = repo_root().join("examples");
    let mut spec = std::fs::read_to_string(examples.join("aws.yaml")).unwrap();
    spec.push_str("\nimage:\n  uri: public.ecr.aws/stackctl/engine:test\n");
    let path = dir.join("aws.yaml");
    std::fs::write(&path, spec).unwrap();
    std::fs::create_dir_all(dir.join("functions")).unwrap();
    for f in std::fs::read_dir(examples.join("functions")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join("functions").join(f.file_name().unwrap())).unwrap();
    }
    path
}

struct Run {
    code: Option<i32>,
    lines: Vec<serde_json::Value>,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn last(&self) -> &serde_json::Value {
        self.lines.last().unwrap_or_else(|| {
            panic!("no JSON output; stderr: {}", self.stderr);
        })
    }

    /// The error text with its causes (`--output json` prints it on stdout).
    fn error(&self) -> String {
        let doc = self.last();
        let mut text = doc["error"].as_str().unwrap_or_default().to_string();
        for c in doc["causes"].as_array().into_iter().flatten() {
            text.push_str(" | ");
            text.push_str(c.as_str().unwrap_or_default());
        }
        text
    }
}

fn stackctl(moto: &Moto, cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = stackctl_on(moto);
    cmd.args(["--output", "json"])
        .args(args)
        .arg("-f")
        .arg(cwd.join("aws.yaml"))
        .current_dir(cwd);
    let started = Instant::now();
    let out = cmd.output().expect("stackctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One pretty-printed document (`status`), or NDJSON (the others).
    let lines = match serde_json::from_str::<serde_json::Value>(&stdout) {
        Ok(doc) => vec![doc],
        Err(_) => stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect(),
    };
    Run {
        code: out.status.code(),
        lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

async fn start_moto(running: Option<u32>) -> Moto {
    tokio::task::spawn_blocking(move || {
        let b = Moto::builder();
        let b = match running {
            Some(n) => b.ecs_service_running(n),
            None => b,
        };
        b.start()
            .expect("moto_server starts (run scripts/test to install it)")
    })
    .await
    .unwrap()
}

async fn ecs_desired(aws: &Aws, svc: &str) -> (i32, i32) {
    let out = aws
        .ecs()
        .describe_services()
        .cluster(STACK)
        .services(format!("{STACK}-{svc}"))
        .send()
        .await
        .unwrap();
    let s = &out.services()[0];
    (s.desired_count, s.running_count)
}

async fn asg(aws: &Aws) -> (i32, i32, i32, usize) {
    let out = aws
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("{STACK}-executors"))
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    (
        g.desired_capacity.unwrap(),
        g.min_size.unwrap(),
        g.max_size.unwrap(),
        g.instances().len(),
    )
}

async fn runner_bounds(aws: &Aws) -> (i32, i32) {
    let out = aws
        .appscaling()
        .describe_scalable_targets()
        .service_namespace("ecs".into())
        .resource_ids(format!("service/{STACK}/{STACK}-runner"))
        .send()
        .await
        .unwrap();
    let t = &out.scalable_targets()[0];
    (t.min_capacity, t.max_capacity)
}

async fn put_events(aws: &Aws, group: &str, stream: &str, events: &[(i64, &str)]) {
    let _ = aws
        .logs()
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send()
        .await;
    aws.logs()
        .put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(
            events
                .iter()
                .map(|(ts, m)| {
                    InputLogEvent::builder()
                        .timestamp(*ts)
                        .message(*m)
                        .build()
                        .unwrap()
                })
                .collect(),
        ))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_waits_then_status_scale_and_logs_work() {
    let moto = start_moto(Some(4)).await;
    let cwd = tempfile::tempdir().unwrap();
    write_spec(cwd.path());
    let aws = aws_on(&moto).await;

    // up: the waits are reported and complete.
    let up = stackctl(&moto, cwd.path(), &["up", "--no-verify"]);
    assert_eq!(up.code, Some(0), "{}\n{:?}", up.stderr, up.lines);
    assert_eq!(up.last()["type"], "result", "{:?}", up.lines);
    for key in [
        "wait.service.runner",
        "wait.service.event-api",
        "wait.group.executors",
        &format!("wait.redis.{STACK}-redis"),
    ] {
        assert!(
            up.lines
                .iter()
                .any(|l| l["key"] == key && l["phase"] == "ok"),
            "no completed wait {key}: {:?}",
            up.lines
        );
    }
    let runner_ok = up
        .lines
        .iter()
        .find(|l| l["key"] == "wait.service.runner" && l["phase"] == "ok")
        .unwrap();
    let msg = runner_ok["message"].as_str().unwrap();
    assert!(
        msg.contains("4/4 running on taskdef :1") && msg.contains("rollout completed"),
        "{msg}"
    );

    // Each dead-letter queue has an alarm on its first message.
    let alarms = aws
        .cloudwatch()
        .describe_alarms()
        .alarm_names(format!("{STACK}-events-dlq-not-empty"))
        .alarm_names(format!("{STACK}-work-dlq-not-empty"))
        .send()
        .await
        .unwrap();
    let mut watched: Vec<String> = alarms
        .metric_alarms()
        .iter()
        .flat_map(|a| a.dimensions())
        .filter_map(|d| d.value().map(String::from))
        .collect();
    // DescribeAlarms promises no order.
    watched.sort();
    assert_eq!(
        watched,
        [format!("{STACK}-events-dlq"), format!("{STACK}-work-dlq")],
        "{alarms:?}"
    );

    // dlq: empty, then a job in the work dead-letter queue is shown and
    // moved back.
    let empty = stackctl(&moto, cwd.path(), &["dlq"]);
    assert_eq!(empty.code, Some(0), "{:?} {}", empty.lines, empty.stderr);
    let sqs = aws.sqs();
    let dead_url = queue_url(&aws, &format!("{STACK}-work-dlq")).await;
    let job = serde_json::json!({
        "run_id": "01JRUN", "step_id": "charge", "attempt": 1, "kind": "step", "scheduled_at": 1
    });
    sqs.send_message()
        .queue_url(&dead_url)
        .message_body(job.to_string())
        .send()
        .await
        .unwrap();
    let shown = stackctl(&moto, cwd.path(), &["dlq", "work"]);
    assert_eq!(shown.code, Some(1), "{:?} {}", shown.lines, shown.stderr);
    let work = &shown.last()["queues"][0];
    assert_eq!(work["queue"], "work", "{work}");
    assert_eq!(work["count"], 1, "{work}");
    assert_eq!(work["letters"][0]["content"], "job", "{work}");
    assert_eq!(work["letters"][0]["run_id"], "01JRUN", "{work}");
    assert_eq!(work["letters"][0]["step_id"], "charge", "{work}");
    let moved = stackctl(&moto, cwd.path(), &["dlq", "work", "--redrive"]);
    assert_eq!(moved.code, Some(0), "{:?} {}", moved.lines, moved.stderr);
    assert_eq!(
        moved.last()["queues"][0]["redriven"],
        1,
        "{:?}",
        moved.lines
    );
    let work_url = queue_url(&aws, &format!("{STACK}-work")).await;
    let back = sqs
        .receive_message()
        .queue_url(&work_url)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let bodies: Vec<serde_json::Value> = back
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    assert_eq!(bodies, [job], "the job is back in the work queue");

    // Two events wait in the events queue (no engine runs on moto) and a
    // job in the work dead-letter queue, for status's figures.
    let events_url = queue_url(&aws, &format!("{STACK}-events")).await;
    for n in 0..2 {
        sqs.send_message()
            .queue_url(&events_url)
            .message_body(format!("[{{\"name\": \"figures/{n}\"}}]"))
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(&dead_url)
        .message_body(r#"{"run_id": "01JDEAD", "step_id": "charge", "attempt": 1, "kind": "step", "scheduled_at": 1}"#)
        .send()
        .await
        .unwrap();

    // status: live counts, stable field names.
    let status = stackctl(&moto, cwd.path(), &["status"]);
    assert_eq!(status.code, Some(0), "{:?}", status.lines);
    let doc = status.last();
    // The figures: depths from SQS, ages from CloudWatch (moto has no SQS
    // datapoints: unknown where messages wait, 0 where none does), failed
    // runs unknown with the reason (this stack publishes no runs API).
    let figures = &doc["figures"];
    let runner = &figures["services"]["runner"];
    assert_eq!(runner["queue"], "events", "{figures}");
    assert_eq!(
        runner["depth"],
        serde_json::json!({"known": 2}),
        "{figures}"
    );
    assert_eq!(
        runner["dead_letters"],
        serde_json::json!({"known": 0}),
        "{figures}"
    );
    assert!(
        runner["oldest_age_seconds"]["unknown"]
            .as_str()
            .is_some_and(|r| r.contains("ApproximateAgeOfOldestMessage")),
        "{figures}"
    );
    let executors = &figures["services"]["executors"];
    assert_eq!(
        executors["depth"],
        serde_json::json!({"known": 0}),
        "{figures}"
    );
    assert_eq!(
        executors["dead_letters"],
        serde_json::json!({"known": 1}),
        "{figures}"
    );
    assert_eq!(
        executors["oldest_age_seconds"],
        serde_json::json!({"known": 0.0}),
        "{figures}"
    );
    assert!(
        figures["runs_failed_last_hour"]["unknown"]
            .as_str()
            .is_some_and(|r| r.contains("runs API")),
        "{figures}"
    );
    assert_eq!(doc["ready"], true, "{doc}");
    assert_eq!(doc["services"]["runner"]["desired"], 4, "{doc}");
    assert_eq!(doc["services"]["runner"]["running"], 4, "{doc}");
    assert_eq!(doc["services"]["runner"]["rollout"], "COMPLETED", "{doc}");
    assert_eq!(doc["services"]["event-api"]["desired"], 2, "{doc}");
    assert_eq!(doc["services"]["executors"]["desired"], 1, "{doc}");
    assert_eq!(doc["services"]["executors"]["running"], 1, "{doc}");
    assert_eq!(doc["redis"]["status"], "available", "{doc}");
    // Neither `up` nor `status` prints the spec's secrets.
    for run in [&up, &status] {
        let shown = format!("{:?}\n{}", run.lines, run.stderr);
        for secret in ["change-me-event-key", "change-me-api-token"] {
            assert!(!shown.contains(secret), "{secret} printed: {shown}");
        }
    }
    let row = find_by(
        doc["resources"].as_array().unwrap(),
        "resource",
        "ecs.service.runner",
    );
    assert_eq!(
        (row["desired"].clone(), row["running"].clone()),
        (4.into(), 4.into())
    );

    // scale runner: 3, then 4, each checked with describe_services.
    for n in [3, 4] {
        let n_text = n.to_string();
        let r = stackctl(&moto, cwd.path(), &["scale", "runner", &n_text]);
        assert_eq!(r.code, Some(0), "{}\n{:?}", r.stderr, r.lines);
        let doc = r.last();
        assert_eq!(doc["to"], n, "{doc}");
        assert_eq!(doc["waited"], true, "{doc}");
        assert_eq!(ecs_desired(&aws, "runner").await, (n, n));
    }
    assert!(aws_lock_free(&aws).await, "scale releases the stack lock");

    // 3 was below the spec's min (4): the min moved to 3.
    assert_eq!(runner_bounds(&aws).await, (3, 8));
    // Beyond the auto-scaling max (8): the bound moves, and says so.
    let r = stackctl(&moto, cwd.path(), &["scale", "runner", "10"]);
    assert_eq!(r.code, Some(0), "{}\n{:?}", r.stderr, r.lines);
    let doc = r.last();
    assert_eq!(doc["bounds"]["by"], "application-auto-scaling", "{doc}");
    assert_eq!(doc["bounds"]["max"], 8, "{doc}");
    assert_eq!(doc["bounds"]["new_max"], 10, "{doc}");
    assert_eq!(runner_bounds(&aws).await, (3, 10));
    assert_eq!(ecs_desired(&aws, "runner").await, (10, 10));

    // With --keep-bounds a count outside them is refused, nothing changes.
    let r = stackctl(
        &moto,
        cwd.path(),
        &["scale", "runner", "12", "--keep-bounds", "--no-wait"],
    );
    assert_eq!(r.code, Some(1), "{:?}", r.lines);
    let err = r.error();
    assert!(
        err.contains("[3, 10]") && err.contains("--keep-bounds"),
        "{err}"
    );
    assert_eq!(ecs_desired(&aws, "runner").await, (10, 10));
    assert_eq!(runner_bounds(&aws).await, (3, 10));

    // Executors: the group's desired capacity; above its max (4) the max moves.
    let r = stackctl(&moto, cwd.path(), &["scale", "executors", "3"]);
    assert_eq!(r.code, Some(0), "{}\n{:?}", r.stderr, r.lines);
    assert_eq!(asg(&aws).await, (3, 1, 4, 3));
    let r = stackctl(&moto, cwd.path(), &["scale", "executors", "6"]);
    assert_eq!(r.code, Some(0), "{}\n{:?}", r.stderr, r.lines);
    assert_eq!(r.last()["bounds"]["new_max"], 6, "{:?}", r.lines);
    assert_eq!(asg(&aws).await, (6, 1, 6, 6));
    let r = stackctl(
        &moto,
        cwd.path(),
        &["scale", "executors", "0", "--keep-bounds"],
    );
    assert_eq!(r.code, Some(1), "{:?}", r.lines);
    assert!(r.error().contains("[1, 6]"), "{}", r.error());

    // logs: events put into the runner's group come back, oldest first;
    // one older than --since does not.
    let group = format!("/stackctl/{STACK}/runner");
    let t = now_ms();
    put_events(
        &aws,
        &group,
        "runner/task-1",
        &[
            (t - 20 * 60_000, "too old"),
            (t - 3_000, "first line"),
            (t - 2_000, "second line"),
        ],
    )
    .await;
    put_events(
        &aws,
        &group,
        "runner/task-2",
        &[(t - 1_000, "from another task")],
    )
    .await;
    // Flags read durations in the spec's grammar, days included.
    let r = stackctl(&moto, cwd.path(), &["logs", "runner", "--since", "2d"]);
    assert_eq!(r.code, Some(0), "{}\n{:?}", r.stderr, r.lines);
    assert_eq!(r.lines.len(), 4, "the old one too: {:?}", r.lines);
    assert_eq!(r.lines[0]["message"], "too old");
    let r = stackctl(&moto, cwd.path(), &["logs", "runner", "--since", "10m"]);
    assert_eq!(r.code, Some(0), "{}\n{:?}", r.stderr, r.lines);
    assert_eq!(
        strings(&r.lines, "message"),
        ["first line", "second line", "from another task"],
        "{:?}",
        r.lines
    );
    assert_eq!(r.lines[2]["stream"], "runner/task-2");
    assert_eq!(r.lines[0]["service"], "runner");
    assert!(r.lines[0]["time"].as_str().unwrap().ends_with('Z'));

    // --follow (-F) prints events that arrive later, once each.
    let mut child = stackctl_on(&moto)
        .args([
            "--output", "json", "logs", "runner", "-F", "--since", "1m", "-f",
        ])
        .arg(cwd.path().join("aws.yaml"))
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut put_late = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|m| m == "arrived later") {
        assert!(Instant::now() < deadline, "follow printed: {seen:?}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
            seen.push(doc["message"].as_str().unwrap().to_string());
        }
        if !put_late && seen.len() >= 3 {
            put_events(
                &aws,
                &group,
                "runner/task-1",
                &[(now_ms(), "arrived later")],
            )
            .await;
            put_late = true;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        seen,
        [
            "first line",
            "second line",
            "from another task",
            "arrived later"
        ]
    );
}

async fn aws_lock_free(aws: &Aws) -> bool {
    stacks::aws::lock::holder(aws, STACK)
        .await
        .unwrap()
        .is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_time_out_naming_what_they_wait_for() {
    // No MOTO_ECS_SERVICE_RUNNING: services stay at 0 running, rollout IN_PROGRESS.
    let moto = start_moto(None).await;
    let cwd = tempfile::tempdir().unwrap();
    write_spec(cwd.path());

    let up = stackctl(
        &moto,
        cwd.path(),
        &["up", "--no-verify", "--wait-timeout", "2s"],
    );
    assert_eq!(up.code, Some(1), "{}\n{:?}", up.stderr, up.lines);
    let err = up.error();
    assert!(
        err.contains("timed out after 2s waiting for service")
            && err.contains("running on taskdef :1")
            && err.contains("not ready"),
        "{err}"
    );
    assert!(up.elapsed < Duration::from_secs(60), "{:?}", up.elapsed);
    // The progress said what it waited for while it waited.
    assert!(
        up.lines.iter().any(|l| l["phase"] == "start"
            && l["message"].as_str().is_some_and(
                |m| m.starts_with("waiting for service runner: 0/4 running on taskdef :1")
            )),
        "{:?}",
        up.lines
    );

    // --no-wait returns at once, and says nothing is waited for.
    let up = stackctl(&moto, cwd.path(), &["up", "--no-wait"]);
    assert_eq!(up.code, Some(0), "{}\n{:?}", up.stderr, up.lines);
    assert!(
        !up.lines
            .iter()
            .any(|l| l["key"].as_str().is_some_and(|k| k.starts_with("wait."))),
        "{:?}",
        up.lines
    );

    // Failing fast on a stopped task (its reason in the error) is not
    // exercised here: moto 5.2.1 describes stopped tasks with numeric
    // container `cpu`, which the SDK rejects (`DescribeTasks` fails to
    // parse), so the path cannot be checked against it.
}
