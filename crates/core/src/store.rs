//! The SQL state store: SQLite (one file, WAL, created on first use) or PostgreSQL, chosen by
//! the URL. Each dialect has its own migrations and its own SQL where they differ; no
//! `sqlx::Any`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

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
}

impl StoreError {
    /// Whether the store itself is unreachable (exit code 3), rather than a query failing.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Connect(_))
    }
}

/// A connection pool to the state store, migrated to the current schema.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One encrypted secret row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSecret {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
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
            let pool = SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .map_err(StoreError::Connect)?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Store::Sqlite(pool)
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

    pub async fn secret_get(&self, instance: &str, name: &str) -> Result<Option<SealedSecret>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = match self {
            Store::Sqlite(pool) => {
                sqlx::query_as("SELECT nonce, ciphertext FROM secrets WHERE instance = ? AND name = ?")
                    .bind(instance)
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
            }
            Store::Postgres(pool) => {
                sqlx::query_as("SELECT nonce, ciphertext FROM secrets WHERE instance = $1 AND name = $2")
                    .bind(instance)
                    .bind(name)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(row.map(|(nonce, ciphertext)| SealedSecret { nonce, ciphertext }))
    }

    pub async fn secret_put(
        &self,
        instance: &str,
        name: &str,
        secret: &SealedSecret,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // The same upsert in both dialects, with their placeholder styles.
        const UPSERT: &str =
            "INSERT INTO secrets (instance, name, nonce, ciphertext, updated_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (instance, name) DO UPDATE SET nonce = excluded.nonce, \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at";
        match self {
            Store::Sqlite(pool) => {
                sqlx::query(UPSERT)
                    .bind(instance)
                    .bind(name)
                    .bind(&secret.nonce)
                    .bind(&secret.ciphertext)
                    .bind(now_ms)
                    .execute(pool)
                    .await?;
            }
            Store::Postgres(pool) => {
                sqlx::query(&numbered_placeholders(UPSERT))
                    .bind(instance)
                    .bind(name)
                    .bind(&secret.nonce)
                    .bind(&secret.ciphertext)
                    .bind(now_ms)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

/// `?, ?` to `$1, $2` for PostgreSQL.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            super::numbered_placeholders("a = ? AND b = (?, ?)"),
            "a = $1 AND b = ($2, $3)"
        );
    }
}
