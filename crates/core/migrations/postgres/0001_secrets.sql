-- Connector secrets (OAuth tokens and the like), encrypted by the vault before they get here.
CREATE TABLE secrets (
    instance   TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    nonce      BYTEA  NOT NULL,
    ciphertext BYTEA  NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (instance, name)
);
