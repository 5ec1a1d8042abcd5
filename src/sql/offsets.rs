//! The offsets table's statements: who owns a partition (its generation)
//! and, in exactly-once mode, the next offset to read.

use super::{push_str_literal, qualified};
use crate::types::{Coord, Part};

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
    `log_id` VARCHAR(255) NULL,
    `reset_to` BIGINT NULL,
    `updated_at` TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (`consumer_group`, `topic`, `kafka_partition`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        qualified(db, table)
    )
}

/// Columns later versions added to the offsets table, with their
/// definitions, for tables created before them: the id of the topic the
/// offsets belong to, and a start decided at a claim that Kafka has not
/// confirmed yet (see `source::rebalance`).
pub(crate) const LATER_COLUMNS: [(&str, &str); 2] =
    [("log_id", "VARCHAR(255) NULL"), ("reset_to", "BIGINT NULL")];

/// Adds one of [`LATER_COLUMNS`] to the offsets table `table` (quoted).
pub(crate) fn add_offsets_column(table: &str, column: &str, definition: &str) -> String {
    format!("ALTER TABLE {table} ADD COLUMN `{column}` {definition}")
}

/// Which rows of the offsets table a statement is about.
#[derive(Debug, Clone)]
pub(crate) struct OffsetsRows<'a> {
    /// The table, quoted and qualified.
    pub(crate) table: &'a str,
    pub(crate) group: &'a str,
}

