use super::*;
use crate::decode::PlanRowBuilder;

fn shape(mode: WriteMode, key: &[usize]) -> PlanShape {
    PlanShape {
        table: "`db`.`t`".into(),
        columns: vec!["tenant_id".into(), "id".into(), "qty".into(), "note".into()],
        key: key.to_vec(),
        mode,
    }
}

/// A row from cells written as `'x'`, `DEFAULT` or `-` (absent).
fn row(cells: &[&str]) -> PlanRow {
    let mut b = PlanRowBuilder::default();
    for c in cells {
        match *c {
            "DEFAULT" => b.push_default(),
            "-" => b.push_absent(),
            v => {
                b.text().push_str(v);
                b.end_value();
            }
        }
    }
    b.finish(&[], None)
}

#[test]
fn upserts_in_both_dialects_never_update_the_key() {
    let rows = [
        row(&["1", "'a'", "5", "DEFAULT"]),
        row(&["2", "'b'", "6", "NULL"]),
    ];
    let mut b = PlanStatements::new(&shape(WriteMode::Upsert, &[0, 1]), Dialect::ValuesFunction);
    let (n, sql) = b.build_insert(&rows, usize::MAX).unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        sql,
        "INSERT INTO `db`.`t` (`tenant_id`,`id`,`qty`,`note`) VALUES (1,'a',5,DEFAULT),(2,'b',6,NULL) \
         ON DUPLICATE KEY UPDATE `qty`=VALUES(`qty`),`note`=VALUES(`note`)"
    );
    let mut b = PlanStatements::new(&shape(WriteMode::Upsert, &[0, 1]), Dialect::RowAlias);
    let (_, sql) = b.build_insert(&rows, usize::MAX).unwrap();
    assert_eq!(
        sql,
        "INSERT INTO `db`.`t` (`tenant_id`,`id`,`qty`,`note`) VALUES (1,'a',5,DEFAULT),(2,'b',6,NULL) \
         AS `new` ON DUPLICATE KEY UPDATE `qty`=`new`.`qty`,`note`=`new`.`note`"
    );
}

#[test]
fn insert_mode_is_a_plain_insert() {
    let rows = [row(&["1", "'a'", "5", "DEFAULT"])];
    let mut b = PlanStatements::new(&shape(WriteMode::Insert, &[1]), Dialect::RowAlias);
    let (_, sql) = b.build_insert(&rows, usize::MAX).unwrap();
    assert_eq!(
        sql,
        "INSERT INTO `db`.`t` (`tenant_id`,`id`,`qty`,`note`) VALUES (1,'a',5,DEFAULT)"
    );
}

#[test]
fn partial_rows_share_a_statement_only_with_rows_of_the_same_columns() {
    let rows = [
        row(&["1", "'a'", "5", "-"]),
        row(&["1", "'b'", "6", "-"]),
        row(&["1", "'c'", "-", "'n'"]),
        row(&["1", "'d'", "-", "-"]),
    ];
    let mut b = PlanStatements::new(&shape(WriteMode::Upsert, &[0, 1]), Dialect::ValuesFunction);
    let mut texts = Vec::new();
    let mut at = 0;
    while at < rows.len() {
        let (n, sql) = b.build_insert(&rows[at..], usize::MAX).unwrap();
        texts.push(sql.to_owned());
        at += n;
    }
    assert_eq!(
        texts,
        [
            "INSERT INTO `db`.`t` (`tenant_id`,`id`,`qty`) VALUES (1,'a',5),(1,'b',6) \
             ON DUPLICATE KEY UPDATE `qty`=VALUES(`qty`)",
            "INSERT INTO `db`.`t` (`tenant_id`,`id`,`note`) VALUES (1,'c','n') \
             ON DUPLICATE KEY UPDATE `note`=VALUES(`note`)",
            // Nothing but the key: a duplicate changes nothing.
            "INSERT INTO `db`.`t` (`tenant_id`,`id`) VALUES (1,'d') \
             ON DUPLICATE KEY UPDATE `tenant_id`=`tenant_id`",
        ]
    );
}

#[test]
fn statements_stay_within_the_budget() {
    let rows: Vec<PlanRow> = (0..10)
        .map(|i| row(&["1", &format!("'{i}'"), "5", "NULL"]))
        .collect();
    let mut b = PlanStatements::new(&shape(WriteMode::Upsert, &[0, 1]), Dialect::ValuesFunction);
    let whole = b.build_insert(&rows, usize::MAX).unwrap().1.len();
    let limit = whole - 20;
    let (n, sql) = b.build_insert(&rows, limit).unwrap();
    assert!(n < 10 && n > 0 && sql.len() <= limit, "{n} {}", sql.len());
    let err = b.build_insert(&rows, 50).unwrap_err();
    assert!(matches!(
        err,
        PlanBuildError::Build(BuildError::RowTooLarge { .. })
    ));
    let mut d = PlanStatements::new(&shape(WriteMode::Upsert, &[1]), Dialect::ValuesFunction);
    let (n, sql) = d.build_delete(&rows, 60).unwrap();
    assert!(n > 0 && n < 10 && sql.len() <= 60, "{n} {sql}");
}

#[test]
fn updates_set_what_the_row_has_where_its_key_is() {
    let mut b = PlanStatements::new(&shape(WriteMode::Update, &[0, 1]), Dialect::ValuesFunction);
    let sql = b
        .build_update(&row(&["1", "'a'", "-", "DEFAULT"]), usize::MAX)
        .unwrap();
    assert_eq!(
        sql,
        Some("UPDATE `db`.`t` SET `note`=DEFAULT WHERE `tenant_id`=1 AND `id`='a'")
    );
    assert_eq!(
        b.build_update(&row(&["1", "'a'", "-", "-"]), usize::MAX)
            .unwrap(),
        None
    );
    let err = b
        .build_update(&row(&["-", "'a'", "5", "-"]), usize::MAX)
        .unwrap_err();
    assert_eq!(
        err,
        PlanBuildError::KeyMissing {
            column: "tenant_id".into()
        }
    );
}

#[test]
fn deletes_by_one_column_or_a_composite_key() {
    let rows = [row(&["1", "'a'", "-", "-"]), row(&["2", "'b'", "-", "-"])];
    let mut b = PlanStatements::new(&shape(WriteMode::Upsert, &[0, 1]), Dialect::ValuesFunction);
    assert_eq!(
        b.build_delete(&rows, usize::MAX).unwrap(),
        (
            2,
            "DELETE FROM `db`.`t` WHERE (`tenant_id`,`id`) IN ((1,'a'),(2,'b'))"
        )
    );
    let mut b = PlanStatements::new(&shape(WriteMode::Upsert, &[1]), Dialect::ValuesFunction);
    assert_eq!(
        b.build_delete(&rows, usize::MAX).unwrap(),
        (2, "DELETE FROM `db`.`t` WHERE `id` IN ('a','b')")
    );
}
