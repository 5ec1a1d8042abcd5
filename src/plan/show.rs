//! The plan as `check` prints it: a head line, then one line per column.

use super::{Absent, Feed, Plan};
use crate::config::{KeyFrom, Mode};

impl Plan {
    /// What the route does, in one line.
    pub(crate) fn head(&self) -> String {
        let mode = match self.mode {
            Mode::Upsert if self.partial => "partial upsert",
            m => m.as_str(),
        };
        let key_from = match self.key_from {
            KeyFrom::Value => "",
            KeyFrom::Key => " from the Kafka key",
        };
        let tombstones = if self.delete_on_tombstone {
            "tombstones delete"
        } else {
            "tombstones skipped"
        };
        format!(
            "{} into {}: {mode} by ({}){key_from}; {tombstones}",
            self.route,
            self.table,
            self.key.join(", ")
        )
    }

    /// One line per column: `column <- source (conversion)`, or what the
    /// column gets without a source.
    pub(crate) fn column_lines(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| match &c.feed {
                Feed::From {
                    source,
                    conversion,
                    when_absent,
                } => {
                    let absent = match when_absent {
                        Absent::Refuse => "required",
                        Absent::Default => "default when absent",
                        Absent::LeaveAlone => "left alone when absent",
                    };
                    format!("{} <- {source} ({conversion}; {absent})", c.column)
                }
                Feed::Default => format!("{}: default", c.column),
                Feed::LeftAlone => format!("{}: left alone", c.column),
                Feed::Generated => format!("{}: generated", c.column),
            })
            .collect()
    }
}