impl OffsetsRows<'_> {
    /// Takes the partitions: a new generation for each (a first one for a
    /// partition never seen), with `owner` as the owner. The row lock it
    /// takes waits for every transaction still holding that row, which is
    /// what fences their writers off. A partition's first generation is
    /// `first`, a number no earlier row of it can have had (the claim
    /// time), so that a row deleted and claimed again does not give old
    /// generations back.
    pub(crate) fn claim(&self, partitions: &[Part], owner: &str, first: u64) -> String {
        let mut buf = String::from("INSERT INTO ");
        buf.push_str(self.table);
        buf.push_str(" (`consumer_group`,`topic`,`kafka_partition`,`generation`,`owner`) VALUES ");
        for (i, p) in partitions.iter().enumerate() {
            if i > 0 {
                buf.push(',');
            }
            self.push_row_head(&mut buf, *p);
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

    /// Sets the partitions' next offsets for `owner` (an operator's reset):
    /// a new generation for each, which fences off every writer that read
    /// rows under an earlier claim, as a claim does (see [`Self::claim`]).
    /// With `marks` (the table has [`LATER_COLUMNS`]), each offset is also
    /// left pending until Kafka confirms it, and the log's ids recorded
    /// where known.
    pub(crate) fn reset(
        &self,
        next: &[Coord],
        owner: &str,
        first: u64,
        marks: Option<Option<&str>>,
    ) -> String {
        let mut buf = String::from("INSERT INTO ");
        buf.push_str(self.table);
        buf.push_str(
            " (`consumer_group`,`topic`,`kafka_partition`,`next_offset`,`generation`,`owner`",
        );
        if marks.is_some() {
            buf.push_str(",`reset_to`,`log_id`");
        }
        buf.push_str(") VALUES ");
        for (i, c) in next.iter().enumerate() {
            if i > 0 {
                buf.push(',');
            }
            self.push_row_head(&mut buf, c.part);
            buf.push_str(itoa::Buffer::new().format(c.offset));
            buf.push(',');
            buf.push_str(itoa::Buffer::new().format(first));
            buf.push(',');
            push_str_literal(&mut buf, owner);
            if let Some(log_id) = marks {
                buf.push(',');
                buf.push_str(itoa::Buffer::new().format(c.offset));
                buf.push(',');
                match log_id {
                    Some(id) => push_str_literal(&mut buf, id),
                    None => buf.push_str("NULL"),
                }
            }
            buf.push(')');
        }
        buf.push_str(
            " ON DUPLICATE KEY UPDATE `next_offset` = VALUES(`next_offset`), \
             `generation` = `generation` + 1, `owner` = VALUES(`owner`)",
        );
        if marks.is_some() {
            buf.push_str(
                ", `reset_to` = VALUES(`reset_to`), \
                 `log_id` = COALESCE(VALUES(`log_id`), `log_id`)",
            );
        }
        buf
    }

    /// The log ids and pending starts of the partitions' rows, each found
    /// by its whole primary key (as [`Self::read`], so that under any
    /// isolation level it touches those rows alone). `partitions` is not
    /// empty.
    pub(crate) fn marks(&self, partitions: &[Part]) -> String {
        let mut buf = String::from("SELECT v.t, v.p, o.`log_id`, o.`reset_to` FROM ");
        self.push_lookup(&mut buf, partitions);
        buf
    }

    /// Records, per partition, its pending start (`None` clears it) and
    /// the log's ids its offsets now belong to (`None`: unknown, stored
    /// as NULL);
    /// one statement per partition, as [`Self::set_next`].
    pub(crate) fn set_marks(&self, marks: &[(Part, Option<i64>, Option<&str>)]) -> String {
        self.updates(marks, |buf, (partition, reset_to, log_id)| {
            buf.push_str("`log_id` = ");
            match log_id {
                Some(id) => push_str_literal(buf, id),
                None => buf.push_str("NULL"),
            }
            buf.push_str(", `reset_to` = ");
            match reset_to {
                Some(o) => buf.push_str(itoa::Buffer::new().format(*o)),
                None => buf.push_str("NULL"),
            }
            (*partition, None)
        })
    }

    /// Clears the partitions' next offsets, one statement each.
    pub(crate) fn clear_next(&self, partitions: &[Part]) -> String {
        self.updates(partitions, |buf, p| {
            buf.push_str("`next_offset` = NULL");
            (*p, None)
        })
    }

    /// Clears the pending starts of partitions still held at the given
    /// generations, once Kafka confirmed them.
    pub(crate) fn clear_resets(&self, claims: &[(Part, u64)]) -> String {
        self.updates(claims, |buf, (partition, generation)| {
            buf.push_str("`reset_to` = NULL");
            (*partition, Some(*generation))
        })
    }

    /// Every row of the group and `topic`, for people: partition, next
    /// offset, generation, owner, last change, and (with `marks`, the
    /// table's [`LATER_COLUMNS`]) the log's ids.
    pub(crate) fn list(&self, topic: &str, marks: bool) -> String {
        let mut buf = String::from(
            "SELECT `kafka_partition`, `next_offset`, `generation`, `owner`, \
             CAST(`updated_at` AS CHAR), ",
        );
        buf.push_str(if marks {
            "`log_id`, `reset_to`"
        } else {
            "NULL, NULL"
        });
        buf.push_str(" FROM ");
        buf.push_str(self.table);
        buf.push_str(" WHERE `consumer_group` = ");
        push_str_literal(&mut buf, self.group);
        buf.push_str(" AND `topic` = ");
        push_str_literal(&mut buf, topic);
        buf.push_str(" ORDER BY `kafka_partition`");
        buf
    }

    /// `(group, topic, partition,`: the start of a row's VALUES.
    fn push_row_head(&self, buf: &mut String, part: Part) {
        buf.push('(');
        push_str_literal(buf, self.group);
        buf.push(',');
        push_str_literal(buf, part.topic.name());
        buf.push(',');
        buf.push_str(itoa::Buffer::new().format(part.partition));
        buf.push(',');
    }

    /// The condition naming one partition's row by its whole primary key.
    fn push_key(&self, buf: &mut String, part: Part) {
        buf.push_str(" WHERE `consumer_group` = ");
        push_str_literal(buf, self.group);
        buf.push_str(" AND `topic` = ");
        push_str_literal(buf, part.topic.name());
        buf.push_str(" AND `kafka_partition` = ");
        buf.push_str(itoa::Buffer::new().format(part.partition));
    }

    /// `(SELECT 't' AS t, 0 AS p UNION ALL ...) AS v STRAIGHT_JOIN <table>
    /// AS o ON <o's primary key is the group's, v.t and v.p>`: the table's
    /// rows of the listed partitions, each found by a lookup of its whole
    /// primary key (`eq_ref`), so that a locking read locks those rows and
    /// no other.
    fn push_lookup(&self, buf: &mut String, partitions: &[Part]) {
        buf.push('(');
        for (i, p) in partitions.iter().enumerate() {
            if i > 0 {
                buf.push_str(" UNION ALL ");
            }
            buf.push_str("SELECT ");
            push_str_literal(buf, p.topic.name());
            buf.push_str(" AS t, ");
            buf.push_str(itoa::Buffer::new().format(p.partition));
            buf.push_str(" AS p");
        }
        buf.push_str(") AS v STRAIGHT_JOIN ");
        buf.push_str(self.table);
        buf.push_str(" AS o ON o.`consumer_group` = ");
        push_str_literal(buf, self.group);
        buf.push_str(" AND o.`topic` = v.t AND o.`kafka_partition` = v.p");
    }

    /// Reads generation and next offset of the partitions, locking their
    /// rows until the transaction ends: shared where several writers check
    /// the same partitions (at-least-once), exclusive where one writer
    /// also moves the next offset (exactly-once). `partitions` are sorted
    /// and distinct, so that every transaction locks in the same order.
    ///
    /// Each row is found by its whole primary key, so the lock is on it
    /// alone. `kafka_partition IN (...)` over a few dozen partitions is
    /// planned as a scan of the group's and topic's rows, which locks all
    /// of them: every exactly-once writer then waited for every other's
    /// transaction (measured: writers serialised as soon as batches held
    /// rows of many partitions). Up to [`LOOKUPS_PER_STATEMENT`]
    /// partitions go in one statement; more make several, one result set
    /// each.
    pub(crate) fn read(&self, partitions: &[Part], exclusive: bool) -> String {
        if partitions.is_empty() {
            return "DO 0".into();
        }
        let lock = if exclusive {
            " FOR UPDATE"
        } else {
            " LOCK IN SHARE MODE"
        };
        let mut buf = String::new();
        for (i, chunk) in partitions.chunks(LOOKUPS_PER_STATEMENT).enumerate() {
            if i > 0 {
                buf.push_str("; ");
            }
            // Each row answers with the topic and partition it was asked
            // for, not those MySQL stores: the same under the table's own
            // collation, yet only the asked-for name is the one the
            // caller compares with.
            if let [p] = chunk {
                buf.push_str("SELECT ");
                push_str_literal(&mut buf, p.topic.name());
                buf.push(',');
                buf.push_str(itoa::Buffer::new().format(p.partition));
                buf.push_str(", `generation`, `next_offset` FROM ");
                buf.push_str(self.table);
                self.push_key(&mut buf, *p);
            } else {
                buf.push_str("SELECT v.t, v.p, o.`generation`, o.`next_offset` FROM ");
                self.push_lookup(&mut buf, chunk);
            }
            buf.push_str(lock);
        }
        buf
    }

    /// Sets each partition's next offset to read: one statement per
    /// partition, each by the row's whole primary key, so that it locks
    /// that row alone (see [`Self::read`]) and passes `sql_safe_updates`,
    /// which refuses a join with a derived table. Run with
    /// [`crate::fence::run_multi`], which sees every statement's error.
    pub(crate) fn set_next(&self, next: &[Coord]) -> String {
        self.updates(next, |buf, c| {
            buf.push_str("`next_offset` = ");
            buf.push_str(itoa::Buffer::new().format(c.offset));
            (c.part, None)
        })
    }

    /// One `UPDATE` per item, `;`-separated, each of one row named by its
    /// whole primary key (see [`Self::set_next`]): `set` writes the SET
    /// list and says which partition's row, and at which generation only
    /// (`None`: any). `DO 0` for none.
    fn updates<T>(
        &self,
        items: &[T],
        mut set: impl FnMut(&mut String, &T) -> (Part, Option<u64>),
    ) -> String {
        if items.is_empty() {
            return "DO 0".into();
        }
        let mut buf = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                buf.push_str("; ");
            }
            buf.push_str("UPDATE ");
            buf.push_str(self.table);
            buf.push_str(" SET ");
            let (partition, generation) = set(&mut buf, item);
            self.push_key(&mut buf, partition);
            if let Some(g) = generation {
                buf.push_str(" AND `generation` = ");
                buf.push_str(itoa::Buffer::new().format(g));
            }
        }
        buf
    }
}

