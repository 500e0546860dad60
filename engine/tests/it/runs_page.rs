//! The runs page (`GET /ui`) rendered by headless Chromium against a real
//! stack: recent runs with their statuses and the function list; a run's
//! steps as a timeline whose bars follow the steps' order and attempts;
//! text from the API shown as text; a wrong or missing token answered with
//! a message on the page; and no page at all without an `api_token`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use engine::backend::RunStatus;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::{API_TOKEN, DEADLINE, Stack, TestBackend, function, poll};

/// Scripts settle in well under this; the network is awaited outside it.
const BUDGET: Duration = Duration::from_secs(10);

/// Markup in a step's error: the page must show it as text.
const HOSTILE: &str = "<b id=\"injected\">broken</b> & co";

/// `/ok` answers after a pause (so steps have a visible length), `/flaky`
/// fails its first call with a 500 (retried), `/broken` answers 400 with
/// markup in its body (not retried).
async fn start_service() -> String {
    let flaky_calls = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route(
            "/ok",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Json(json!({"ok": true}))
            }),
        )
        .route(
            "/flaky",
            post(|State(calls): State<Arc<AtomicU32>>| async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Json(json!({"error": "try again"})),
                    )
                } else {
                    (StatusCode::OK, Json(json!({"ok": true})))
                }
            }),
        )
        .route(
            "/broken",
            post(|| async { (StatusCode::BAD_REQUEST, Json(json!({"error": HOSTILE}))) }),
        )
        .with_state(flaky_calls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn ended(stack: &Stack, internal_id: &str) -> engine::backend::Run {
    let run = poll("the run", DEADLINE, || stack.client.run_of(internal_id)).await;
    poll(&format!("run {} to end", run.id), DEADLINE, || async {
        stack
            .backends
            .state
            .get_run(&run.id)
            .await
            .ok()
            .flatten()
            .filter(|r| r.status.is_terminal())
    })
    .await
}

/// The page at `url` as Chromium leaves it once its scripts ran.
async fn render(url: String) -> String {
    tokio::task::spawn_blocking(move || {
        harness::chromium()
            .unwrap_or_else(|e| panic!("{e}"))
            .dump_dom(&url, BUDGET)
            .unwrap_or_else(|e| panic!("render {url}: {e}"))
    })
    .await
    .unwrap()
}

/// The opening tags in `dom` whose `class` attribute starts with `class`.
fn tags_of_class<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    let needle = format!("class=\"{class}");
    dom.match_indices(&needle)
        .map(|(i, _)| {
            let start = dom[..i].rfind('<').unwrap();
            let end = i + dom[i..].find('>').unwrap();
            &dom[start..=end]
        })
        .collect()
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// A `left`/`width` percentage from an inline style (`0%` and the like).
fn style_percent(tag: &str, property: &str) -> f64 {
    let style = attr(tag, "style").unwrap_or_else(|| panic!("no style: {tag}"));
    let needle = format!("{property}: ");
    let start = style
        .find(&needle)
        .unwrap_or_else(|| panic!("no {property}: {tag}"))
        + needle.len();
    let len = style[start..].find('%').expect("a percentage");
    style[start..start + len].parse().expect("a number")
}

/// One timeline row: its step's bar (left, width) and its attempts' classes.
struct Row {
    outcome: String,
    bar: Option<(f64, f64)>,
    attempts: Vec<String>,
}

fn timeline_row(dom: &str, step: &str) -> Row {
    let open = format!("class=\"tl-row\" data-step=\"{step}\"");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no timeline row for `{step}` in\n{dom}"));
    // A row ends where the next one starts.
    let rest = &dom[start + open.len()..];
    let row = &dom[start..start + open.len() + rest.find("class=\"tl-row").unwrap_or(rest.len())];
    let first_tag = &row[..row.find('>').unwrap()];
    let outcome = attr(&format!(" {first_tag}"), "data-outcome")
        .unwrap()
        .to_string();
    let bar = tags_of_class(row, "tl-bar")
        .first()
        .map(|tag| (style_percent(tag, "left"), style_percent(tag, "width")));
    let attempts = tags_of_class(row, "tl-attempt ")
        .iter()
        .map(|tag| attr(tag, "class").unwrap().to_string())
        .collect();
    Row {
        outcome,
        bar,
        attempts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_page_shows_runs_steps_timeline_and_functions_in_chromium() {
    // Before anything else: a machine without Chromium fails here at once.
    // Display, not Debug: the message says how to install it.
    harness::chromium().unwrap_or_else(|e| panic!("{e}"));
    let url = start_service().await;
    let pipeline = function(json!({
        "id": "pipeline",
        "name": "Three steps in a row",
        "triggers": [{"event": "demo/page-ok"}],
        "retries": {"attempts": 2, "backoff": "10ms"},
        "steps": [
            {"id": "fetch", "http": {"url": format!("{url}/ok")}},
            {"id": "flaky", "after": ["fetch"], "http": {"url": format!("{url}/flaky")}},
            {"id": "store", "after": ["flaky"], "http": {"url": format!("{url}/ok")}}
        ]
    }));
    let breaking = function(json!({
        "id": "breaking",
        "triggers": [{"event": "demo/page-fail"}],
        "retries": {"attempts": 0},
        "steps": [
            {"id": "prepare", "http": {"url": format!("{url}/ok")}},
            {"id": "explode", "after": ["prepare"], "http": {"url": format!("{url}/broken")}}
        ]
    }));
    let unused = function(json!({
        "id": "unused",
        "triggers": [{"event": "demo/never"}],
        "steps": [{"id": "nothing", "sleep": "1s"}]
    }));
    let stack = Stack::start(vec![pipeline, breaking, unused]).await;
    let ok_event = stack.client.send_event("demo/page-ok", json!({})).await;
    let fail_event = stack.client.send_event("demo/page-fail", json!({})).await;
    let completed = ended(&stack, &ok_event).await;
    let failed = ended(&stack, &fail_event).await;
    assert_eq!(completed.status, RunStatus::Completed, "{completed:?}");
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    let base = format!("{}/ui", stack.client.url);

    // Served with a CSP that allows nothing from elsewhere.
    let resp = reqwest::get(&base).await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    // Recent runs and the function list.
    let dom = render(format!("{base}#token={API_TOKEN}")).await;
    assert!(dom.contains("data-state=\"ready\""), "{dom}");
    for (run, status) in [(&completed, "completed"), (&failed, "failed")] {
        let row = format!("data-run-id=\"{}\" data-status=\"{status}\"", run.id);
        assert!(dom.contains(&row), "no `{row}` in\n{dom}");
    }
    assert!(
        dom.contains(&format!("href=\"#run={}\"", completed.id)),
        "{dom}"
    );
    for f in ["pipeline", "breaking", "unused"] {
        assert!(
            dom.contains(&format!("data-function-id=\"{f}\"")),
            "no function `{f}` in\n{dom}"
        );
    }
    assert!(dom.contains("Three steps in a row"), "{dom}");
    assert!(dom.contains("3: fetch, flaky, store"), "{dom}");
    assert!(!dom.contains(API_TOKEN), "the token is not in the page");

    // The list filtered by function (in the fragment, as the filter form sets it).
    let dom = render(format!("{base}#token={API_TOKEN}&function=breaking")).await;
    assert!(dom.contains("data-state=\"ready\""), "{dom}");
    assert!(
        dom.contains(&format!("data-run-id=\"{}\"", failed.id)),
        "{dom}"
    );
    assert!(
        !dom.contains(&format!("data-run-id=\"{}\"", completed.id)),
        "{dom}"
    );

    // The completed run: three steps one after the other; `flaky` took two
    // attempts, the first failed.
    let dom = render(format!("{base}#token={API_TOKEN}&run={}", completed.id)).await;
    assert!(dom.contains("data-state=\"ready\""), "{dom}");
    assert!(
        dom.contains(&format!("<code id=\"run-id\">{}</code>", completed.id)),
        "{dom}"
    );
    let rows: Vec<Row> = ["fetch", "flaky", "store"]
        .iter()
        .map(|s| timeline_row(&dom, s))
        .collect();
    let mut previous_end = 0.0;
    for (step, row) in ["fetch", "flaky", "store"].iter().zip(&rows) {
        assert_eq!(row.outcome, "completed", "{step}");
        let (left, width) = row.bar.unwrap_or_else(|| panic!("no bar for {step}"));
        assert!(
            width > 0.0 && left >= 0.0 && left + width <= 100.5,
            "{step}: {left} {width}"
        );
        // Each starts once the one before it ended (a bar is at least 0.5 wide).
        assert!(
            left + 0.6 >= previous_end,
            "{step} starts at {left}, before {previous_end}"
        );
        previous_end = left + width;
    }
    assert!(
        previous_end > 50.0,
        "the steps fill most of the run: {previous_end}"
    );
    assert_eq!(rows[0].attempts, ["tl-attempt attempt-ok"]);
    assert_eq!(
        rows[1].attempts,
        ["tl-attempt attempt-failed", "tl-attempt attempt-ok"]
    );
    // Its failed attempt's error is listed with the attempts, not as the
    // step's error: the step completed.
    let flaky = &dom[dom
        .find("class=\"step\" data-step=\"flaky\"")
        .expect("flaky's row")..];
    let flaky = &flaky[..flaky.find("</tr>").unwrap()];
    assert!(
        flaky.contains("answered 500 Internal Server Error"),
        "{flaky}"
    );
    assert!(flaky.contains("<td class=\"error\"></td>"), "{flaky}");

    // The failed run: its failed step, with the service's markup as text.
    let dom = render(format!("{base}#token={API_TOKEN}&run={}", failed.id)).await;
    assert!(dom.contains("data-state=\"ready\""), "{dom}");
    let prepare = timeline_row(&dom, "prepare");
    let explode = timeline_row(&dom, "explode");
    assert_eq!(prepare.outcome, "completed");
    assert_eq!(explode.outcome, "failed");
    assert!(explode.bar.is_some(), "{dom}");
    assert!(dom.contains("tl-bar outcome-failed"), "{dom}");
    assert!(
        dom.contains("&lt;b id=\\\"injected\\\"&gt;broken&lt;/b&gt;"),
        "{dom}"
    );
    assert!(
        !dom.contains("<b id="),
        "markup from the API became markup:\n{dom}"
    );

    // A wrong token, no token, an unknown run: a message says so.
    let dom = render(format!("{base}#token=wrong-token")).await;
    assert!(dom.contains("data-state=\"error\""), "{dom}");
    assert!(dom.contains("The runs API refused the token (401"), "{dom}");
    assert!(!dom.contains("data-run-id="), "{dom}");
    let dom = render(base.clone()).await;
    assert!(dom.contains("No runs API token"), "{dom}");
    let dom = render(format!("{base}#token={API_TOKEN}&run=no-such-run")).await;
    assert!(dom.contains("The runs API answered 404"), "{dom}");
    stack.stop().await;
}

#[tokio::test]
async fn runs_page_is_not_served_without_an_api_token() {
    let stack = Stack::start_tuned(TestBackend::Embedded, vec![], &[], |c| {
        c.api_token = None;
    })
    .await;
    let resp = reqwest::get(format!("{}/ui", stack.client.url))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("no api_token"),
        "{body}"
    );
    stack.stop().await;
}
