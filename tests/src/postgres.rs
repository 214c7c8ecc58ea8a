//! A PostgreSQL database of its own for one test or load run, under the server that
//! `TETHER_TEST_DATABASE_URL` names; dropped after.

use sqlx::Connection;

pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database, with the admin URL's query (socket directory and such).
    pub url: String,
}

impl ScratchDatabase {
    /// Creates `PREFIX_NANOS`. Its commits do not wait for the disk: what the callers kill and
    /// race are the hosts, not the database server.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<ScratchDatabase, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{prefix}_{nanos}");
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .map_err(|e| format!("connect to PostgreSQL at {admin_url}: {e}"))?;
        for statement in [
            format!("CREATE DATABASE {name}"),
            format!("ALTER DATABASE {name} SET synchronous_commit = off"),
        ] {
            sqlx::query(&statement)
                .execute(&mut admin)
                .await
                .map_err(|e| format!("{statement}: {e}"))?;
        }
        let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        let url = if query.is_empty() {
            format!("{server}/{name}")
        } else {
            format!("{server}/{name}?{query}")
        };
        Ok(ScratchDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    pub async fn drop_it(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut admin)
                .await;
        }
    }
}
