//! The state store suite, run on SQLite always and on PostgreSQL when
//! `TETHER_TEST_DATABASE_URL` names one (`.ci/run` provides it).

use tether_core::store::{SealedSecret, Store};
use tether_core::vault::{SecretKey, Vault};

async fn each_store(test: impl AsyncFn(Store, &str)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Store::open(&format!("sqlite://{}", dir.path().join("state.sqlite").display()))
        .await
        .expect("sqlite");
    test(sqlite, "sqlite").await;
    match std::env::var("TETHER_TEST_DATABASE_URL") {
        Ok(url) => test(Store::open(&url).await.expect("postgres"), "postgres").await,
        Err(_) => {
            // Straight to stderr: the harness captures eprintln! of passing tests, and a skip
            // must be seen.
            let notice =
                "notice: TETHER_TEST_DATABASE_URL is not set; the PostgreSQL half of the store suite was skipped\n";
            let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
        }
    }
}

/// Unique per run so reruns against one PostgreSQL database do not see each other's rows.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos}-{}", std::process::id())
}

#[tokio::test]
async fn secrets_upsert_and_read_back() {
    each_store(async |store, dialect| {
        let instance = unique("ghl");
        assert_eq!(
            store.secret_get(&instance, "token").await.expect("get"),
            None,
            "{dialect}"
        );
        let first = SealedSecret {
            nonce: vec![1; 24],
            ciphertext: vec![2, 3],
        };
        let second = SealedSecret {
            nonce: vec![4; 24],
            ciphertext: vec![5, 6, 7],
        };
        store.secret_put(&instance, "token", &first, 1).await.expect("put");
        store
            .secret_put(&instance, "token", &second, 2)
            .await
            .expect("overwrite");
        assert_eq!(
            store.secret_get(&instance, "token").await.expect("get"),
            Some(second),
            "{dialect}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_vault_round_trips_on_every_dialect() {
    each_store(async |store, dialect| {
        let instance = unique("moloni");
        let vault = Vault::new(
            SecretKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key"),
            store,
        );
        vault.put(&instance, "refresh_token", "rt-1", 1).await.expect("put");
        vault.put(&instance, "refresh_token", "rt-2", 2).await.expect("rotate");
        assert_eq!(
            vault.get(&instance, "refresh_token").await.expect("get").as_deref(),
            Some("rt-2"),
            "{dialect}"
        );
    })
    .await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    drop(Store::open(&url).await.expect("first open"));
    Store::open(&url).await.expect("second open of a migrated store");
}
