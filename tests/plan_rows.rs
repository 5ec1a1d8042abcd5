//! The orders default route through the general plan (issue #23): the
//! plan-driven decoder and statement builder against the hard-wired ones,
//! written into two fresh tables on the real server and compared column by
//! column as the server prints them. Until the writers use the plan, this is
//! what shows that switching them over changes nothing the table stores.

mod common;

use common::*;
use kafka_mysql_sink::config::Config;
use kafka_mysql_sink::internals::{
    describe_table, ensure_table, server_info, Decoder, Meta, PlanDecoder, PlanRow, PlanStatements,
    Row, UpsertBuilder,
};
use mysql::prelude::Queryable;

/// Messages both decoders accept, in the shapes producers send: the
/// generator's orders in three versions, then absent and null fields,
/// escapes, unusual numbers and whitespace, for ids of their own and for
/// ids the versions wrote.
fn messages() -> Vec<Vec<String>> {
    let mut rounds: Vec<Vec<String>> = (0..3)
        .map(|v| (0..600).map(|i| order(i, v).0).collect())
        .collect();
    let id = order_id;
    let mut odd = Vec::new();
    for i in 0..200u64 {
        let k = 1000 + i;
        odd.extend([
            format!(r#"{{"id":"{}","order_id":"min-{i}"}}"#, id(k)),
            format!(
                r#"{{"id":"{}","order_id":"it's \"q\" \\ \u00e9\n{i}","quantity":null,"unit_price":1.5e1,"total_value":-0.0,"processed_at":null}}"#,
                id(k + 500)
            ),
            format!(
                r#" {{ "order_id" : "ws" , "id" : "{}" , "quantity" : 7 , "unit_price" : 12.50 , "total_value" : 0.12499999999999999999 , "extra" : {{"n":[1,2]}} }} "#,
                id(k + 1000)
            ),
            // Ids the generator's versions wrote: an update to fewer fields
            // resets the others to their defaults on both paths.
            format!(r#"{{"id":"{}","order_id":"reset-{i}","processed_at":17}}"#, id(i)),
            format!(
                r#"{{"id":"{}","order_id":"big","quantity":-2147483648,"unit_price":99999999.99,"total_value":"#,
                id(i + 200)
            ) + "1E+2}",
        ]);
    }
    rounds.push(odd);
    rounds
}

/// Each column of `table` as the server prints it, in key order.
fn stored(conn: &mut mysql::Conn, db: &str, table: &str) -> Vec<Vec<Option<String>>> {
    conn.query_map(
        format!(
            "SELECT id, order_id, CAST(quantity AS CHAR), CAST(unit_price AS CHAR), \
             CAST(total_value AS CHAR), CAST(processed_at AS CHAR) FROM `{db}`.`{table}` \
             ORDER BY id"
        ),
        |row: mysql::Row| -> Vec<Option<String>> {
            (0..6)
                .map(|k| row.get::<Option<String>, _>(k).flatten())
                .collect()
        },
    )
    .unwrap()
}

#[test]
fn the_default_route_through_the_plan_stores_what_the_hard_wired_path_stores() {
    let mut conn = mysql();
    let db = fresh_db(&mut conn, "planrows");
    conn.query_drop(
        "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')",
    )
    .unwrap();
    ensure_table(&mut conn, &db, "hard").unwrap();
    ensure_table(&mut conn, &db, "plan").unwrap();
    let info = server_info(&mut conn).unwrap();
    let table = describe_table(&mut conn, &db, "plan", &info.version)
        .unwrap()
        .expect("the plan table exists");
    let mut plan = PlanDecoder::for_default_route(&Config::default(), &table).unwrap();
    let mut hard = Decoder::new();
    let mut upserts = UpsertBuilder::new(&db, "hard", info.dialect);
    let mut statements = PlanStatements::new(plan.shape(), info.dialect);
    // Small statements as well as large ones, so that both builders split.
    let budgets = [info.statement_budget(), 2_000];
    let mut written = 0;
    for (round, payloads) in messages().iter().enumerate() {
        let budget = budgets[round % 2];
        let rows: Vec<Row> = payloads
            .iter()
            .map(|p| hard.decode(p.as_bytes()).expect(p))
            .collect();
        let planned: Vec<PlanRow> = payloads
            .iter()
            .map(|p| plan.decode(p.as_bytes(), &Meta::default(), false).expect(p))
            .collect();
        for chunk in rows.chunks(250) {
            let mut at = 0;
            while at < chunk.len() {
                let (n, sql) = upserts.build(&chunk[at..], budget).unwrap();
                conn.query_drop(sql).unwrap();
                at += n;
            }
        }
        for chunk in planned.chunks(250) {
            let mut at = 0;
            while at < chunk.len() {
                let (n, sql) = statements.build_insert(&chunk[at..], budget).unwrap();
                assert!(sql.len() <= budget);
                conn.query_drop(sql).unwrap();
                at += n;
            }
        }
        written += payloads.len();
    }
    let (a, b) = (
        stored(&mut conn, &db, "hard"),
        stored(&mut conn, &db, "plan"),
    );
    assert_eq!(a.len(), 1200, "{} rows from {written} messages", a.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    assert_eq!(a.len(), b.len());
    // And the generator's expectations hold for the ids the odd round left
    // alone (version 2 is the last they saw).
    let exp = order(599, 2).1;
    let row = b
        .iter()
        .find(|r| r[0].as_deref() == Some(exp.id.as_str()))
        .unwrap();
    assert_eq!(row[3].as_deref(), Some(exp.unit_price.as_str()));
    drop_db(&mut conn, &db);
}
