//! The API server's service-account issuer, published to a Cluster's brokers so they take
//! OAUTHBEARER logins with service-account tokens: the `issuer` of its OpenID discovery
//! document (`/.well-known/openid-configuration`) and its token-signing keys
//! (`/openid/v1/jwks`), read with the operator's own credentials and written to ConfigMap
//! `<name>-service-account-keys` before the brokers start. Every reconcile reads them again, so
//! keys the API server rotates reach the brokers (which read the key file at each login)
//! within a resync.

use serde_json::Value;

use crate::controller::Error;

const DISCOVERY: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/openid/v1/jwks";

/// The issuer and the key set (JSON, as served) of the API server `client` talks to.
pub async fn discover(client: &kube::Client) -> Result<(String, String), Error> {
    let discovery = get(client, DISCOVERY).await?;
    let issuer = serde_json::from_str::<Value>(&discovery)
        .ok()
        .and_then(|document| document.get("issuer")?.as_str().map(str::to_owned))
        .filter(|issuer| !issuer.is_empty())
        .ok_or_else(|| Error::Discovery {
            path: DISCOVERY,
            problem: "no `issuer` in the document".into(),
        })?;
    let jwks = get(client, JWKS).await?;
    let keys = serde_json::from_str::<Value>(&jwks)
        .ok()
        .and_then(|set| set.get("keys")?.as_array().map(Vec::len));
    match keys {
        Some(count) if count > 0 => Ok((issuer, jwks)),
        _ => Err(Error::Discovery {
            path: JWKS,
            problem: "not a key set with keys".into(),
        }),
    }
}

async fn get(client: &kube::Client, path: &'static str) -> Result<String, Error> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| Error::Discovery {
            path,
            problem: e.to_string(),
        })?;
    client
        .request_text(request)
        .await
        .map_err(|e| Error::Discovery {
            path,
            problem: crate::controller::DisplayChain(&e).to_string(),
        })
}
