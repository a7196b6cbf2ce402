//! The operator's Prometheus metrics, as a scrape sees them.

/// A free `127.0.0.1:<port>` for `--metrics-addr`.
pub fn metrics_addr() -> String {
    format!("127.0.0.1:{}", regcred_testenv::free_port())
}

/// The operator's `/metrics` at `addr`.
pub async fn scrape(addr: &str) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the operator serves /metrics");
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.unwrap()
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
