//! Connector secrets, encrypted at rest.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per write; the associated data binds each
//! ciphertext to its (instance, name), so a row copied onto another key does not decrypt.
//! The key comes from `TETHER_SECRET_KEY` (base64 of 32 bytes) or a key file that must be
//! private to its owner; a missing key file is created with mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use crate::store::{SealedSecret, Store, StoreError};

pub const KEY_ENV: &str = "TETHER_SECRET_KEY";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{KEY_ENV} must be the base64 of 32 bytes")]
    BadEnvKey,
    #[error("key file {} must hold the base64 of 32 bytes", .0.display())]
    BadKeyFile(PathBuf),
    #[error("key file {} is readable or writable by others (mode {mode:o}); run `chmod 600 {}`", path.display(), path.display())]
    KeyFileNotPrivate { path: PathBuf, mode: u32 },
    #[error("cannot use key file {}: {source}", path.display())]
    KeyFileIo { path: PathBuf, source: std::io::Error },
    #[error("secret `{name}` of `{instance}` does not decrypt with this key (was the key changed?)")]
    Undecryptable { instance: String, name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The encryption key, never printed.
pub struct SecretKey(Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    pub fn from_base64(text: &str) -> Option<SecretKey> {
        let bytes = BASE64.decode(text.trim()).ok()?;
        (bytes.len() == 32).then(|| SecretKey(*Key::from_slice(&bytes)))
    }

    /// The key from the environment value if given, else from `file`, created if missing.
    pub fn load(env_value: Option<&str>, file: &Path) -> Result<SecretKey, VaultError> {
        if let Some(value) = env_value {
            return SecretKey::from_base64(value).ok_or(VaultError::BadEnvKey);
        }
        let io = |source| VaultError::KeyFileIo {
            path: file.to_owned(),
            source,
        };
        match fs::metadata(file) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(VaultError::KeyFileNotPrivate {
                        path: file.to_owned(),
                        mode,
                    });
                }
                let text = fs::read_to_string(file).map_err(io)?;
                SecretKey::from_base64(&text).ok_or_else(|| VaultError::BadKeyFile(file.to_owned()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                // create_new: never overwrite a key another process wrote meanwhile.
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(file)
                    .map_err(io)?;
                out.write_all(BASE64.encode(key).as_bytes()).map_err(io)?;
                out.sync_all().map_err(io)?;
                Ok(SecretKey(key))
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// Secrets of every connector instance, sealed in the store.
pub struct Vault {
    cipher: XChaCha20Poly1305,
    store: Store,
}

impl Vault {
    pub fn new(key: SecretKey, store: Store) -> Vault {
        Vault {
            cipher: XChaCha20Poly1305::new(&key.0),
            store,
        }
    }

    pub async fn get(&self, instance: &str, name: &str) -> Result<Option<String>, VaultError> {
        let Some(sealed) = self.store.secret_get(instance, name).await? else {
            return Ok(None);
        };
        let undecryptable = || VaultError::Undecryptable {
            instance: instance.to_owned(),
            name: name.to_owned(),
        };
        if sealed.nonce.len() != 24 {
            return Err(undecryptable());
        }
        let aad = associated_data(instance, name);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map(Some).map_err(|_| undecryptable())
    }

    pub async fn put(&self, instance: &str, name: &str, value: &str, now_ms: i64) -> Result<(), VaultError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(instance, name);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Undecryptable {
                instance: instance.to_owned(),
                name: name.to_owned(),
            })?;
        let sealed = SealedSecret {
            nonce: nonce.to_vec(),
            ciphertext,
        };
        self.store.secret_put(instance, name, &sealed, now_ms).await?;
        Ok(())
    }
}

fn associated_data(instance: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(instance.len() + name.len() + 1);
    aad.extend_from_slice(instance.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn vault_in(dir: &Path) -> (Vault, Store) {
        let url = format!("sqlite://{}", dir.join("state.sqlite").display());
        let store = Store::open(&url).await.expect("open store");
        let key = SecretKey::load(None, &dir.join("tether.key")).expect("key");
        (Vault::new(key, store.clone()), store)
    }

    #[tokio::test]
    async fn round_trips_and_stores_only_ciphertext() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (vault, store) = vault_in(dir.path()).await;
        vault
            .put("ghl", "refresh_token", "rt-very-secret", 1)
            .await
            .expect("put");
        assert_eq!(
            vault.get("ghl", "refresh_token").await.expect("get").as_deref(),
            Some("rt-very-secret")
        );
        assert_eq!(vault.get("ghl", "missing").await.expect("get"), None);
        let sealed = store
            .secret_get("ghl", "refresh_token")
            .await
            .expect("row")
            .expect("present");
        assert!(
            !sealed.ciphertext.windows(6).any(|w| w == b"secret"),
            "plaintext leaked into the store"
        );
        let mode = fs::metadata(dir.path().join("tether.key"))
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn a_row_moved_to_another_name_does_not_decrypt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (vault, store) = vault_in(dir.path()).await;
        vault.put("ghl", "access_token", "at-1", 1).await.expect("put");
        let sealed = store
            .secret_get("ghl", "access_token")
            .await
            .expect("row")
            .expect("present");
        store
            .secret_put("ghl", "refresh_token", &sealed, 2)
            .await
            .expect("copy");
        assert!(matches!(
            vault.get("ghl", "refresh_token").await,
            Err(VaultError::Undecryptable { .. })
        ));
    }

    #[test]
    fn refuses_a_key_file_others_can_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tether.key");
        fs::write(&file, BASE64.encode([7u8; 32])).expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = SecretKey::load(None, &file).expect_err("world-readable key");
        assert!(error.to_string().contains("chmod 600"), "{error}");
        assert!(matches!(
            SecretKey::load(Some("not base64!"), &file),
            Err(VaultError::BadEnvKey)
        ));
        assert!(SecretKey::load(Some(&BASE64.encode([1u8; 32])), &file).is_ok());
    }
}
