//! The offsets table's statements: who owns a partition (its generation)
//! and, in exactly-once mode, the next offset to read.

use super::{push_str_literal, qualified};
use crate::types::Coord;

/// The offsets table: one row per group, topic and partition.
pub(crate) fn create_offsets_table(db: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    `consumer_group` VARCHAR(255) NOT NULL,
    `topic` VARCHAR(249) NOT NULL,
    `kafka_partition` INT NOT NULL,
    `next_offset` BIGINT NULL,
    `generation` BIGINT NOT NULL,
    `owner` VARCHAR(255) NOT NULL,
    `updated_at` TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (`consumer_group`, `topic`, `kafka_partition`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        qualified(db, table)
    )
}

/// Which rows of the offsets table a statement is about.
#[derive(Debug, Clone)]
pub(crate) struct OffsetsRows<'a> {
    /// The table, quoted and qualified.
    pub(crate) table: &'a str,
    pub(crate) group: &'a str,
    pub(crate) topic: &'a str,
}

impl OffsetsRows<'_> {
    fn push_where(&self, buf: &mut String, partitions: &[i32]) {
        buf.push_str(" WHERE `consumer_group` = ");
        push_str_literal(buf, self.group);
        buf.push_str(" AND `topic` = ");
        push_str_literal(buf, self.topic);
        buf.push_str(" AND `kafka_partition` IN (");
        push_list(buf, partitions);
        buf.push(')');
    }

    /// Takes the partitions: a new generation for each (a first one for a
    /// partition never seen), with `owner` as the owner. The row lock it
    /// takes waits for every transaction still holding that row, which is
    /// what fences their writers off. A partition's first generation is
    /// `first`, a number no earlier row of it can have had (the claim
    /// time), so that a row deleted and claimed again does not give old
    /// generations back.
    pub(crate) fn claim(&self, partitions: &[i32], owner: &str, first: u64) -> String {
        let mut buf = String::from("INSERT INTO ");
        buf.push_str(self.table);
        buf.push_str(" (`consumer_group`,`topic`,`kafka_partition`,`generation`,`owner`) VALUES ");
        for (i, p) in partitions.iter().enumerate() {
            if i > 0 {
                buf.push(',');
            }
            buf.push('(');
            push_str_literal(&mut buf, self.group);
            buf.push(',');
            push_str_literal(&mut buf, self.topic);
            buf.push(',');
            buf.push_str(itoa::Buffer::new().format(*p));
            buf.push(',');
            buf.push_str(itoa::Buffer::new().format(first));
            buf.push(',');
            push_str_literal(&mut buf, owner);
            buf.push(')');
        }
        // VALUES() is deprecated on MySQL 8 but still works there, and it is
        // the only spelling MariaDB knows; this runs once per assignment.
        buf.push_str(
            " ON DUPLICATE KEY UPDATE `generation` = `generation` + 1, `owner` = VALUES(`owner`)",
        );
        buf
    }

    /// Reads generation and next offset of the partitions, locking their
    /// rows until the transaction ends: shared where several writers check
    /// the same partitions (at-least-once), exclusive where one writer
    /// also moves the next offset (exactly-once).
    pub(crate) fn read(&self, partitions: &[i32], exclusive: bool) -> String {
        let mut buf = String::from("SELECT `kafka_partition`, `generation`, `next_offset` FROM ");
        buf.push_str(self.table);
        self.push_where(&mut buf, partitions);
        buf.push_str(if exclusive {
            " FOR UPDATE"
        } else {
            " LOCK IN SHARE MODE"
        });
        buf
    }

    /// Sets each partition's next offset to read.
    pub(crate) fn set_next(&self, next: &[Coord]) -> String {
        let mut buf = String::from("UPDATE ");
        buf.push_str(self.table);
        buf.push_str(" SET `next_offset` = CASE `kafka_partition`");
        for c in next {
            buf.push_str(" WHEN ");
            buf.push_str(itoa::Buffer::new().format(c.partition));
            buf.push_str(" THEN ");
            buf.push_str(itoa::Buffer::new().format(c.offset));
        }
        buf.push_str(" END");
        let parts: Vec<i32> = next.iter().map(|c| c.partition).collect();
        self.push_where(&mut buf, &parts);
        buf
    }
}

fn push_list(buf: &mut String, partitions: &[i32]) {
    for (i, p) in partitions.iter().enumerate() {
        if i > 0 {
            buf.push(',');
        }
        buf.push_str(itoa::Buffer::new().format(*p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> OffsetsRows<'static> {
        OffsetsRows {
            table: "`d`.`orders_offsets`",
            group: "g",
            topic: "t",
        }
    }

    #[test]
    fn statements_name_their_rows() {
        assert_eq!(
            rows().read(&[0, 3], false),
            "SELECT `kafka_partition`, `generation`, `next_offset` FROM `d`.`orders_offsets` \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` IN (0,3) \
             LOCK IN SHARE MODE"
        );
        assert!(rows().read(&[1], true).ends_with(" FOR UPDATE"));
        assert_eq!(
            rows().set_next(&[Coord::new(0, 10), Coord::new(3, 7)]),
            "UPDATE `d`.`orders_offsets` SET `next_offset` = CASE `kafka_partition` \
             WHEN 0 THEN 10 WHEN 3 THEN 7 END \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` IN (0,3)"
        );
        let claim = rows().claim(&[2], "host:1", 1_700_000_000_000);
        assert!(
            claim.contains("('g','t',2,1700000000000,'host:1')"),
            "{claim}"
        );
        assert!(claim.ends_with("`generation` = `generation` + 1, `owner` = VALUES(`owner`)"));
    }
}
