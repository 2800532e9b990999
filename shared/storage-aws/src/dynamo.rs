//! The DynamoDB key-value adapter: one table with string `pk` and `sk`.
//! AWS SDK types stay in this file.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest,
    KeySchemaElement, KeyType, Put, PutRequest, ReturnValue, ScalarAttributeType, TableDescription,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
    WriteRequest,
};

use sextant_storage::kv::{
    Condition, Item, Key, KvStore, PK, Page, Query, SK, SortRange, StoreError, StoreResult, TxOp,
    Value, WriteOp, validate_batch, validate_query, validate_transaction,
};
use sextant_storage::records::TTL;

/// DynamoDB's limit on one BatchWriteItem request.
const BATCH_WRITE_MAX: usize = 25;
/// How often unprocessed batch items are re-sent before the batch counts as throttled.
const BATCH_RETRIES: u32 = 8;

type AttrMap = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoKv {
    client: Client,
    table: String,
}

impl DynamoKv {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with the key schema the adapter expects, on-demand billing.
    /// The SAM template makes the Lambda deployment's; `ensure_table` a self-hosted
    /// one's, and tests' tables come from here.
    pub async fn create_table(&self) -> StoreResult<()> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(StoreError::unavailable)
        };
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(StoreError::unavailable)
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(PK)?)
            .attribute_definitions(attribute(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }
}

/// What `DynamoKv::ensure_table` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSetup {
    Created,
    /// The table was there, as Sextant needs it.
    AlreadyThere,
}

/// How long a new table may take to become active.
const TABLE_ACTIVE_WITHIN: Duration = Duration::from_secs(120);

