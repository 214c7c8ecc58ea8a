-- Connector secrets (OAuth tokens and the like), encrypted by the vault before they get here.
CREATE TABLE secrets (
    instance   TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    nonce      BLOB    NOT NULL,
    ciphertext BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (instance, name)
);
