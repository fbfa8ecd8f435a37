//! Token persistence for the Bitrix24 REST client: the tokens of a portal, a refresh lock shared by every
//! process on the database, and the atomic replacement of the token pair after a refresh.
//!
//! Bitrix24 issues a new refresh token with every refresh and the old one stops working, so two workers that
//! refresh at once would leave one of them with a dead pair. [`Store::try_lock_refresh`] lets one worker
//! (across processes) do the refresh; [`Store::store_refreshed`] writes both new tokens in one statement,
//! only when the stored refresh token is still the one that was spent (compare-and-swap inside a write
//! transaction: sealed values are randomized, so the comparison is made on the opened value).
//!
//! The seal field names are the ones of `registry.rs` (`portals.access_token`, `portals.refresh_token`).

use sqlx::Row;

use super::{get_bool, now_ms, Backend, Store, StoreError};

const ACCESS_FIELD: &str = "portals.access_token";
const REFRESH_FIELD: &str = "portals.refresh_token";

/// What the REST client needs of a portal. Tokens are plain here; `Debug` masks them.
#[derive(Clone, PartialEq, Eq)]
pub struct PortalAuth {
    pub id: i64,
    pub member_id: String,
    /// Base of REST calls, e.g. `https://example.bitrix24.com/rest/`.
    pub client_endpoint: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// When the access token expires, unix milliseconds (`None`: unknown).
    pub expires_at_ms: Option<i64>,
    pub active: bool,
}

impl std::fmt::Debug for PortalAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |t: &Option<String>| if t.is_some() { "***" } else { "none" };
        f.debug_struct("PortalAuth")
            .field("id", &self.id)
            .field("member_id", &self.member_id)
            .field("client_endpoint", &self.client_endpoint)
            .field("access_token", &mask(&self.access_token))
            .field("refresh_token", &mask(&self.refresh_token))
            .field("expires_at_ms", &self.expires_at_ms)
            .field("active", &self.active)
            .finish()
    }
}

/// A new token pair from the OAuth server.
#[derive(Clone)]
pub struct RefreshedTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
    /// The `client_endpoint` of the answer, when it carried one.
    pub client_endpoint: Option<String>,
    /// The granted scope of the answer, when it carried one.
    pub scope: Option<String>,
}

