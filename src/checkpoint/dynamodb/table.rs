//! Creating the lease table on first start (on-demand billing) and checking the key schema of
//! one that exists.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};

use super::item::storage;
use super::{call, Failed};
use crate::checkpoint::CheckpointError;

/// Makes sure `table` exists with the key schema `pk` (hash, S), `sk` (range, S).
pub(super) async fn ensure(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), CheckpointError> {
    let described = client.describe_table().table_name(table).send().await;
    let description = match described {
        Ok(out) => out.table,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            create(client, table).await?;
            None
        }
        Err(e) => {
            let failure = crate::aws::error::AwsFailure::from_sdk(&e);
            return Err(storage(format!("lease table {table}: {failure}")));
        }
    };
    if let Some(description) = description {
        let keys: Vec<(String, String)> = description
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect();
        let expected = [
            ("pk".to_string(), "HASH".to_string()),
            ("sk".to_string(), "RANGE".to_string()),
        ];
        if keys != expected {
            return Err(storage(format!(
                "lease table {table} exists with the key schema {keys:?}; esmd needs pk (HASH, S) and sk (RANGE, S): name another table in [state].table"
            )));
        }
    }
    wait_active(client, table).await
}

async fn create(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), CheckpointError> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(storage)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(storage)
    };
    let (pk, sk) = (attribute("pk")?, attribute("sk")?);
    let (hash, range) = (key("pk", KeyType::Hash)?, key("sk", KeyType::Range)?);
    let created = call("CreateTable", || {
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(pk.clone())
            .attribute_definitions(sk.clone())
            .key_schema(hash.clone())
            .key_schema(range.clone())
            .billing_mode(BillingMode::PayPerRequest)
            .send()
    })
    .await;
    match created {
        // Another instance created it first.
        Ok(_) | Err(Failed::Condition) => Ok(()),
        Err(Failed::Store(e)) if e.to_string().contains("ResourceInUse") => Ok(()),
        Err(Failed::Store(e)) => Err(e),
    }
}

async fn wait_active(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), CheckpointError> {
    for _ in 0..120 {
        let out = client.describe_table().table_name(table).send().await;
        let status = out.ok().and_then(|o| o.table).and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(storage(format!(
        "lease table {table} did not become ACTIVE within a minute"
    )))
}
