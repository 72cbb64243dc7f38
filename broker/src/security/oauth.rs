//! OAUTHBEARER (KIP-255, RFC 7628) with JSON Web Tokens such as Kubernetes service-account
//! tokens: the client's SASL message, and the checks a token must pass.
//!
//! A token is a JWS in compact form (`header.claims.signature`, base64url) signed with RS256 or
//! ES256 by a key of the issuer's JSON Web Key Set. It is accepted when its signature verifies
//! with the key its `kid` names (or the only key), its `iss` is the issuer the broker was
//! given, its `aud` names the broker's audience (a token minted for another purpose is
//! refused), it has not expired (`exp`) and is already valid (`nbf`). Its `sub` is the
//! principal's name: a Kubernetes service-account token gives
//! `User:system:serviceaccount:<namespace>:<name>`. Every failure is an error naming the check
//! that failed, for the broker's log; the client is told only that authentication failed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use ring::signature;

/// Why a token or a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed OAUTHBEARER message")]
    Message,
    #[error("malformed token")]
    Malformed,
    #[error("token signed with {0}, not RS256 or ES256")]
    Algorithm(String),
    #[error("no key in the key set for the token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is {0:?}")]
    Issuer(Option<String>),
    #[error("the token is not for this audience")]
    Audience,
    #[error("the token names no subject")]
    Subject,
}

/// Why a key set was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JSON Web Key Set")]
    Json(#[from] serde_json::Error),
    #[error("key {index}: {problem}")]
    Key { index: usize, problem: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed P-256 point (`04 || x || y`).
    P256(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    kid: Option<String>,
    key: PublicKey,
}

/// The issuer's signing keys (what `/openid/v1/jwks` of a Kubernetes API server serves).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(serde::Deserialize)]
struct JwksJson {
    keys: Vec<serde_json::Value>,
}

fn field(key: &serde_json::Value, name: &str) -> Option<Vec<u8>> {
    BASE64URL.decode(key.get(name)?.as_str()?).ok()
}

impl Jwks {
    /// Parses a key set; keys of other types (and encryption keys) are skipped, an RSA or P-256
    /// key without its parameters is an error.
    pub fn parse(json: &[u8]) -> Result<Self, JwksError> {
        let parsed: JwksJson = serde_json::from_slice(json)?;
        let mut keys = Vec::new();
        for (index, key) in parsed.keys.iter().enumerate() {
            let problem = |problem| JwksError::Key { index, problem };
            if key
                .get("use")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let kid = key.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let public = match key.get("kty").and_then(|k| k.as_str()) {
                Some("RSA") => PublicKey::Rsa {
                    n: field(key, "n").ok_or_else(|| problem("an RSA key without n"))?,
                    e: field(key, "e").ok_or_else(|| problem("an RSA key without e"))?,
                },
                Some("EC") => {
                    if key.get("crv").and_then(|c| c.as_str()) != Some("P-256") {
                        continue;
                    }
                    let (x, y) = (field(key, "x"), field(key, "y"));
                    let (Some(x), Some(y)) = (x, y) else {
                        return Err(problem("an EC key without x and y"));
                    };
                    if x.len() != 32 || y.len() != 32 {
                        return Err(problem("a P-256 key whose x or y is not 32 bytes"));
                    }
                    let mut point = vec![4];
                    point.extend(x);
                    point.extend(y);
                    PublicKey::P256(point)
                }
                _ => continue,
            };
            keys.push(Jwk { kid, key: public });
        }
        Ok(Self { keys })
    }

    fn key(&self, kid: Option<&str>) -> Option<&PublicKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| &k.key),
            None if self.keys.len() == 1 => Some(&self.keys[0].key),
            None => None,
        }
    }
}

/// What a token must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// `iss` must be this.
    pub issuer: String,
    /// `aud` (a string or a list) must name this.
    pub audience: String,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// `sub`: the principal's name.
    pub subject: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

/// Leeway for clocks that disagree a little (seconds), on `exp` and `nbf`.
const CLOCK_SKEW: u64 = 30;

/// The largest token taken (Kubernetes tokens are about 1 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The token of a client's OAUTHBEARER message (RFC 7628):
/// `gs2-header \x01 auth=Bearer <token> \x01 (key=value \x01)* \x01`. Kafka's extensions (other
/// keys) are taken and ignored.
pub fn bearer_token(message: &[u8]) -> Result<&str, TokenError> {
    let message = std::str::from_utf8(message).map_err(|_| TokenError::Message)?;
    let (gs2, rest) = message.split_once('\u{1}').ok_or(TokenError::Message)?;
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) || !gs2.ends_with(',') {
        return Err(TokenError::Message);
    }
    let body = rest.strip_suffix("\u{1}\u{1}").ok_or(TokenError::Message)?;
    let mut token = None;
    for pair in body.split('\u{1}') {
        let (key, value) = pair.split_once('=').ok_or(TokenError::Message)?;
        if key == "auth" {
            let value = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or(TokenError::Message)?;
            token = Some(value.trim());
        }
    }
    token
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
        .ok_or(TokenError::Message)
}

