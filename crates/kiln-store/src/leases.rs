//! Leases: one holder at a time for a named role, through the shared database alone.
//!
//! Several `kiln serve` replicas may share one database, and each could run the retrain
//! controller; only the holder of the lease `controller:MODEL` acts. Taking or renewing a
//! lease is one conditional upsert, atomic on both engines: it succeeds when no one holds the
//! lease, when this holder already does, or when the current holder's lease has expired (it
//! stopped renewing: crashed, stopped, or cut off from the database). A holder that stops
//! cleanly releases its lease so another replica takes over at once.
//!
//! Expiry compares wall clocks of different machines; the time to live must be large against
//! their skew (NTP keeps it to milliseconds; the default time to live is 15 s).

use serde::Serialize;
use sqlx::Row;

use crate::Result;
use crate::meta::MetaStore;

/// Who holds a lease, and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// When this holder took it (wall-clock microseconds).
    pub acquired_at: i64,
    pub expires_at: i64,
}

impl MetaStore {
    /// Takes or renews lease `name` for `holder` until `ttl_us` from now. Returns the lease as
    /// it stands afterwards: held by `holder` when it succeeded, else by the current holder.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl_us: i64) -> Result<Lease> {
        let now = kiln_core::now_micros();
        let mut tx = self.write_tx().await?;
        // The WHERE of the upsert keeps a live lease of another holder untouched.
        sqlx::query(
            "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET \
               acquired_at = CASE WHEN leases.holder = excluded.holder \
                 THEN leases.acquired_at ELSE excluded.acquired_at END, \
               holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $3",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(now.saturating_add(ttl_us))
        .execute(&mut *tx)
        .await?;
        let row =
            sqlx::query("SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Lease {
            name: row.try_get(0)?,
            holder: row.try_get(1)?,
            acquired_at: row.try_get(2)?,
            expires_at: row.try_get(3)?,
        })
    }

    /// Gives lease `name` up if `holder` holds it (another holder's lease is left alone).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every lease, by name.
    pub async fn leases(&self) -> Result<Vec<Lease>> {
        let rows =
            sqlx::query("SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Lease {
                    name: r.try_get(0)?,
                    holder: r.try_get(1)?,
                    acquired_at: r.try_get(2)?,
                    expires_at: r.try_get(3)?,
                })
            })
            .collect()
    }
}
