//! Criterion benchmarks of the sink's own costs (`make bench`).
//!
//! None of these touch Kafka or MySQL: they measure what the sink adds on top
//! of them, which must stay small next to what MySQL can take.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_mysql_sink::config::Config;
use kafka_mysql_sink::internals::{
    BatchSink, Coord, DeadLetter, Decoder, Dialect, Envelope, KeyCollation, Meta, Num,
    OffsetTracker, Part, PlanDecoder, PlanRow, PlanStatements, RouteError, Router, Routing, Row,
    TableDesc, Topic, UpsertBuilder, WriteError, Writer, WriterSettings,
};
use kafka_mysql_sink::metrics::Metrics;
use kafka_mysql_sink::shutdown::Shutdown;

#[path = "../tests/common/orders.rs"]
mod orders;

fn payloads(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| orders::order(i, 0).0.into_bytes()).collect()
}

fn decode(c: &mut Criterion) {
    let msgs = payloads(10_000);
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("flat pass 10k msgs", |b| {
        let mut d = Decoder::new();
        b.iter(|| {
            for m in &msgs {
                std::hint::black_box(d.decode(m).unwrap());
            }
        })
    });
    // The default route through the general plan, on the same messages:
    // issue #23's target is within 1.25x of the flat pass above.
    g.bench_function("plan-orders 10k msgs", |b| {
        let mut d = orders_plan();
        let meta = Meta::default();
        b.iter(|| {
            for m in &msgs {
                std::hint::black_box(d.decode(m, &meta, false).unwrap());
            }
        })
    });
    // The same orders with an escape in a field the row does not use: the
    // flat pass refuses them, so this is what simd-json's way costs.
    let escaped: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m).replace("enrich-v2", "enrich\\u002dv2");
            text.into_bytes()
        })
        .collect();
    g.bench_function("simd-json path 10k msgs (one escape each)", |b| {
        let mut d = Decoder::new();
        b.iter(|| {
            for m in &escaped {
                std::hint::black_box(d.decode(m).unwrap());
            }
        })
    });
    g.bench_function("serde_json 10k msgs (comparison)", |b| {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Order<'a> {
            id: &'a str,
            order_id: &'a str,
            quantity: Option<i64>,
            unit_price: Option<f64>,
            total_value: Option<f64>,
            processed_at: Option<i64>,
        }
        b.iter(|| {
            for m in &msgs {
                let o: Order<'_> = serde_json::from_slice(m).unwrap();
                std::hint::black_box(Row::new(
                    o.id,
                    o.order_id,
                    Num::Int(o.quantity.unwrap_or(1)),
                    Num::Float(o.unit_price.unwrap_or(0.0)),
                    Num::Float(o.total_value.unwrap_or(0.0)),
                    o.processed_at.map(Num::Int),
                ));
            }
        })
    });
    g.finish();
}

fn rows(n: u64) -> Vec<Row> {
    let mut d = Decoder::new();
    (0..n)
        .map(|i| d.decode(orders::order(i, 0).0.as_bytes()).unwrap())
        .collect()
}

/// The decoder of the default route, planned against the seed's table.
fn orders_plan() -> PlanDecoder {
    let table = TableDesc::seed_orders("app_consumer", "orders");
    PlanDecoder::for_default_route(&Config::default(), &table).unwrap()
}

fn plan_rows(n: u64) -> Vec<PlanRow> {
    let mut d = orders_plan();
    (0..n)
        .map(|i| {
            let payload = orders::order(i, 0).0;
            d.decode(payload.as_bytes(), &Meta::default(), false)
                .unwrap()
        })
        .collect()
}

fn statement_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("statement_build");
    for n in [100u64, 1000, 5000] {
        let batch = rows(n);
        let mut builder = UpsertBuilder::new("app_consumer", "orders", Dialect::ValuesFunction);
        let len = builder.build(&batch, usize::MAX).unwrap().1.len();
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("{n} rows ({len} bytes)"), |b| {
            b.iter(|| {
                let (n, sql) = builder.build(&batch, usize::MAX).unwrap();
                std::hint::black_box((n, sql.len()));
            })
        });
        // The same orders as the default route's plan writes them.
        let batch = plan_rows(n);
        let mut builder = PlanStatements::new(orders_plan().shape(), Dialect::ValuesFunction);
        let len = builder.build_insert(&batch, usize::MAX).unwrap().1.len();
        g.bench_function(format!("plan {n} rows ({len} bytes)"), |b| {
            b.iter(|| {
                let (n, sql) = builder.build_insert(&batch, usize::MAX).unwrap();
                std::hint::black_box((n, sql.len()));
            })
        });
    }
    g.finish();
}