/// Checks `token` against `keys` and `expected` at `now` (seconds since the epoch).
pub fn validate(
    token: &str,
    keys: &Jwks,
    expected: &Expectations,
    now: u64,
) -> Result<Validated, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let decode = |part: &str| BASE64URL.decode(part).map_err(|_| TokenError::Malformed);
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
    let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("none");
    let kid = header.get("kid").and_then(|k| k.as_str());
    let signature = decode(sig)?;
    let signed = &token.as_bytes()[..token.len() - sig.len() - 1];
    let key = keys
        .key(kid)
        .ok_or_else(|| TokenError::UnknownKey(kid.map(str::to_owned)))?;
    let verified = match (alg, key) {
        ("RS256", PublicKey::Rsa { n, e }) => signature::RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &signature)
            .is_ok(),
        ("ES256", PublicKey::P256(point)) => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &signature)
                .is_ok()
        }
        ("RS256" | "ES256", _) => false,
        (other, _) => return Err(TokenError::Algorithm(other.to_owned())),
    };
    if !verified {
        return Err(TokenError::Signature);
    }
    // Only now, with the signature checked, are the claims read.
    let claims: serde_json::Value =
        serde_json::from_slice(&decode(claims)?).map_err(|_| TokenError::Malformed)?;
    let number = |name: &str| claims.get(name).and_then(serde_json::Value::as_u64);
    let expires_at = number("exp").ok_or(TokenError::Expired)?;
    if now >= expires_at.saturating_add(CLOCK_SKEW) {
        return Err(TokenError::Expired);
    }
    if number("nbf").is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW)) {
        return Err(TokenError::NotYetValid);
    }
    let issuer = claims.get("iss").and_then(|i| i.as_str());
    if issuer != Some(expected.issuer.as_str()) {
        return Err(TokenError::Issuer(issuer.map(str::to_owned)));
    }
    let audience = match claims.get("aud") {
        Some(serde_json::Value::String(one)) => *one == expected.audience,
        Some(serde_json::Value::Array(many)) => {
            many.iter().any(|a| a.as_str() == Some(&expected.audience))
        }
        _ => false,
    };
    if !audience {
        return Err(TokenError::Audience);
    }
    let subject = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::Subject)?;
    Ok(Validated {
        subject: subject.to_owned(),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token and key set made with Python's `cryptography` (RSA 2048, PKCS#1 v1.5): an
    /// implementation other than the one checking it. Valid from 1796000000 to 1796003600.
    const RS256_JWKS: &str = include_str!("testdata/rs256.jwks.json");
    const RS256_TOKEN: &str = include_str!("testdata/rs256.token");
    const ISSUED: u64 = 1_796_000_000;

    fn kubernetes() -> Expectations {
        Expectations {
            issuer: "https://kubernetes.default.svc.cluster.local".to_owned(),
            audience: "fjord".to_owned(),
        }
    }

    #[test]
    fn a_service_account_token_signed_with_rs256_is_taken() {
        let keys = Jwks::parse(RS256_JWKS.as_bytes()).unwrap();
        let token = RS256_TOKEN.trim();
        assert_eq!(
            validate(token, &keys, &kubernetes(), ISSUED + 60).unwrap(),
            Validated {
                subject: "system:serviceaccount:payments:writer".to_owned(),
                expires_at: ISSUED + 3600,
            }
        );
        // Expired (past the leeway), not yet valid, another issuer, another audience.
        assert_eq!(
            validate(token, &keys, &kubernetes(), ISSUED + 3600 + CLOCK_SKEW),
            Err(TokenError::Expired)
        );
        assert_eq!(
            validate(token, &keys, &kubernetes(), ISSUED - CLOCK_SKEW - 1),
            Err(TokenError::NotYetValid)
        );
        let other_issuer = Expectations {
            issuer: "https://elsewhere".to_owned(),
            ..kubernetes()
        };
        assert!(matches!(
            validate(token, &keys, &other_issuer, ISSUED + 60),
            Err(TokenError::Issuer(_))
        ));
        let other_audience = Expectations {
            audience: "vault".to_owned(),
            ..kubernetes()
        };
        assert_eq!(
            validate(token, &keys, &other_audience, ISSUED + 60),
            Err(TokenError::Audience)
        );
        // One flipped byte of the claims: the signature no longer verifies.
        let (head, rest) = token.split_once('.').unwrap();
        let tampered = format!("{head}.{}", rest.replacen('J', "K", 1));
        assert_eq!(
            validate(&tampered, &keys, &kubernetes(), ISSUED + 60),
            Err(TokenError::Signature)
        );
    }

    /// A P-256 key made here, and tokens it signs.
    struct Signer {
        pair: signature::EcdsaKeyPair,
        jwks: Jwks,
    }

    impl Signer {
        fn new(kid: &str) -> Self {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &rng,
            )
            .unwrap();
            let pair = signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                pkcs8.as_ref(),
                &rng,
            )
            .unwrap();
            let point = signature::KeyPair::public_key(&pair).as_ref().to_vec();
            let json = serde_json::json!({"keys": [
                {"kty": "RSA", "use": "enc", "kid": "encryption", "n": "AQAB", "e": "AQAB"},
                {"kty": "EC", "crv": "P-256", "kid": kid,
                 "x": BASE64URL.encode(&point[1..33]), "y": BASE64URL.encode(&point[33..])}
            ]});
            let jwks = Jwks::parse(json.to_string().as_bytes()).unwrap();
            Self { pair, jwks }
        }

        fn token(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
            let signed = format!(
                "{}.{}",
                BASE64URL.encode(header.to_string()),
                BASE64URL.encode(claims.to_string())
            );
            let signature = self
                .pair
                .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
                .unwrap();
            format!("{signed}.{}", BASE64URL.encode(signature.as_ref()))
        }
    }

    #[test]
    fn es256_tokens_are_checked_claim_by_claim() {
        let signer = Signer::new("ec-1");
        let claims = |extra: serde_json::Value| {
            let mut claims = serde_json::json!({
                "iss": "https://kubernetes.default.svc.cluster.local",
                "aud": "fjord", "sub": "system:serviceaccount:team:reader",
                "exp": ISSUED + 600,
            });
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            claims
        };
        let header = serde_json::json!({"alg": "ES256", "kid": "ec-1"});
        let good = signer.token(header.clone(), claims(serde_json::json!({})));
        let validated = validate(&good, &signer.jwks, &kubernetes(), ISSUED).unwrap();
        assert_eq!(validated.subject, "system:serviceaccount:team:reader");

        let cases = [
            (
                header.clone(),
                serde_json::json!({"sub": ""}),
                TokenError::Subject,
            ),
            (
                header.clone(),
                serde_json::json!({"aud": ["a", "b"]}),
                TokenError::Audience,
            ),
            (
                header.clone(),
                serde_json::json!({"exp": null}),
                TokenError::Expired,
            ),
            (
                serde_json::json!({"alg": "ES256", "kid": "ec-2"}),
                serde_json::json!({}),
                TokenError::UnknownKey(Some("ec-2".to_owned())),
            ),
            (
                serde_json::json!({"alg": "none", "kid": "ec-1"}),
                serde_json::json!({}),
                TokenError::Algorithm("none".to_owned()),
            ),
            (
                serde_json::json!({"alg": "HS256", "kid": "ec-1"}),
                serde_json::json!({}),
                TokenError::Algorithm("HS256".to_owned()),
            ),
            // An RS256 header over an EC key: refused, not verified some other way.
            (
                serde_json::json!({"alg": "RS256", "kid": "ec-1"}),
                serde_json::json!({}),
                TokenError::Signature,
            ),
        ];
        for (header, extra, expected) in cases {
            let token = signer.token(header, claims(extra.clone()));
            assert_eq!(
                validate(&token, &signer.jwks, &kubernetes(), ISSUED),
                Err(expected),
                "{extra}"
            );
        }
        // Signed by another key of the same kid.
        let impostor = Signer::new("ec-1");
        let forged = impostor.token(header, claims(serde_json::json!({})));
        assert_eq!(
            validate(&forged, &signer.jwks, &kubernetes(), ISSUED),
            Err(TokenError::Signature)
        );
        for malformed in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(validate(malformed, &signer.jwks, &kubernetes(), ISSUED).is_err());
        }
    }

    #[test]
    fn oauthbearer_messages_carry_the_token() {
        assert_eq!(
            bearer_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(
            bearer_token(b"n,a=user,\x01host=broker\x01auth=Bearer t.o.k\x01ext=1\x01\x01")
                .unwrap(),
            "t.o.k"
        );
        for bad in [
            &b""[..],
            b"n,,",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01noequals\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"p=x,,\x01auth=Bearer t\x01\x01",
            b"\xff,,\x01auth=Bearer t\x01\x01",
        ] {
            assert_eq!(bearer_token(bad), Err(TokenError::Message), "{bad:?}");
        }
    }

    #[test]
    fn key_sets_skip_what_they_cannot_use_and_refuse_broken_keys() {
        let skipped = Jwks::parse(
            br#"{"keys": [{"kty": "oct", "k": "AA"}, {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}"#,
        )
        .unwrap();
        assert_eq!(skipped, Jwks::default());
        assert!(Jwks::parse(br#"{"keys": [{"kty": "RSA", "n": "AQAB"}]}"#).is_err());
        assert!(
            Jwks::parse(br#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#)
                .is_err()
        );
        assert!(Jwks::parse(b"not json").is_err());
    }
}
