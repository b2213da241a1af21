//! The mappings created through the Lambda API (`src/api`), kept in the state store beside
//! their checkpoints so that they survive a restart.
//!
//! Each row is the mapping's request document in AWS's JSON shape (`BatchSize`, ...), as
//! merged from its Create and Updates; the daemon validates it again on every start, with
//! the same rules as the config file. Mappings from the config file are never stored here.

use futures::future::BoxFuture;

use super::CheckpointError;

/// One API-created mapping as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredMapping {
    pub(crate) uuid: String,
    /// The merged request document (a JSON object with AWS's field names).
    pub(crate) document: serde_json::Map<String, serde_json::Value>,
    /// Seconds since the epoch, as `LastModified` reports it.
    pub(crate) last_modified: f64,
}

/// Durable storage for API-created mappings.
pub(crate) trait MappingCatalog: Send + Sync {
    /// Every stored mapping, oldest first.
    fn list(&self) -> BoxFuture<'_, Result<Vec<StoredMapping>, CheckpointError>>;

    /// Creates or replaces the mapping with this uuid, durably.
    fn put<'a>(&'a self, mapping: &'a StoredMapping) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Forgets a mapping; `false` when there was none.
    fn remove<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<bool, CheckpointError>>;
}

/// The in-memory twin, for unit tests of the API.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct MemoryCatalog {
    rows: std::sync::Mutex<Vec<StoredMapping>>,
}

#[cfg(test)]
impl MappingCatalog for MemoryCatalog {
    fn list(&self) -> BoxFuture<'_, Result<Vec<StoredMapping>, CheckpointError>> {
        let rows = self.rows.lock().map(|r| r.clone()).unwrap_or_default();
        Box::pin(async move { Ok(rows) })
    }

    fn put<'a>(&'a self, mapping: &'a StoredMapping) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
            match rows.iter_mut().find(|r| r.uuid == mapping.uuid) {
                Some(row) => *row = mapping.clone(),
                None => rows.push(mapping.clone()),
            }
            Ok(())
        })
    }

    fn remove<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<bool, CheckpointError>> {
        Box::pin(async move {
            let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
            let before = rows.len();
            rows.retain(|r| r.uuid != uuid);
            Ok(rows.len() != before)
        })
    }
}

/// The contract every catalog keeps.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    fn mapping(uuid: &str, batch: i64, at: f64) -> StoredMapping {
        let document = serde_json::json!({
            "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q",
            "FunctionName": "f",
            "BatchSize": batch,
            "FilterCriteria": {"Filters": [{"Pattern": "{\"body\": {\"a\": [1]}}"}]},
        });
        let serde_json::Value::Object(document) = document else {
            unreachable!()
        };
        StoredMapping {
            uuid: uuid.into(),
            document,
            last_modified: at,
        }
    }

    pub(crate) async fn keeps_the_contract(catalog: &dyn MappingCatalog) {
        assert!(catalog.list().await.unwrap().is_empty());
        let a = mapping("a", 5, 1_700_000_000.25);
        let b = mapping("b", 7, 1_700_000_001.5);
        catalog.put(&a).await.unwrap();
        catalog.put(&b).await.unwrap();
        assert_eq!(catalog.list().await.unwrap(), vec![a.clone(), b.clone()]);

        // A put with the same uuid replaces the row, in place.
        let a2 = mapping("a", 9, 1_700_000_002.0);
        catalog.put(&a2).await.unwrap();
        assert_eq!(catalog.list().await.unwrap(), vec![a2, b.clone()]);

        assert!(catalog.remove("a").await.unwrap());
        assert!(!catalog.remove("a").await.unwrap());
        assert_eq!(catalog.list().await.unwrap(), vec![b]);
    }

    #[tokio::test]
    async fn the_memory_twin_keeps_the_contract() {
        keeps_the_contract(&MemoryCatalog::default()).await;
    }

    #[tokio::test]
    async fn sqlite_keeps_the_contract() {
        let store = crate::checkpoint::SqliteStore::in_memory().unwrap();
        keeps_the_contract(&store).await;
    }

    #[tokio::test]
    async fn sqlite_keeps_mappings_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let a = mapping("a", 5, 1_700_000_000.0);
        crate::checkpoint::SqliteStore::open(&path)
            .unwrap()
            .put(&a)
            .await
            .unwrap();
        let reopened = crate::checkpoint::SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.list().await.unwrap(), vec![a]);
    }
}