/// Partitions looked up by one ownership-read statement (see
/// [`OffsetsRows::read`]): enough for a batch of any common topic in one,
/// few enough to keep each statement small for the parser.
const LOOKUPS_PER_STATEMENT: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::{at, p};

    fn rows() -> OffsetsRows<'static> {
        OffsetsRows {
            table: "`d`.`orders_offsets`",
            group: "g",
        }
    }

    #[test]
    fn statements_name_their_rows() {
        assert_eq!(
            rows().read(&[p(5)], false),
            "SELECT 't',5, `generation`, `next_offset` FROM `d`.`orders_offsets` \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` = 5 \
             LOCK IN SHARE MODE"
        );
        assert_eq!(
            rows().read(&[p(0), p(3)], true),
            "SELECT v.t, v.p, o.`generation`, o.`next_offset` FROM \
             (SELECT 't' AS t, 0 AS p UNION ALL SELECT 't' AS t, 3 AS p) AS v \
             STRAIGHT_JOIN `d`.`orders_offsets` AS o \
             ON o.`consumer_group` = 'g' AND o.`topic` = v.t AND o.`kafka_partition` = v.p \
             FOR UPDATE"
        );
        assert_eq!(
            rows().set_next(&[at(4, 9)]),
            "UPDATE `d`.`orders_offsets` SET `next_offset` = 9 \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` = 4"
        );
        assert_eq!(
            rows().set_next(&[at(0, 10), at(3, 7)]),
            "UPDATE `d`.`orders_offsets` SET `next_offset` = 10 \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` = 0; \
             UPDATE `d`.`orders_offsets` SET `next_offset` = 7 \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` = 3"
        );
        // Many partitions: one statement per LOOKUPS_PER_STATEMENT.
        let many: Vec<Part> = (0..600).map(p).collect();
        let text = rows().read(&many, true);
        assert_eq!(text.matches("FOR UPDATE").count(), 3);
        assert_eq!(text.matches(" AS p").count(), 600);
        assert_eq!(rows().read(&[], true), "DO 0");
        assert_eq!(rows().set_next(&[]), "DO 0");
        let claim = rows().claim(&[p(2)], "host:1", 1_700_000_000_000);
        assert!(
            claim.contains("('g','t',2,1700000000000,'host:1')"),
            "{claim}"
        );
        assert!(claim.ends_with("`generation` = `generation` + 1, `owner` = VALUES(`owner`)"));
        let reset = rows().reset(&[at(1, 0), at(4, 17)], "op", 5, None);
        assert!(
            reset.contains("('g','t',1,0,5,'op'),('g','t',4,17,5,'op')"),
            "{reset}"
        );
        assert!(reset.ends_with(
            "`next_offset` = VALUES(`next_offset`), `generation` = `generation` + 1, \
             `owner` = VALUES(`owner`)"
        ));
        assert_eq!(
            rows().set_marks(&[(p(2), Some(40), Some("id+/")), (p(3), None, Some("id+/"))]),
            "UPDATE `d`.`orders_offsets` SET `log_id` = 'id+/', `reset_to` = 40 \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` = 2; \
             UPDATE `d`.`orders_offsets` SET `log_id` = 'id+/', `reset_to` = NULL \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` = 3"
        );
        assert!(rows()
            .set_marks(&[(p(2), None, None)])
            .contains("SET `log_id` = NULL, `reset_to` = NULL"));
        assert_eq!(
            rows().clear_next(&[p(3)]),
            "UPDATE `d`.`orders_offsets` SET `next_offset` = NULL \
             WHERE `consumer_group` = 'g' AND `topic` = 't' AND `kafka_partition` = 3"
        );
        assert!(rows()
            .clear_resets(&[(p(1), 77)])
            .ends_with("`kafka_partition` = 1 AND `generation` = 77"));
        let marked = rows().reset(&[at(1, 9)], "op", 5, Some(Some("tid")));
        assert!(marked.contains("('g','t',1,9,5,'op',9,'tid')"), "{marked}");
        assert!(marked.ends_with("`log_id` = COALESCE(VALUES(`log_id`), `log_id`)"));
        assert!(rows().list("t", true).ends_with(
            "WHERE `consumer_group` = 'g' AND `topic` = 't' ORDER BY `kafka_partition`"
        ));
    }
}
