//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): the SCRAM credentials
//! in the cluster metadata. A client sends the salted password (never the password); the broker
//! keeps only the keys derived from it. Errors are Kafka's, per user: an unknown mechanism is
//! UNSUPPORTED_SASL_MECHANISM, an empty name, salt or salted password or an iteration count
//! outside 4096..=16384 UNACCEPTABLE_CREDENTIAL, a user's mechanism named twice
//! DUPLICATE_RESOURCE, a credential that is not there RESOURCE_NOT_FOUND. A user with any error
//! has none of its changes made; the others' are committed together.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::{Context, str_bytes};
use crate::cluster::{MetadataRecord, UserScramCredential};
use crate::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramCredential, ScramMechanism};

pub(super) fn describe(
    ctx: &Context,
    request: &DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = ctx.image();
    let info = |credentials: &BTreeMap<ScramMechanism, ScramCredential>| -> Vec<CredentialInfo> {
        credentials
            .iter()
            .map(|(mechanism, credential)| {
                CredentialInfo::default()
                    .with_mechanism(mechanism.kafka_type())
                    .with_iterations(i32::try_from(credential.iterations).unwrap_or(i32::MAX))
            })
            .collect()
    };
    let asked: Vec<String> = request
        .users
        .iter()
        .flatten()
        .map(|user| user.name.to_string())
        .collect();
    let results = if asked.is_empty() {
        image
            .scram
            .iter()
            .map(|(user, credentials)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(user.clone()))
                    .with_credential_infos(info(credentials))
            })
            .collect()
    } else {
        let mut seen = BTreeSet::new();
        let twice: BTreeSet<&String> = asked.iter().filter(|u| !seen.insert(*u)).collect();
        let mut answered = BTreeSet::new();
        asked
            .iter()
            .filter(|user| answered.insert(*user))
            .map(|user| {
                let result = DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(user.clone()));
                if twice.contains(user) {
                    return result
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(Some(str_bytes(
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        )));
                }
                match image.scram.get(user) {
                    Some(credentials) => result.with_credential_infos(info(credentials)),
                    None => result
                        .with_error_code(ResponseError::ResourceNotFound.code())
                        .with_error_message(Some(str_bytes(
                            "Attempt to describe a user credential that does not exist",
                        ))),
                }
            })
            .collect()
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One user's changes, or the first reason they are refused.
type UserChanges = Result<Vec<MetadataRecord>, (ResponseError, &'static str)>;

pub(super) async fn alter(
    ctx: &Context,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let image = ctx.image();
    // Users in the order they first appear, each with its changes.
    let mut order: Vec<String> = Vec::new();
    let mut changes: BTreeMap<String, UserChanges> = BTreeMap::new();
    let mut named: BTreeSet<(String, i8)> = BTreeSet::new();
    let mut add = |user: &str, mechanism: i8, change: UserChanges| {
        if !changes.contains_key(user) {
            order.push(user.to_owned());
        }
        let twice = !named.insert((user.to_owned(), mechanism));
        let entry = changes
            .entry(user.to_owned())
            .or_insert_with(|| Ok(Vec::new()));
        let Ok(records) = entry else { return };
        match change {
            _ if twice => {
                *entry = Err((
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request",
                ));
            }
            Ok(more) => records.extend(more),
            Err(error) => *entry = Err(error),
        }
    };
    for deletion in &request.deletions {
        let user = deletion.name.to_string();
        let change = mechanism(deletion.mechanism).and_then(|mechanism| {
            if user.is_empty() {
                return Err(empty_name());
            }
            if image.scram_credential(&user, mechanism).is_none() {
                return Err((
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist",
                ));
            }
            Ok(vec![MetadataRecord::DeleteScramCredential {
                user: user.clone(),
                mechanism,
            }])
        });
        add(&user, deletion.mechanism, change);
    }
    for upsertion in &request.upsertions {
        let user = upsertion.name.to_string();
        let change = mechanism(upsertion.mechanism).and_then(|mechanism| {
            if user.is_empty() {
                return Err(empty_name());
            }
            let iterations = u32::try_from(upsertion.iterations).unwrap_or(0);
            if iterations < MIN_ITERATIONS {
                return Err((ResponseError::UnacceptableCredential, "Too few iterations"));
            }
            if iterations > MAX_ITERATIONS {
                return Err((ResponseError::UnacceptableCredential, "Too many iterations"));
            }
            if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "the salt and the salted password must not be empty",
                ));
            }
            Ok(vec![MetadataRecord::SetScramCredential(
                UserScramCredential {
                    user: user.clone(),
                    mechanism,
                    credential: ScramCredential::from_salted_password(
                        mechanism,
                        &upsertion.salt,
                        iterations,
                        &upsertion.salted_password,
                    ),
                },
            )])
        });
        add(&user, upsertion.mechanism, change);
    }
    let records: Vec<MetadataRecord> = changes
        .values()
        .filter_map(|change| change.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let committed = if records.is_empty() {
        Ok(())
    } else {
        ctx.commit(records).await
    };
    let results = order
        .into_iter()
        .map(|user| {
            let outcome = match (&changes[&user], &committed) {
                (Err((error, message)), _) => Err((*error, (*message).to_owned())),
                (Ok(_), Err(error)) => Err(error.clone()),
                (Ok(_), Ok(())) => Ok(()),
            };
            let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
            match outcome {
                Ok(()) => result,
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn mechanism(value: i8) -> Result<ScramMechanism, (ResponseError, &'static str)> {
    ScramMechanism::from_kafka_type(value).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        "Unknown SCRAM mechanism",
    ))
}

fn empty_name() -> (ResponseError, &'static str) {
    (
        ResponseError::UnacceptableCredential,
        "Username must not be empty",
    )
}
