//! A histogram fed a whole batch of observations at a time.
//!
//! prometheus-client's `Histogram` takes a lock per observation; the event
//! lag is observed once per durable row, by every writer, so a batch is
//! counted into local buckets first and added with one atomic operation per
//! bucket. Encoded exactly as a classic Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// At most this many finite bucket bounds.
const MAX_BOUNDS: usize = 31;

#[derive(Debug, Clone)]
pub struct BatchHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; a last bucket (+Inf) follows them.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
    counts: Vec<AtomicU64>,
    /// The sum of observations, as an f64's bits.
    sum: AtomicU64,
}

impl BatchHistogram {
    /// A histogram with these upper bounds (ascending, at most 31).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> BatchHistogram {
        let bounds: Vec<f64> = bounds.into_iter().collect();
        assert!(bounds.len() <= MAX_BOUNDS && bounds.is_sorted());
        BatchHistogram(Arc::new(Inner {
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Counts every value of `values`.
    pub fn observe_all(&self, values: impl IntoIterator<Item = f64>) {
        let inner = &self.0;
        let mut local = [0u64; MAX_BOUNDS + 1];
        let mut sum = 0.0;
        for v in values {
            // NaN lands in +Inf, as in prometheus-client.
            let at = if v.is_nan() {
                inner.bounds.len()
            } else {
                inner.bounds.partition_point(|b| *b < v)
            };
            local[at] += 1;
            sum += v;
        }
        for (slot, n) in inner.counts.iter().zip(local) {
            if n > 0 {
                slot.fetch_add(n, Ordering::Relaxed);
            }
        }
        if sum != 0.0 {
            let _ = inner
                .sum
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    Some((f64::from_bits(bits) + sum).to_bits())
                });
        }
    }

    /// (sum, count, per-bucket counts with their upper bounds).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (
            f64::from_bits(inner.sum.load(Ordering::Relaxed)),
            count,
            buckets,
        )
    }
}

impl TypedMetric for BatchHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BatchHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    fn text(
        name: &str,
        metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static,
    ) -> String {
        let mut r = Registry::default();
        r.register(name, "h", metric);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn encodes_as_the_library_histogram_does() {
        let bounds = [0.5, 1.0, 2.0];
        let values = [0.1, 0.5, 0.7, 1.5, 3.0, 9.0, 0.0];
        let ours = BatchHistogram::new(bounds);
        ours.observe_all(values[..3].iter().copied());
        ours.observe_all(values[3..].iter().copied());
        let theirs = Histogram::new(bounds);
        for v in values {
            theirs.observe(v);
        }
        assert_eq!(text("h", ours), text("h", theirs));
    }
}
