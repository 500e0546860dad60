//! Counters read before and after something: what happened in between,
//! for tests and benchmarks that count requests, commands or metrics.

use std::collections::BTreeMap;

/// What each counter of `after` grew by since `before` (counters that did
/// not move are left out).
pub fn counts_since(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The sum over every labelled series of the Prometheus counter `metric`
/// in the exposition `text`.
pub fn prometheus_sum(text: &str, metric: &str) -> u64 {
    let prefix = format!("{metric}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sums() {
        let before = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 5)]);
        let after = BTreeMap::from([
            ("a".to_string(), 2),
            ("b".to_string(), 7),
            ("c".to_string(), 1),
        ]);
        let grown = counts_since(&before, &after);
        assert_eq!(
            grown,
            BTreeMap::from([("b".to_string(), 2), ("c".to_string(), 1)])
        );
        let text = "# TYPE x counter\nx{k=\"1\"} 3\nx{k=\"2\"} 4\nxy{k=\"1\"} 9\n";
        assert_eq!(prometheus_sum(text, "x"), 7);
    }
}
