//! A table's description as plain data: its columns with their types,
//! nullability, defaults and collations, its primary and unique keys.
//!
//! Read from `information_schema` at start-up (`describe.rs`, beside the
//! other MySQL start-up code) and compiled into a route's plan; nothing here
//! talks to a server, so the plan is tested on descriptions built in code.

mod classify;

pub(crate) use classify::{classify, is_json_check, members};

/// One table as MySQL describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDesc {
    pub database: String,
    pub name: String,
    /// In the table's order (`ORDINAL_POSITION`).
    pub columns: Vec<Column>,
    /// Column names in key order; `None` for a table without one.
    pub primary_key: Option<Vec<String>>,
    /// Every UNIQUE key but the primary key, by index name.
    pub unique_keys: Vec<UniqueKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    pub name: String,
    /// In key order.
    pub columns: Vec<String>,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `DATA_TYPE`, lower case: `int`, `decimal`, `varchar`, `longtext`...
    pub data_type: String,
    /// `COLUMN_TYPE`: `decimal(10,2)`, `enum('a','b')`, `int(10) unsigned`...
    pub column_type: String,
    /// What conversions feed it, decided from the two above.
    pub class: TypeClass,
    /// Digits of DECIMAL, bits of BIT.
    pub precision: Option<u32>,
    pub scale: Option<u32>,
    /// Characters (text) or bytes (binary) at most.
    pub max_length: Option<u64>,
    /// Fractional seconds digits of DATETIME, TIMESTAMP, TIME.
    pub fsp: Option<u8>,
    pub nullable: bool,
    /// The default as `information_schema` words it (MariaDB quotes
    /// strings, MySQL does not); `None` when there is none.
    pub default: Option<String>,
    pub auto_increment: bool,
    /// VIRTUAL or STORED: MySQL computes it, nothing may write it.
    pub generated: bool,
    pub charset: Option<String>,
    pub collation: Option<String>,
    pub unsigned: bool,
}

impl Column {
    /// A NOT NULL column of `data_type` without default, length, collation
    /// or anything else: the start of a description built by hand (the
    /// seed's table before start-up creates it; tests).
    pub(crate) fn new(name: &str, data_type: &str, column_type: &str) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            class: classify(data_type, false),
            precision: None,
            scale: None,
            max_length: None,
            fsp: None,
            nullable: false,
            default: None,
            auto_increment: false,
            generated: false,
            charset: None,
            collation: None,
            unsigned: false,
        }
    }

    /// Whether an insert that leaves the column out is accepted: it has a
    /// default, takes NULL, counts itself, or is computed.
    pub fn fills_itself(&self) -> bool {
        self.default.is_some() || self.nullable || self.auto_increment || self.generated
    }
}

/// What a column holds, as far as feeding it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeClass {
    /// TINYINT … BIGINT; `bits` is the storage width.
    Integer {
        bits: u8,
    },
    Decimal,
    Float,
    Double,
    /// CHAR, VARCHAR, the TEXT family.
    Text,
    /// BINARY, VARBINARY, the BLOB family.
    Binary,
    Date,
    DateTime,
    Timestamp,
    Time,
    Year,
    /// MySQL's JSON, or MariaDB's LONGTEXT with a `json_valid` check.
    Json,
    Enum,
    Set,
    Bit,
    /// Spatial types and anything newer than this code: never written.
    Unsupported,
}

impl TableDesc {
    pub fn column(&self, name: &str) -> Option<&Column> {
        // MySQL column names compare case-insensitively.
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// `db`.`table`, quoted.
    pub fn qualified(&self) -> String {
        crate::sql::qualified(&self.database, &self.name)
    }

    /// The description `sql::create_table` yields, for `check` to plan the
    /// default route before start-up has created the table.
    pub fn seed_orders(database: &str, name: &str) -> TableDesc {
        let col = |name: &str, data_type: &str, column_type: &str| {
            let mut c = Column::new(name, data_type, column_type);
            if c.class == TypeClass::Text {
                c.charset = Some("utf8mb4".into());
                c.collation = Some("utf8mb4_unicode_ci".into());
            }
            c
        };
        let with = |mut c: Column, f: &dyn Fn(&mut Column)| {
            f(&mut c);
            c
        };
        TableDesc {
            database: database.into(),
            name: name.into(),
            columns: vec![
                with(col("id", "varchar", "varchar(36)"), &|c| {
                    c.max_length = Some(36)
                }),
                with(col("order_id", "varchar", "varchar(255)"), &|c| {
                    c.max_length = Some(255)
                }),
                with(col("quantity", "int", "int(11)"), &|c| {
                    c.precision = Some(10);
                    c.scale = Some(0);
                    c.default = Some("1".into());
                }),
                with(col("unit_price", "decimal", "decimal(10,2)"), &|c| {
                    c.precision = Some(10);
                    c.scale = Some(2);
                    c.default = Some("0.00".into());
                }),
                with(col("total_value", "decimal", "decimal(10,2)"), &|c| {
                    c.precision = Some(10);
                    c.scale = Some(2);
                    c.default = Some("0.00".into());
                }),
                with(col("processed_at", "bigint", "bigint(20)"), &|c| {
                    c.precision = Some(19);
                    c.scale = Some(0);
                    c.nullable = true;
                }),
                with(col("created_at", "timestamp", "timestamp"), &|c| {
                    c.fsp = Some(0);
                    c.nullable = true;
                    c.default = Some("current_timestamp()".into());
                }),
                with(col("updated_at", "timestamp", "timestamp"), &|c| {
                    c.fsp = Some(0);
                    c.nullable = true;
                    c.default = Some("current_timestamp()".into());
                }),
            ],
            primary_key: Some(vec!["id".into()]),
            unique_keys: Vec::new(),
        }
    }
}
