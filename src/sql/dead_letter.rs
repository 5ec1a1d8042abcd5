//! The dead-letter table's statements.
//!
//! A dead letter keeps the message as it arrived, so its payload can be as
//! large as `sink.max_payload_bytes`, and travels as hex: twice its size.
//! Inserts are therefore sized by the same statement budget as upserts, and
//! a message too large for any statement is stored truncated, with its
//! length and a SHA-256 of the whole payload in the error text, so that it
//! can be found and told apart from its neighbours.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::{push_bytes_literal, push_str_literal, qualified};
use crate::types::DeadLetter;

/// Longest key the table stores (`message_key VARBINARY(1024)`).
const MAX_KEY_BYTES: usize = 1024;

/// Room kept for the digits of a truncation note, which are only known once
/// the payload's share of the statement is.
const NOTE_SLACK: usize = 32;

/// The dead-letter table: one row per message that could not be written,
/// unique on its Kafka coordinates so a redelivered message is stored once.
/// The topic compares byte for byte, as Kafka's names do (`Orders` and
/// `orders` are two topics, whose letters must not collide).
pub fn create_dlq_table(db: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    `dlq_id` BIGINT AUTO_INCREMENT PRIMARY KEY,
    `topic` VARCHAR(249) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    `kafka_partition` INT NOT NULL,
    `kafka_offset` BIGINT NOT NULL,
    `message_key` VARBINARY(1024) NULL,
    `payload` LONGBLOB NULL,
    `error` TEXT NOT NULL,
    `failed_at` TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY `uq_source` (`topic`, `kafka_partition`, `kafka_offset`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        qualified(db, table)
    )
}

/// A dead-letter table made before its topic compared byte for byte:
/// made to, so that letters of topics whose names differ only in case do
/// not collide on its unique key.
pub(crate) fn dlq_topic_binary(table: &str) -> String {
    format!(
        "ALTER TABLE {table} MODIFY `topic` VARCHAR(249) CHARACTER SET utf8mb4 \
         COLLATE utf8mb4_bin NOT NULL"
    )
}

/// Appends an `INSERT` of as many of `letters` as fit in `budget` bytes,
/// at least one (truncated if it alone does not fit); returns how many it
/// took.
pub(crate) fn push_dead_letter_insert(
    buf: &mut String,
    table: &str,
    letters: &[DeadLetter<'_>],
    budget: usize,
) -> usize {
    // IGNORE: a redelivered dead letter is already there (unique on its
    // coordinates), and no value of ours may fail the insert.
    buf.push_str("INSERT IGNORE INTO ");
    buf.push_str(table);
    buf.push_str(
        " (`topic`,`kafka_partition`,`kafka_offset`,`message_key`,`payload`,`error`) VALUES ",
    );
    let mut taken = 0;
    for l in letters {
        let mark = buf.len();
        if taken > 0 {
            buf.push(',');
        }
        push_letter(buf, l, usize::MAX);
        if buf.len() <= budget {
            taken += 1;
            continue;
        }
        buf.truncate(mark);
        if taken > 0 {
            break;
        }
        // Alone it does not fit: measure it without its payload, and give
        // the payload what is left.
        push_letter(buf, l, 0);
        let room = budget.saturating_sub(buf.len() + NOTE_SLACK) / 2;
        buf.truncate(mark);
        push_letter(buf, l, room);
        taken = 1;
        break;
    }
    taken
}

/// One row of the insert, with at most `payload_limit` bytes of payload.
fn push_letter(buf: &mut String, l: &DeadLetter<'_>, payload_limit: usize) {
    let key = l.env.raw_key().map(|k| &k[..k.len().min(MAX_KEY_BYTES)]);
    let payload = l.env.raw_payload();
    let mut error = l.error.clone();
    let stored = payload.map(|p| {
        if p.len() <= payload_limit {
            return p;
        }
        let digest = Sha256::digest(p);
        let _ = write!(
            error,
            " [payload stored truncated: first {payload_limit} of {} bytes; sha256 ",
            p.len()
        );
        for b in digest {
            let _ = write!(error, "{b:02x}");
        }
        error.push(']');
        &p[..payload_limit]
    });
    buf.push('(');
    push_str_literal(buf, l.env.coord.part.topic.name());
    buf.push(',');
    buf.push_str(itoa::Buffer::new().format(l.env.coord.partition()));
    buf.push(',');
    buf.push_str(itoa::Buffer::new().format(l.env.coord.offset));
    buf.push(',');
    push_bytes_literal(buf, key);
    buf.push(',');
    push_bytes_literal(buf, stored);
    buf.push(',');
    push_str_literal(buf, &error);
    buf.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Envelope, Op, Raw};

    fn letter_env(offset: i64, payload: &[u8]) -> Envelope {
        Envelope {
            coord: crate::types::Coord::new(
                crate::types::Part::new(crate::types::Topic::named("topic"), 0),
                offset,
            ),
            generation: 0,
            timestamp_ms: crate::types::NO_TIMESTAMP,
            target: 0,
            op: Op::Reject("not json".into()),
            raw: Raw::new(Some(b"k"), Some(payload)),
        }
    }

    #[test]
    fn inserts_stay_within_the_budget_and_take_at_least_one_letter() {
        let envs: Vec<Envelope> = (0..40).map(|i| letter_env(i, &[b'x'; 1000])).collect();
        let letters: Vec<DeadLetter<'_>> = envs
            .iter()
            .map(|env| DeadLetter {
                env,
                error: "bad".into(),
            })
            .collect();
        let budget = 10_000;
        let mut start = 0;
        let mut statements = 0;
        while start < letters.len() {
            let mut buf = String::new();
            let n = push_dead_letter_insert(&mut buf, "`d`.`t`", &letters[start..], budget);
            assert!(n >= 1);
            assert!(buf.len() <= budget, "{} > {budget}", buf.len());
            assert!(!buf.contains("truncated"));
            start += n;
            statements += 1;
        }
        // Each letter is ~2 KB of hex: four or so to a statement.
        assert!((8..=14).contains(&statements), "{statements}");
    }

    #[test]
    fn a_letter_too_large_for_any_statement_is_stored_truncated_with_its_length_and_hash() {
        let payload = vec![b'{'; 50_000];
        let env = letter_env(7, &payload);
        let letters = [DeadLetter {
            env: &env,
            error: "bad".into(),
        }];
        let mut buf = String::new();
        let budget = 8192;
        assert_eq!(
            push_dead_letter_insert(&mut buf, "`d`.`t`", &letters, budget),
            1
        );
        assert!(buf.len() <= budget, "{} > {budget}", buf.len());
        let digest: String = Sha256::digest(&payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(buf.contains(&digest), "the whole payload's hash");
        assert!(buf.contains("of 50000 bytes"), "{buf}");
    }
}
