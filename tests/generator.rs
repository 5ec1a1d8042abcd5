//! The test order generator itself (tests/common/orders.rs): unique,
//! scattered ids, and payloads that decode to the rows the tests expect.
//! Needs neither MariaDB nor Kafka.

#[path = "common/orders.rs"]
mod orders;

use kafka_mysql_sink::internals::Decoder;
use orders::{order, order_id};

#[test]
fn ids_are_unique_and_unordered() {
    let ids: Vec<String> = (0..10_000).map(order_id).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert!(ids.iter().all(|id| id.len() == 36));
    let ascending = ids.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(
        (4_000..6_000).contains(&ascending),
        "{ascending} ascending pairs"
    );
}

#[test]
fn payload_decodes_to_the_expected_row() {
    let mut d = Decoder::new();
    for i in [0u64, 1, 6, 7, 123_456] {
        let (payload, exp) = order(i, 3);
        let row = d.decode(payload.as_bytes()).unwrap();
        assert_eq!(row.id(), exp.id);
        assert_eq!(row.id().len(), 36);
        assert_eq!(row.order_id(), exp.order_id);
        assert_eq!(row.quantity(), exp.quantity.to_string());
        assert_eq!(row.unit_price(), exp.unit_price);
        assert_eq!(row.total_value(), exp.total_value);
        assert_eq!(
            row.processed_at().map(str::to_owned),
            exp.processed_at.map(|p| p.to_string())
        );
    }
}
