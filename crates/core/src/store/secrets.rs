//! Sealed secret rows; the vault encrypts before they get here.

use super::{dialect, Store, StoreError};

/// One encrypted secret row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSecret {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Store {
    pub async fn secret_get(&self, instance: &str, name: &str) -> Result<Option<SealedSecret>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>)> = dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT nonce, ciphertext FROM secrets WHERE instance = ? AND name = ?",
            ))
            .bind(instance)
            .bind(name)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(nonce, ciphertext)| SealedSecret { nonce, ciphertext }))
    }

    pub async fn secret_put(
        &self,
        instance: &str,
        name: &str,
        secret: &SealedSecret,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        dialect!(self, |pool, sql| {
            sqlx::query(&sql(
                "INSERT INTO secrets (instance, name, nonce, ciphertext, updated_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (instance, name) DO UPDATE SET nonce = excluded.nonce, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            ))
            .bind(instance)
            .bind(name)
            .bind(&secret.nonce)
            .bind(&secret.ciphertext)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