fn offset_tracker(c: &mut Criterion) {
    let parts = 64i32;
    let per_part = 1000i64;
    // Completion order: batches of 50 finishing out of order, as writers do.
    let mut order: Vec<(i32, i64)> = Vec::new();
    for chunk in (0..per_part).collect::<Vec<_>>().chunks(50).rev() {
        for p in 0..parts {
            order.extend(chunk.iter().map(|&o| (p, o)));
        }
    }
    let topic = Topic::named("orders");
    let mut g = c.benchmark_group("offset_tracker");
    g.throughput(Throughput::Elements(order.len() as u64));
    g.bench_function("64 partitions, out-of-order completion", |b| {
        b.iter_batched(
            || {
                let mut t = OffsetTracker::new();
                for o in 0..per_part {
                    for p in 0..parts {
                        t.register(Coord::new(Part::new(topic, p), o));
                    }
                }
                t
            },
            |mut t| {
                for &(p, o) in &order {
                    t.complete(Coord::new(Part::new(topic, p), o));
                }
                assert_eq!(
                    t.commit_candidates()[0],
                    Coord::new(Part::new(topic, 0), per_part)
                );
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// What a writer adds per batch for the latency metrics: one event-lag
/// observation per row and one newest-timestamp update per partition run.
fn latency_metrics(c: &mut Criterion) {
    let metrics = Metrics::default();
    let topic = Topic::named("orders");
    let stamps: Vec<(Part, i64)> = (0..1000)
        .map(|i| (Part::new(topic, i / 500), 1_700_000_000_000 + i as i64))
        .collect();
    let mut g = c.benchmark_group("latency_metrics");
    g.throughput(Throughput::Elements(stamps.len() as u64));
    g.bench_function("record_durable, 1000 rows of 2 partitions", |b| {
        b.iter(|| metrics.record_durable(1_700_000_060_000, stamps.iter().copied()))
    });
    g.finish();
}

/// A writer destination that builds the statement and throws it away: the
/// pipeline's cost without the database's.
struct Discard(UpsertBuilder);

impl BatchSink for Discard {
    fn write(&mut self, items: &[Envelope]) -> Result<(), WriteError> {
        let (_, sql) = self.0.build(items, usize::MAX)?;
        std::hint::black_box(sql.len());
        Ok(())
    }

    fn dead_letter(&mut self, _: &[DeadLetter<'_>]) -> Result<(), WriteError> {
        Ok(())
    }
}

fn pipeline(c: &mut Criterion) {
    let n = 200_000u64;
    let msgs = payloads(n);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    for writers in [2usize, 4] {
        g.bench_function(format!("decode+route+batch+ack, {writers} writers"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += run_pipeline(&msgs, writers);
                }
                total
            })
        });
    }
    g.finish();
}

fn run_pipeline(msgs: &[Vec<u8>], writers: usize) -> Duration {
    let metrics = Arc::new(Metrics::default());
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
    let (mut router, inboxes) = Router::new(writers, 8192, Routing::ByKey, KeyCollation::binary());
    let mut handles = Vec::new();
    for (id, rx) in inboxes.into_iter().enumerate() {
        let w = Writer::new(
            id,
            rx,
            ack_tx.clone(),
            Discard(UpsertBuilder::new("db", "t", Dialect::ValuesFunction)),
            WriterSettings {
                table: "t".into(),
                batch_size: 1000,
                flush_interval: Duration::from_millis(200),
                retry_initial: Duration::from_millis(1),
                retry_max: Duration::from_millis(1),
                shutdown_timeout: Duration::from_secs(1),
            },
            Shutdown::new(),
            metrics.clone(),
        );
        handles.push(std::thread::spawn(move || w.run()));
    }
    drop(ack_tx);
    let start = Instant::now();
    let mut decoder = Decoder::new();
    let mut tracker = OffsetTracker::new();
    let take_acks = |tracker: &mut OffsetTracker| {
        for ack in ack_rx.try_iter() {
            for c in ack {
                tracker.complete(c);
            }
        }
    };
    // As the consumer does: reads of 256 messages, rows staged per writer
    // and sent as chunks, the rest of every chunk at the end of a read.
    let unnamed = Topic::named("");
    for (read, ms) in msgs.chunks(256).enumerate() {
        for (j, m) in ms.iter().enumerate() {
            let i = read * 256 + j;
            let (p, o) = ((i % 8) as i32, i as i64);
            // The topic `Envelope::upsert` puts its rows in.
            tracker.register(Coord::new(Part::new(unnamed, p), o));
            let row = decoder.decode(m).unwrap();
            if let Some(w) = router.stage(Envelope::upsert(p, o, row)) {
                loop {
                    match router.send(w, Duration::from_millis(10)) {
                        Ok(()) => break,
                        Err(RouteError::Full) => take_acks(&mut tracker),
                        Err(_) => panic!("writer gone"),
                    }
                }
            }
        }
        while let Some(w) = router.next_staged() {
            match router.send(w, Duration::from_millis(10)) {
                Ok(()) => {}
                Err(RouteError::Full) => take_acks(&mut tracker),
                Err(_) => panic!("writer gone"),
            }
        }
    }
    drop(router);
    for ack in ack_rx.iter() {
        for c in ack {
            tracker.complete(c);
        }
    }
    let elapsed = start.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(tracker.in_flight(), 0);
    elapsed
}

criterion_group!(
    benches,
    decode,
    statement_build,
    offset_tracker,
    latency_metrics,
    pipeline
);
criterion_main!(benches);
