//! What to load-test, from a stack spec: the event API's URL and key, the
//! runs API and its token (for `--e2e`), and a sampler of the stack's own
//! gauges for the timeline. Local stacks are read from the spec and the
//! state directory; AWS endpoint discovery (the load balancer or service
//! DNS name, ECS/ASG counts, SQS depths) plugs in here as another
//! [`Sampler`] once the AWS provider can describe a running stack.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

use super::{BenchError, Sampler};
use crate::spec::{LoadedSpec, Provider};

/// How to reach a stack's APIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Base URL of the event API, e.g. `http://127.0.0.1:8288`.
    pub event_api: String,
    /// The event key requests are sent with.
    #[serde(skip)]
    pub event_key: String,
    /// Base URL of the runs API, when known.
    pub runs_api: Option<String>,
    /// Its bearer token, when known.
    #[serde(skip)]
    pub api_token: Option<String>,
    /// Where the stack publishes Prometheus metrics, for the timeline.
    pub metrics: Option<String>,
}

impl Target {
    /// A target given by URL and key only; the runs API is assumed under
    /// `{event_api}/v1`, as the engine serves it.
    pub fn from_url(event_api: &str, event_key: &str, api_token: Option<String>) -> Self {
        let base = event_api.trim_end_matches('/').to_string();
        Self {
            runs_api: Some(format!("{base}/v1")),
            metrics: Some(format!("{base}/metrics")),
            event_api: base,
            event_key: event_key.to_string(),
            api_token,
        }
    }

    /// The ingestion URL: `{event_api}/e/{event_key}`.
    pub fn ingest_url(&self) -> String {
        format!("{}/e/{}", self.event_api, self.event_key)
    }

    /// The stack of `loaded`: for `provider: local`, the spec's event API
    /// port and event key (`default`, else the first), and the runs API
    /// token from the spec or the state directory (written by `up`).
    pub fn from_spec(loaded: &LoadedSpec) -> Result<Self, BenchError> {
        let spec = &loaded.spec;
        match spec.provider {
            Provider::Local => {}
            Provider::Aws => return Err(BenchError::AwsDiscovery),
        }
        let port = spec
            .services
            .event_api
            .port
            .unwrap_or(crate::local::DEFAULT_EVENT_API_PORT);
        let key = spec
            .event_keys
            .get("default")
            .or_else(|| spec.event_keys.values().next())
            .cloned()
            .ok_or(BenchError::NoEventKey)?;
        let token = match &spec.api_token {
            Some(t) => Some(t.clone()),
            None => {
                let dir = crate::local::state_dir(loaded)
                    .map_err(|e| BenchError::Stack(e.to_string()))?;
                std::fs::read_to_string(dir.join("api_token"))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            }
        };
        Ok(Self::from_url(
            &format!("http://127.0.0.1:{port}"),
            &key,
            token,
        ))
    }
}

/// Reads gauges from a Prometheus endpoint: the engine's queue depths
/// (`queue.events.visible`, ...) and runs by status (`runs.running`, ...).
pub struct MetricsSampler {
    url: String,
    client: reqwest::Client,
}

impl MetricsSampler {
    /// Samples `url` (an engine's `/metrics`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
        }
    }
}

impl Sampler for MetricsSampler {
    fn sample(&self) -> Pin<Box<dyn Future<Output = BTreeMap<String, f64>> + Send + '_>> {
        Box::pin(async move {
            let Ok(resp) = self.client.get(&self.url).send().await else {
                return BTreeMap::new();
            };
            let Ok(text) = resp.text().await else {
                return BTreeMap::new();
            };
            let mut out = BTreeMap::new();
            for (name, labels, value) in parse_prometheus(&text) {
                let key = match name {
                    "stackctl_queue_messages" => format!(
                        "queue.{}.{}",
                        labels.get("queue").copied().unwrap_or("?"),
                        labels.get("state").copied().unwrap_or("?")
                    ),
                    "stackctl_runs" => {
                        format!("runs.{}", labels.get("status").copied().unwrap_or("?"))
                    }
                    _ => continue,
                };
                out.insert(key, value);
            }
            out
        })
    }
}

/// The samples of a Prometheus text exposition: name, labels, value.
pub fn parse_prometheus(text: &str) -> Vec<(&str, BTreeMap<&str, &str>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rfind('}') {
            Some(close) => (&line[..=close], line[close + 1..].trim()),
            None => match line.split_once(' ') {
                Some((h, v)) => (h, v.trim()),
                None => continue,
            },
        };
        let value = value.split_whitespace().next().unwrap_or("");
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}').unwrap_or(rest))),
            None => (head, BTreeMap::new()),
        };
        out.push((name, labels, value));
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<&str, &str> {
    // The engine's label values hold no commas or escaped quotes.
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        })
        .collect()
}

/// The sum of every sample of `name` whose labels include all of `labels`.
pub fn prometheus_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_prometheus(text)
        .into_iter()
        .filter(|(n, l, _)| *n == name && labels.iter().all(|(k, v)| l.get(k) == Some(v)))
        .map(|(_, _, v)| v)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "stack: demo
provider: local
services:
  event-api: {count: 1, port: 18999}
  runner: {count: 1}
executors: {min: 1, desired: 1, max: 1, drivers: [http]}
event_keys: {other: k-2, default: k-1}
api_token: tok
";

    #[test]
    fn a_local_spec_gives_url_key_and_token() {
        let loaded =
            crate::spec::load_str(std::path::Path::new("/x/local.yaml"), SPEC, &|_| None).unwrap();
        let t = Target::from_spec(&loaded).unwrap();
        assert_eq!(t.ingest_url(), "http://127.0.0.1:18999/e/k-1");
        assert_eq!(t.runs_api.as_deref(), Some("http://127.0.0.1:18999/v1"));
        assert_eq!(t.api_token.as_deref(), Some("tok"));
    }

    #[test]
    fn prometheus_text_is_read() {
        let text = "# HELP x y\n# TYPE x counter\n\
            stackctl_http_requests_total{role=\"event-api\",route=\"/e/{event_key}\",status=\"200\"} 41\n\
            stackctl_http_requests_total{role=\"event-api\",route=\"/e/{event_key}\",status=\"500\"} 1\n\
            stackctl_events_accepted_total 123\n";
        assert_eq!(
            prometheus_sum(
                text,
                "stackctl_http_requests_total",
                &[("route", "/e/{event_key}")]
            ),
            42.0
        );
        assert_eq!(
            prometheus_sum(text, "stackctl_http_requests_total", &[("status", "200")]),
            41.0
        );
        assert_eq!(
            prometheus_sum(text, "stackctl_events_accepted_total", &[]),
            123.0
        );
    }
}
