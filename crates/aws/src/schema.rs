//! The two tables as berth needs them, created the way the template
//! declares them (for the local AWS and the tests; a deployment gets them
//! from template.yaml).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};

use crate::AwsError;
use crate::store::{STATUS_INDEX, STATUS_INDEX_ATTRIBUTES, attr};

/// Creates the jobs table: partition key `job_id`, and the status index.
pub async fn create_jobs_table(ddb: &Client, name: &str) -> Result<(), AwsError> {
    let index = GlobalSecondaryIndex::builder()
        .index_name(STATUS_INDEX)
        .key_schema(key(attr::STATUS, KeyType::Hash)?)
        .key_schema(key(attr::UPDATED_AT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    STATUS_INDEX_ATTRIBUTES
                        .iter()
                        .map(|a| a.to_string())
                        .collect(),
                ))
                .build(),
        )
        .build()
        .map_err(invalid)?;
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition(attr::JOB_ID, ScalarAttributeType::S)?)
        .attribute_definitions(definition(attr::STATUS, ScalarAttributeType::S)?)
        .attribute_definitions(definition(attr::UPDATED_AT, ScalarAttributeType::N)?)
        .key_schema(key(attr::JOB_ID, KeyType::Hash)?)
        .global_secondary_indexes(index)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("dynamodb:CreateTable", e))?;
    Ok(())
}

/// Creates the job definitions table: partition key `name`.
pub async fn create_definitions_table(ddb: &Client, name: &str) -> Result<(), AwsError> {
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(definition("name", ScalarAttributeType::S)?)
        .key_schema(key("name", KeyType::Hash)?)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("dynamodb:CreateTable", e))?;
    Ok(())
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, AwsError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(invalid)
}

fn definition(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, AwsError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(invalid)
}

fn invalid(e: aws_sdk_dynamodb::error::BuildError) -> AwsError {
    AwsError {
        operation: "dynamodb:CreateTable",
        code: None,
        message: e.to_string(),
        retryable: false,
    }
}