impl DynamoKv {
    /// Makes the table a fresh installation needs: the key schema the adapter expects,
    /// on-demand billing, and expiry on `ttl` (sessions, invites, mailed links and
    /// markers expire). A table that exists is checked and never changed: one whose
    /// key schema or expiry differs is refused, with what differs.
    pub async fn ensure_table(&self) -> anyhow::Result<TableSetup> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(described) => {
                let table = described
                    .table
                    .ok_or_else(|| anyhow::anyhow!("DescribeTable answered no table"))?;
                let differences = self.differences(&table).await?;
                if differences.is_empty() {
                    Ok(TableSetup::AlreadyThere)
                } else {
                    anyhow::bail!(
                        "the table {} exists and differs from what Sextant needs, so it was                          left alone: {}",
                        self.table,
                        differences.join("; ")
                    )
                }
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|err| err.is_resource_not_found_exception()) =>
            {
                self.create_table().await?;
                self.wait_until_active().await?;
                let expiry = TimeToLiveSpecification::builder()
                    .attribute_name(TTL)
                    .enabled(true)
                    .build()?;
                self.client
                    .update_time_to_live()
                    .table_name(&self.table)
                    .time_to_live_specification(expiry)
                    .send()
                    .await?;
                Ok(TableSetup::Created)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// How an existing table differs from what the adapter needs.
    async fn differences(&self, table: &TableDescription) -> anyhow::Result<Vec<String>> {
        let mut differences = Vec::new();
        let keys: Vec<(&str, &KeyType)> = table
            .key_schema()
            .iter()
            .map(|key| (key.attribute_name(), key.key_type()))
            .collect();
        if keys != [(PK, &KeyType::Hash), (SK, &KeyType::Range)] {
            differences.push(format!(
                "its key is {keys:?}, not `pk` (hash) and `sk` (range)"
            ));
        }
        for attribute in table.attribute_definitions() {
            let name = attribute.attribute_name();
            if [PK, SK].contains(&name) && attribute.attribute_type() != &ScalarAttributeType::S {
                differences.push(format!("`{name}` is not a string"));
            }
        }
        let expiry = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await?;
        let expiry = expiry.time_to_live_description();
        let on_ttl = expiry.is_some_and(|expiry| {
            expiry.attribute_name() == Some(TTL)
                && matches!(
                    expiry.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
        });
        if !on_ttl {
            differences.push("its items do not expire by `ttl`".to_owned());
        }
        Ok(differences)
    }

    async fn wait_until_active(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + TABLE_ACTIVE_WITHIN;
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await?;
            let status = described.table.and_then(|table| table.table_status);
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the table {} is still {status:?} after {TABLE_ACTIVE_WITHIN:?}",
                self.table
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn key_map(key: &Key) -> AttrMap {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::S(s) => AttributeValue::S(s.clone()),
        Value::N(n) => AttributeValue::N(n.to_string()),
        Value::B(b) => AttributeValue::B(Blob::new(b.to_vec())),
        Value::Bool(b) => AttributeValue::Bool(*b),
    }
}

fn from_attribute(name: &str, value: AttributeValue) -> StoreResult<Value> {
    match value {
        AttributeValue::S(s) => Ok(Value::S(s)),
        AttributeValue::N(n) => n
            .parse()
            .map(Value::N)
            .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not an i64: {n}"))),
        AttributeValue::B(b) => Ok(Value::B(b.into_inner().into())),
        AttributeValue::Bool(b) => Ok(Value::Bool(b)),
        _ => Err(StoreError::Corrupt(format!(
            "attribute {name} has an unsupported type"
        ))),
    }
}

fn item_map(item: &Item) -> AttrMap {
    let mut map = key_map(&item.key);
    map.extend(
        item.attrs
            .iter()
            .map(|(name, value)| (name.clone(), to_attribute(value))),
    );
    map
}

fn from_item_map(mut map: AttrMap) -> StoreResult<Item> {
    let mut take_key = |name: &str| match map.remove(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(StoreError::Corrupt(format!("item without a string {name}"))),
    };
    let key = Key::new(take_key(PK)?, take_key(SK)?);
    let attrs = map
        .into_iter()
        .map(|(name, value)| from_attribute(&name, value).map(|value| (name, value)))
        .collect::<StoreResult<_>>()?;
    Ok(Item { key, attrs })
}

/// A condition as DynamoDB expression parts: the expression and its placeholders.
#[derive(Debug, Default)]
struct Expression {
    text: Option<String>,
    names: HashMap<String, String>,
    values: AttrMap,
}

impl Expression {
    fn condition(condition: &Condition) -> Self {
        let mut expression = Expression::default();
        match condition {
            Condition::None => {}
            Condition::NotExists => expression.text = Some(format!("attribute_not_exists({PK})")),
            Condition::Exists => expression.text = Some(format!("attribute_exists({PK})")),
            Condition::Equals(name, value) => {
                expression.text = Some("#cond = :cond".into());
                expression.names.insert("#cond".into(), name.clone());
                expression
                    .values
                    .insert(":cond".into(), to_attribute(value));
            }
            Condition::AtMost(name, limit) => {
                expression.text = Some("attribute_not_exists(#cond) OR #cond <= :cond".into());
                expression.names.insert("#cond".into(), name.clone());
                expression
                    .values
                    .insert(":cond".into(), AttributeValue::N(limit.to_string()));
            }
        }
        expression
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<AttrMap> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "ThrottlingError"
        )
    )
}

fn map_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some("ConditionalCheckFailedException") => StoreError::ConditionFailed,
        Some("TransactionConflictException") => StoreError::TransactionConflict,
        code if is_throttling(code) => StoreError::Throttled,
        _ => StoreError::unavailable(err),
    }
}

