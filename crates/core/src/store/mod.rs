//! The SQL state store: SQLite (one file, WAL, created on first use) or PostgreSQL, chosen by
//! the URL. Each dialect has its own migrations; queries are written once with `?` placeholders
//! and run on either pool through [`dialect!`], which numbers them for PostgreSQL and adds
//! `FOR UPDATE SKIP LOCKED` where a query marks `/*LOCK*/`. No `sqlx::Any`.
//!
//! The store never reads the clock: every time is an argument, so tests are deterministic.

mod activity;
mod alerts;
mod delivery;
mod group_commit;
mod secrets;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use activity::{EventCount, EventKind, EventRow, FlowRunRow, LinkEdge, NewEvent, WebhookLogRow};
pub use alerts::{AlertRow, FlowProgress};
pub use delivery::{
    Claimed, Committed, DeadLetter, Finish, FlowCounts, IntakeWrite, LinkKey, LinkRow, LinkSide, Outcome, Queued,
};
pub use group_commit::{CommitError, GroupCommit};
pub use secrets::SealedSecret;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store URL `{0}` is neither sqlite:// nor postgres://")]
    UnknownScheme(String),
    #[error("cannot open the state store: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the state store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("stored record {id} is not valid JSON: {source}")]
    Corrupt { id: i64, source: serde_json::Error },
}

impl StoreError {
    /// Whether the store itself is unreachable (exit code 3), rather than a query failing.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Connect(_))
    }
}

/// Connections to the state store, migrated to the current schema.
#[derive(Clone, Debug)]
pub enum Store {
    /// Writes on one connection, reads on others: in WAL mode they read while it writes.
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the dialect's pool and `$sql` a function that adapts a
/// query text to the dialect. The body is type-checked once per dialect. `dialect!(read ...)`
/// is for a body that only reads: on SQLite it runs on a reader connection, not the writer.
macro_rules! dialect {
    (@on $sqlite_pool:ident, $store:expr, |$pool:ident, $sql:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite { $sqlite_pool: $pool, .. } => {
                #[allow(unused_variables)]
                let $sql = |text: &'static str| $crate::store::for_sqlite(text);
                $body
            }
            $crate::store::Store::Postgres($pool) => {
                #[allow(unused_variables)]
                let $sql = |text: &'static str| $crate::store::for_postgres(text);
                $body
            }
        }
    };
    (read $store:expr, |$pool:ident, $sql:ident| $body:expr) => {
        $crate::store::dialect!(@on reader, $store, |$pool, $sql| $body)
    };
    ($store:expr, |$pool:ident, $sql:ident| $body:expr) => {
        $crate::store::dialect!(@on writer, $store, |$pool, $sql| $body)
    };
}
pub(crate) use dialect;

/// Rows per multi-row INSERT: at 7 or 8 parameters a row, far below both dialects' parameter
/// limits (SQLite 32,766, PostgreSQL 65,535).
pub(crate) const ROWS_PER_INSERT: usize = 500;

const LOCK_MARKER: &str = "/*LOCK*/";

pub(crate) fn for_sqlite(sql: &'static str) -> Cow<'static, str> {
    if sql.contains(LOCK_MARKER) {
        Cow::Owned(sql.replace(LOCK_MARKER, ""))
    } else {
        Cow::Borrowed(sql)
    }
}

/// `?` placeholders numbered `$1, $2, ...`, and row locks that skip rows other hosts hold.
pub(crate) fn for_postgres(sql: &'static str) -> Cow<'static, str> {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.replace(LOCK_MARKER, "FOR UPDATE SKIP LOCKED").chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            // One writer connection: SQLite has one writer at a time, and writers on several
            // connections meet at the file lock, where SQLite's busy handler sleeps (1, 2, 5,
            // 10 ms and up) while the cores sit idle. On one connection they wait their turn in
            // the pool, woken the moment it is free (webhook intake on 2 cores: 3,100/s, p99
            // 22 ms → 5,000/s, 11 ms). Reads go to other connections, not behind a write's disk
            // sync. `busy_timeout` still covers other processes (`tether dlq` beside `tether run`).
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(StoreError::Connect)?;
            sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
            let in_memory = options.get_filename() == std::path::Path::new(":memory:");
            let reader = if in_memory {
                writer.clone() // another connection would open another, empty, database
            } else {
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::Connect)?
            };
            Store::Sqlite { writer, reader }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(StoreError::Connect)?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Store::Postgres(pool)
        } else {
            return Err(StoreError::UnknownScheme(url.to_owned()));
        };
        Ok(store)
    }

    pub fn dialect_name(&self) -> &'static str {
        match self {
            Store::Sqlite { .. } => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_adapt_to_each_dialect() {
        let sql = "SELECT id FROM t WHERE a = ? AND b IN (?, ?) /*LOCK*/";
        assert_eq!(super::for_sqlite(sql), "SELECT id FROM t WHERE a = ? AND b IN (?, ?) ");
        assert_eq!(
            super::for_postgres(sql),
            "SELECT id FROM t WHERE a = $1 AND b IN ($2, $3) FOR UPDATE SKIP LOCKED"
        );
    }
}