impl std::fmt::Debug for RefreshedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshedTokens")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("client_endpoint", &self.client_endpoint)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The tokens and endpoint of a portal, opened; `None` when there is no such portal.
    pub async fn portal_auth(&self, portal_id: i64) -> Result<Option<PortalAuth>, StoreError> {
        let row = sqlx::query(
            "SELECT id, member_id, client_endpoint, access_token, refresh_token, token_expires_at, active \
             FROM portals WHERE id = $1",
        )
        .bind(portal_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(PortalAuth {
            id: r.try_get("id")?,
            member_id: r.try_get("member_id")?,
            client_endpoint: r.try_get("client_endpoint")?,
            access_token: self.open_opt(ACCESS_FIELD, r.try_get("access_token")?)?,
            refresh_token: self.open_opt(REFRESH_FIELD, r.try_get("refresh_token")?)?,
            expires_at_ms: r.try_get("token_expires_at")?,
            active: get_bool(&r, "active")?,
        }))
    }

    /// Takes the portal's refresh lock until `until_ms` (unix ms) when nobody holds it (or the holder's time
    /// ran out). True when this caller now holds it.
    pub async fn try_lock_refresh(&self, portal_id: i64, until_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE portals SET refresh_lock_until = $2 \
             WHERE id = $1 AND (refresh_lock_until IS NULL OR refresh_lock_until < $3)",
        )
        .bind(portal_id)
        .bind(until_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases the refresh lock (after a failed refresh; [`Store::store_refreshed`] releases it itself).
    pub async fn release_refresh_lock(&self, portal_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE portals SET refresh_lock_until = NULL WHERE id = $1")
            .bind(portal_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a refreshed token pair, both tokens in one statement, only when the stored refresh token is
    /// still `spent_refresh_token` (the plain token given to the OAuth server). Clears the refresh lock and
    /// `last_error`. False (nothing written) when another worker already replaced the pair.
    pub async fn store_refreshed(
        &self,
        portal_id: i64,
        spent_refresh_token: &str,
        new: &RefreshedTokens,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // SQLite: BEGIN IMMEDIATE already holds the write lock; PostgreSQL: lock the row.
        let select = match self.backend {
            Backend::Sqlite => "SELECT refresh_token FROM portals WHERE id = $1",
            Backend::Postgres => "SELECT refresh_token FROM portals WHERE id = $1 FOR UPDATE",
        };
        let row = sqlx::query(select).bind(portal_id).fetch_optional(&mut *tx).await?;
        let current = match row {
            Some(r) => self.open_opt(REFRESH_FIELD, r.try_get("refresh_token")?)?,
            None => None,
        };
        if current.as_deref() != Some(spent_refresh_token) {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE portals SET access_token = $2, refresh_token = $3, token_expires_at = $4, \
             client_endpoint = COALESCE($5, client_endpoint), scope = COALESCE($6, scope), \
             refresh_lock_until = NULL, last_error = NULL, updated_at = $7 WHERE id = $1",
        )
        .bind(portal_id)
        .bind(self.seal(ACCESS_FIELD, &new.access_token))
        .bind(self.seal(REFRESH_FIELD, &new.refresh_token))
        .bind(new.expires_at_ms)
        .bind(new.client_endpoint.as_deref())
        .bind(new.scope.as_deref())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records (or clears, with `None`) what last went wrong with the portal's authorization.
    pub async fn record_portal_error(&self, portal_id: i64, error: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE portals SET last_error = $2, updated_at = $3 WHERE id = $1")
            .bind(portal_id)
            .bind(error)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The portal's `last_error`.
    pub async fn portal_last_error(&self, portal_id: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT last_error FROM portals WHERE id = $1")
            .bind(portal_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("last_error")?,
            None => None,
        })
    }

    /// Moves the portal to a new REST base (the portal's address changed; Bitrix24 redirected us).
    pub async fn set_client_endpoint(&self, portal_id: i64, client_endpoint: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE portals SET client_endpoint = $2, updated_at = $3 WHERE id = $1")
            .bind(portal_id)
            .bind(client_endpoint)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// After an install: the scope the portal granted, and no error any more.
    pub async fn set_portal_scope(&self, portal_id: i64, scope: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE portals SET scope = $2, last_error = NULL WHERE id = $1")
            .bind(portal_id)
            .bind(scope)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The portal uninstalled the app: inactive from now on (a logical delete; a reinstall activates it again).
    pub async fn uninstall_portal(&self, portal_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE portals SET active = $2, uninstalled_at = $3, updated_at = $3 WHERE id = $1")
            .bind(portal_id)
            .bind(false)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Accepts a portal event once: true when `dedup_key` was new (`portal_events`).
pub async fn accept_event_on(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dedup_key: &str,
    portal_id: i64,
) -> Result<bool, StoreError> {
    let new = sqlx::query(
        "INSERT INTO portal_events (dedup_key, portal_id, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(dedup_key)
    .bind(portal_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(new == 1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::registry::Portal;

    /// A migrated store on a fresh database, dropped with it.
    pub(crate) struct TestStore {
        pub store: Store,
        _dir: tempfile::TempDir,
        pg: Option<(String, String)>,
    }

    impl TestStore {
        pub(crate) async fn sqlite() -> TestStore {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("x.db").display());
            let store = Self::open(url, &dir).await;
            TestStore { store, _dir: dir, pg: None }
        }

        /// `None` (with a note) when no PostgreSQL answers at `WABRIDGE_TEST_POSTGRES`.
        pub(crate) async fn postgres() -> Option<TestStore> {
            use sqlx::Connection;
            let base =
                std::env::var("WABRIDGE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let mut c = match sqlx::PgConnection::connect(&format!("{base}/postgres")).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("SKIPPED: PostgreSQL variant ({e})");
                    return None;
                }
            };
            let name = format!("wabridge_p_{}", crate::seal::random_token(12).to_lowercase());
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.expect("create database");
            let _ = c.close().await;
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Self::open(format!("{base}/{name}"), &dir).await;
            Some(TestStore { store, _dir: dir, pg: Some((base, name)) })
        }

        async fn open(url: String, dir: &tempfile::TempDir) -> Store {
            let config = Config {
                database_url: url,
                data_dir: dir.path().to_path_buf(),
                master_key: Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
                database_max_connections: 8,
                ..Config::default()
            };
            let store = Store::connect(&config).await.expect("connect");
            store.migrate().await.expect("migrate");
            store
        }

        pub(crate) async fn drop_db(self) {
            use sqlx::Connection;
            self.store.close().await;
            if let Some((base, name)) = &self.pg {
                if let Ok(mut c) = sqlx::PgConnection::connect(&format!("{base}/postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                    let _ = c.close().await;
                }
            }
        }

        /// Inserts an active portal and returns its id.
        pub(crate) async fn portal(
            &self,
            member_id: &str,
            endpoint: &str,
            access: &str,
            refresh: &str,
            expires_at: i64,
        ) -> i64 {
            let now = now_ms();
            let p = Portal {
                id: 0,
                kind: "bitrix24".into(),
                member_id: member_id.into(),
                domain: format!("{member_id}.bitrix24.com"),
                client_endpoint: endpoint.into(),
                access_token: Some(access.into()),
                refresh_token: Some(refresh.into()),
                token_expires_at: Some(expires_at),
                application_token: Some("app-token".into()),
                active: true,
                uninstalled_at: None,
                created_at: now,
                updated_at: now,
            };
            self.store.insert_portal(&p).await.expect("insert portal")
        }
    }

    fn tokens(access: &str, refresh: &str) -> RefreshedTokens {
        RefreshedTokens {
            access_token: access.into(),
            refresh_token: refresh.into(),
            expires_at_ms: 42,
            client_endpoint: Some("https://new.bitrix24.com/rest/".into()),
            scope: Some("imconnector".into()),
        }
    }

    async fn lock_and_compare_and_swap(t: &TestStore) {
        let s = &t.store;
        let id = t.portal("m1", "https://old.bitrix24.com/rest/", "a0", "r0", 1).await;
        let auth = s.portal_auth(id).await.unwrap().expect("portal");
        assert_eq!(auth.access_token.as_deref(), Some("a0"));
        assert_eq!(auth.refresh_token.as_deref(), Some("r0"));
        assert!(!format!("{auth:?}").contains("r0"), "Debug must mask tokens");
        assert!(s.portal_auth(id + 100).await.unwrap().is_none());

        // One holder at a time; an expired lock can be taken over.
        let later = now_ms() + 60_000;
        assert!(s.try_lock_refresh(id, later).await.unwrap());
        assert!(!s.try_lock_refresh(id, later).await.unwrap());
        s.release_refresh_lock(id).await.unwrap();
        assert!(s.try_lock_refresh(id, now_ms() - 1).await.unwrap());
        assert!(s.try_lock_refresh(id, later).await.unwrap());

        // Compare-and-swap on the spent refresh token: the first store wins, a stale one writes nothing.
        assert!(s.store_refreshed(id, "r0", &tokens("a1", "r1")).await.unwrap());
        assert!(!s.store_refreshed(id, "r0", &tokens("a2", "r2")).await.unwrap());
        let auth = s.portal_auth(id).await.unwrap().expect("portal");
        assert_eq!((auth.access_token.as_deref(), auth.refresh_token.as_deref()), (Some("a1"), Some("r1")));
        assert_eq!(auth.expires_at_ms, Some(42));
        assert_eq!(auth.client_endpoint, "https://new.bitrix24.com/rest/");
        // The successful store released the lock.
        assert!(s.try_lock_refresh(id, later).await.unwrap());

        s.record_portal_error(id, Some("boom")).await.unwrap();
        assert_eq!(s.portal_last_error(id).await.unwrap().as_deref(), Some("boom"));
        s.record_portal_error(id, None).await.unwrap();
        assert_eq!(s.portal_last_error(id).await.unwrap(), None);
        s.set_client_endpoint(id, "https://moved.bitrix24.com/rest/").await.unwrap();
        assert_eq!(
            s.portal_auth(id).await.unwrap().expect("portal").client_endpoint,
            "https://moved.bitrix24.com/rest/"
        );
    }

    async fn concurrent_stores_have_one_winner(t: &TestStore) {
        let id = t.portal("m2", "https://x.bitrix24.com/rest/", "a0", "r0", 1).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = t.store.clone();
            tasks.push(tokio::spawn(async move {
                s.store_refreshed(id, "r0", &tokens(&format!("a{i}"), &format!("r{i}x"))).await.unwrap()
            }));
        }
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await.unwrap());
        }
        assert_eq!(wins, 1);
        let auth = t.store.portal_auth(id).await.unwrap().expect("portal");
        let a = auth.access_token.expect("access");
        assert_eq!(auth.refresh_token.expect("refresh"), format!("{}x", a.replacen('a', "r", 1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_lock_and_cas_sqlite() {
        let t = TestStore::sqlite().await;
        lock_and_compare_and_swap(&t).await;
        concurrent_stores_have_one_winner(&t).await;
        t.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_lock_and_cas_postgres() {
        let Some(t) = TestStore::postgres().await else { return };
        lock_and_compare_and_swap(&t).await;
        concurrent_stores_have_one_winner(&t).await;
        t.drop_db().await;
    }
}