#[async_trait]
impl KvStore for DynamoKv {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(map_error)?;
        output.item.map(from_item_map).transpose()
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        item.validate()?;
        let expression = Expression::condition(&condition);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_map(&item)))
            .set_condition_expression(expression.text.clone())
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<()> {
        let expression = Expression::condition(&condition);
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .set_condition_expression(expression.text.clone())
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn add(&self, key: &Key, attr: &str, delta: i64) -> StoreResult<i64> {
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .update_expression("ADD #attr :delta")
            .expression_attribute_names("#attr", attr)
            .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(map_error)?;
        let value = output
            .attributes
            .and_then(|mut attrs| attrs.remove(attr))
            .ok_or_else(|| StoreError::Corrupt(format!("ADD did not return {attr}")))?;
        match from_attribute(attr, value)? {
            Value::N(n) => Ok(n),
            _ => Err(StoreError::Corrupt(format!("{attr} is not a number"))),
        }
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        validate_query(&query)?;
        let mut values = HashMap::from([(":pk".to_owned(), AttributeValue::S(query.pk.clone()))]);
        let key_condition = match &query.range {
            SortRange::All => "pk = :pk".to_owned(),
            SortRange::Prefix(prefix) => {
                values.insert(":prefix".into(), AttributeValue::S(prefix.clone()));
                "pk = :pk AND begins_with(sk, :prefix)".to_owned()
            }
            SortRange::Between(start, end) => {
                values.insert(":start".into(), AttributeValue::S(start.clone()));
                values.insert(":end".into(), AttributeValue::S(end.clone()));
                "pk = :pk AND sk BETWEEN :start AND :end".to_owned()
            }
        };
        let start = query
            .after
            .as_ref()
            .map(|sk| key_map(&Key::new(query.pk.clone(), sk.clone())));
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(key_condition)
            .set_expression_attribute_values(Some(values))
            .set_exclusive_start_key(start)
            .scan_index_forward(!query.reverse)
            .limit(i32::try_from(query.limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .send()
            .await
            .map_err(map_error)?;
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item_map)
            .collect::<StoreResult<Vec<_>>>()?;
        let next = match output.last_evaluated_key {
            Some(mut last) => match last.remove(SK) {
                Some(AttributeValue::S(sk)) => Some(sk),
                _ => return Err(StoreError::Corrupt("cursor without a sort key".into())),
            },
            None => None,
        };
        Ok(Page { items, next })
    }

    async fn batch_write(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        validate_batch(&ops)?;
        for chunk in ops.chunks(BATCH_WRITE_MAX) {
            let mut requests = chunk
                .iter()
                .map(write_request)
                .collect::<StoreResult<Vec<_>>>()?;
            let mut attempt = 0;
            while !requests.is_empty() {
                if attempt == BATCH_RETRIES {
                    return Err(StoreError::Throttled);
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                }
                attempt += 1;
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(map_error)?;
                requests = output
                    .unprocessed_items
                    .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        validate_transaction(&ops)?;
        let items = ops
            .iter()
            .map(|op| transact_item(&self.table, op))
            .collect::<StoreResult<Vec<_>>>()?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reasons = err
                    .as_service_error()
                    .and_then(|service| match service {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(canceled) => {
                            canceled.cancellation_reasons.clone()
                        }
                        _ => None,
                    });
                match reasons {
                    Some(reasons) => Err(cancellation_error(&reasons, err)),
                    None => Err(map_error(err)),
                }
            }
        }
    }
}

fn write_request(op: &WriteOp) -> StoreResult<WriteRequest> {
    let request = match op {
        WriteOp::Put(item) => WriteRequest::builder().put_request(
            PutRequest::builder()
                .set_item(Some(item_map(item)))
                .build()
                .map_err(StoreError::unavailable)?,
        ),
        WriteOp::Delete(key) => WriteRequest::builder().delete_request(
            DeleteRequest::builder()
                .set_key(Some(key_map(key)))
                .build()
                .map_err(StoreError::unavailable)?,
        ),
    };
    Ok(request.build())
}

fn cancellation_error<E, R>(
    reasons: &[aws_sdk_dynamodb::types::CancellationReason],
    err: SdkError<E, R>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let codes: Vec<Option<&str>> = reasons.iter().map(|reason| reason.code()).collect();
    let failed: Vec<usize> = codes
        .iter()
        .enumerate()
        .filter(|(_, code)| **code == Some("ConditionalCheckFailed"))
        .map(|(index, _)| index)
        .collect();
    if !failed.is_empty() {
        StoreError::TransactionFailed(failed)
    } else if codes.contains(&Some("TransactionConflict")) {
        StoreError::TransactionConflict
    } else if codes.iter().any(|code| is_throttling(*code)) {
        StoreError::Throttled
    } else {
        StoreError::unavailable(err)
    }
}

fn transact_item(table: &str, op: &TxOp) -> StoreResult<TransactWriteItem> {
    let mut expression = Expression::condition(op.condition());
    let item = TransactWriteItem::builder();
    let item = match op {
        TxOp::Put(put, _) => item.put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item_map(put)))
                .set_condition_expression(expression.text.clone())
                .set_expression_attribute_names(expression.names())
                .set_expression_attribute_values(expression.values())
                .build()
                .map_err(StoreError::unavailable)?,
        ),
        TxOp::Delete(key, _) => item.delete(
            Delete::builder()
                .table_name(table)
                .set_key(Some(key_map(key)))
                .set_condition_expression(expression.text.clone())
                .set_expression_attribute_names(expression.names())
                .set_expression_attribute_values(expression.values())
                .build()
                .map_err(StoreError::unavailable)?,
        ),
        TxOp::Check(key, _) => item.condition_check(
            ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key_map(key)))
                // DynamoDB requires a condition on a check; `None` checks nothing.
                .condition_expression(expression.text.clone().unwrap_or_else(|| {
                    format!("attribute_exists({PK}) OR attribute_not_exists({PK})")
                }))
                .set_expression_attribute_names(expression.names())
                .set_expression_attribute_values(expression.values())
                .build()
                .map_err(StoreError::unavailable)?,
        ),
        TxOp::Add { key, deltas, .. } => {
            let mut adds = Vec::with_capacity(deltas.len());
            for (index, (attr, delta)) in deltas.iter().enumerate() {
                expression
                    .names
                    .insert(format!("#add{index}"), attr.clone());
                expression
                    .values
                    .insert(format!(":add{index}"), AttributeValue::N(delta.to_string()));
                adds.push(format!("#add{index} :add{index}"));
            }
            item.update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key_map(key)))
                    .update_expression(format!("ADD {}", adds.join(", ")))
                    .set_condition_expression(expression.text.clone())
                    .set_expression_attribute_names(expression.names())
                    .set_expression_attribute_values(expression.values())
                    .build()
                    .map_err(StoreError::unavailable)?,
            )
        }
    };
    Ok(item.build())
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::config::http::HttpResponse;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn service_error(code: &str) -> SdkError<PutItemError, HttpResponse> {
        let raw = HttpResponse::new(
            400.try_into().unwrap_or_else(|_| unreachable!()),
            SdkBody::empty(),
        );
        SdkError::service_error(
            PutItemError::generic(ErrorMetadata::builder().code(code).build()),
            raw,
        )
    }

    #[test]
    fn conditional_check_failures_are_typed() {
        assert!(matches!(
            map_error(service_error("ConditionalCheckFailedException")),
            StoreError::ConditionFailed
        ));
    }

    #[test]
    fn every_throttling_code_maps_to_throttled() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            assert!(
                matches!(map_error(service_error(code)), StoreError::Throttled),
                "{code}"
            );
        }
        assert!(matches!(
            map_error(service_error("InternalServerError")),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn canceled_transactions_name_the_failed_conditions_first() {
        let reasons = |codes: &[&str]| -> Vec<CancellationReason> {
            codes
                .iter()
                .map(|code| CancellationReason::builder().code(*code).build())
                .collect()
        };
        let err = cancellation_error(
            &reasons(&["None", "ConditionalCheckFailed", "TransactionConflict"]),
            service_error("TransactionCanceledException"),
        );
        assert!(matches!(err, StoreError::TransactionFailed(failed) if failed == [1]));
        let err = cancellation_error(
            &reasons(&["None", "TransactionConflict"]),
            service_error("TransactionCanceledException"),
        );
        assert!(matches!(err, StoreError::TransactionConflict));
        let err = cancellation_error(
            &reasons(&["ThrottlingError", "None"]),
            service_error("TransactionCanceledException"),
        );
        assert!(matches!(err, StoreError::Throttled));
    }
}
