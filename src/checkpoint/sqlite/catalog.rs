//! [`MappingCatalog`] in the SQLite store: the `api_mappings` table, one row per
//! API-created mapping, written with the store's `synchronous = FULL`.

use futures::future::BoxFuture;
use rusqlite::params;

use super::rows::storage;
use super::SqliteStore;
use crate::checkpoint::catalog::{MappingCatalog, StoredMapping};
use crate::checkpoint::CheckpointError;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_mappings (
    uuid TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    last_modified REAL NOT NULL,
    created_seq INTEGER NOT NULL
);
";

impl MappingCatalog for SqliteStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<StoredMapping>, CheckpointError>> {
        Box::pin(self.with(|conn, _| {
            let mut stmt = conn
                .prepare(
                    "SELECT uuid, document, last_modified FROM api_mappings \
                     ORDER BY created_seq",
                )
                .map_err(storage)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, f64>(2)?,
                    ))
                })
                .map_err(storage)?;
            let mut out = Vec::new();
            for row in rows {
                let (uuid, text, last_modified) = row.map_err(storage)?;
                let document = match serde_json::from_str(&text) {
                    Ok(serde_json::Value::Object(map)) => map,
                    _ => {
                        return Err(storage(format!(
                            "api_mappings row {uuid} is not a JSON object"
                        )))
                    }
                };
                out.push(StoredMapping {
                    uuid,
                    document,
                    last_modified,
                });
            }
            Ok(out)
        }))
    }

    fn put<'a>(&'a self, mapping: &'a StoredMapping) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let uuid = mapping.uuid.clone();
        let text = serde_json::Value::Object(mapping.document.clone()).to_string();
        let at = mapping.last_modified;
        Box::pin(self.with(move |conn, _| {
            conn.execute(
                "INSERT INTO api_mappings (uuid, document, last_modified, created_seq) \
                 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(created_seq), 0) + 1 FROM api_mappings)) \
                 ON CONFLICT(uuid) DO UPDATE SET document = ?2, last_modified = ?3",
                params![uuid, text, at],
            )
            .map_err(storage)?;
            Ok(())
        }))
    }

    fn remove<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        let uuid = uuid.to_string();
        Box::pin(self.with(move |conn, _| {
            let n = conn
                .execute("DELETE FROM api_mappings WHERE uuid = ?1", [uuid])
                .map_err(storage)?;
            Ok(n > 0)
        }))
    }
}
