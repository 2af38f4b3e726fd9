//! The labelled series of `/metrics`: request latency histograms per route, spend and
//! tokens by tenant and policy, delivery failures by channel. Every label's values are
//! bounded: routes are the router's templates, policies and channels come from the
//! artifacts, and tenants past the first [`TENANTS`] are counted as `_other`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// The upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How many tenants get series of their own.
pub(crate) const TENANTS: usize = 1_000;

/// One latency histogram.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations at or below each bucket's bound (not cumulative).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_micros: u64,
}

/// Spend and tokens of one (tenant, policy).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
    /// US dollars in 10⁻⁹ units.
    pub cost: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// The labelled series, behind one lock. Each update is a few map lookups by borrowed
/// label values; a key is allocated only the first time a series is seen.
#[derive(Debug, Default)]
pub(crate) struct Labelled {
    /// By route, then method.
    latency: BTreeMap<String, BTreeMap<String, Histogram>>,
    /// By tenant, then policy.
    usage: BTreeMap<String, BTreeMap<String, Usage>>,
    delivery_failures: BTreeMap<String, u64>,
}

/// The entry of `key` in `map`, made only when missing (no allocation when present).
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> Option<&'m mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key)
}

impl Labelled {
    /// A request to `route` (the router's template) with `method` took `took`.
    pub(crate) fn request(&mut self, method: &str, route: &str, took: Duration) {
        let Some(h) = entry(&mut self.latency, route).and_then(|m| entry(m, method)) else {
            return;
        };
        let seconds = took.as_secs_f64();
        if let Some(n) = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .and_then(|i| h.buckets.get_mut(i))
        {
            *n += 1;
        }
        h.count += 1;
        h.sum_micros += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    }

    /// A step of a run of `tenant` counted by each of `policies` (the policies bound to it).
    pub(crate) fn usage(&mut self, tenant: &str, policies: &[String], step: Usage) {
        let tenant = if self.usage.contains_key(tenant) || self.usage.len() < TENANTS {
            tenant
        } else {
            "_other"
        };
        let Some(by_policy) = entry(&mut self.usage, tenant) else {
            return;
        };
        for p in policies {
            if let Some(u) = entry(by_policy, p) {
                u.cost = u.cost.saturating_add(step.cost);
                u.input_tokens = u.input_tokens.saturating_add(step.input_tokens);
                u.output_tokens = u.output_tokens.saturating_add(step.output_tokens);
            }
        }
    }

    /// A delivery attempt to `channel` that failed.
    pub(crate) fn delivery_failed(&mut self, channel: &str) {
        *self
            .delivery_failures
            .entry(channel.to_string())
            .or_default() += 1;
    }

    pub(crate) fn render(&self, out: &mut String) {
        out.push_str("# HELP lever_request_seconds Request latency, by route and method.\n# TYPE lever_request_seconds histogram\n");
        for ((route, method), h) in nested(&self.latency) {
            let labels = format!("route=\"{}\",method=\"{}\"", escape(route), escape(method));
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "lever_request_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "lever_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "lever_request_seconds_sum{{{labels}}} {:.6}",
                h.sum_micros as f64 / 1e6
            );
            let _ = writeln!(out, "lever_request_seconds_count{{{labels}}} {}", h.count);
        }
        out.push_str("# HELP lever_spend_usd_total Cost of the steps judged, by tenant and bound policy.\n# TYPE lever_spend_usd_total counter\n");
        for ((tenant, policy), u) in nested(&self.usage) {
            let _ = writeln!(
                out,
                "lever_spend_usd_total{{tenant=\"{}\",policy=\"{}\"}} {}",
                escape(tenant),
                escape(policy),
                crate::base::num::Decimal(u.cost)
            );
        }
        out.push_str("# HELP lever_tokens_total Tokens of the steps judged, by tenant, bound policy and direction.\n# TYPE lever_tokens_total counter\n");
        for ((tenant, policy), u) in nested(&self.usage) {
            for (direction, n) in [("input", u.input_tokens), ("output", u.output_tokens)] {
                let _ = writeln!(
                    out,
                    "lever_tokens_total{{tenant=\"{}\",policy=\"{}\",direction=\"{direction}\"}} {}",
                    escape(tenant),
                    escape(policy),
                    crate::base::num::Decimal(n)
                );
            }
        }
        out.push_str("# HELP lever_alert_delivery_failures_total Failed alert delivery attempts, by channel.\n# TYPE lever_alert_delivery_failures_total counter\n");
        for (channel, n) in &self.delivery_failures {
            let _ = writeln!(
                out,
                "lever_alert_delivery_failures_total{{channel=\"{}\"}} {n}",
                escape(channel)
            );
        }
    }
}

/// A two-level map's entries in order, with both keys.
fn nested<V>(
    map: &BTreeMap<String, BTreeMap<String, V>>,
) -> impl Iterator<Item = ((&str, &str), &V)> {
    map.iter().flat_map(|(a, inner)| {
        inner
            .iter()
            .map(move |(b, v)| ((a.as_str(), b.as_str()), v))
    })
}

/// A label value as the exposition format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_tenants_past_the_cap_are_other() {
        let mut l = Labelled::default();
        l.request("POST", "/v1/runs/{id}/steps", Duration::from_micros(700));
        l.request("POST", "/v1/runs/{id}/steps", Duration::from_millis(3));
        for t in 0..=TENANTS {
            l.usage(
                &format!("t{t}"),
                &["p".into()],
                Usage {
                    cost: 1_000_000_000,
                    input_tokens: 0,
                    output_tokens: 0,
                },
            );
        }
        let mut out = String::new();
        l.render(&mut out);
        let route = "route=\"/v1/runs/{id}/steps\",method=\"POST\"";
        assert!(out.contains(&format!(
            "lever_request_seconds_bucket{{{route},le=\"0.0005\"}} 0\n"
        )));
        assert!(out.contains(&format!(
            "lever_request_seconds_bucket{{{route},le=\"0.001\"}} 1\n"
        )));
        assert!(out.contains(&format!(
            "lever_request_seconds_bucket{{{route},le=\"0.005\"}} 2\n"
        )));
        assert!(out.contains(&format!("lever_request_seconds_count{{{route}}} 2\n")));
        assert!(out.contains("lever_spend_usd_total{tenant=\"_other\",policy=\"p\"} 1\n"));
        assert_eq!(out.matches("lever_spend_usd_total{").count(), TENANTS + 1);
    }
}
