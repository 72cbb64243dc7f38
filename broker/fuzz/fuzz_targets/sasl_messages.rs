//! What an unauthenticated client sends during a SASL login: PLAIN messages, both SCRAM client
//! messages (the first input byte splits the data into the two), against a stored credential
//! and an unknown user, and OAUTHBEARER messages whose token is checked against a key set:
//! never a panic, and never an authentication.
#![no_main]

use std::sync::OnceLock;

use fjord_broker::security::oauth::{Expectations, Jwks, bearer_token, validate};
use fjord_broker::security::scram::{ScramCredential, ScramMechanism, ScramServer, parse_plain};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

fn stored() -> &'static ScramCredential {
    static STORED: OnceLock<ScramCredential> = OnceLock::new();
    STORED.get_or_init(|| ScramCredential::new(ScramMechanism::Sha256, b"secret"))
}

fn keys() -> &'static Jwks {
    static KEYS: OnceLock<Jwks> = OnceLock::new();
    KEYS.get_or_init(|| {
        Jwks::parse(include_bytes!("../../src/security/testdata/rs256.jwks.json")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_plain(data);
    let expected = Expectations {
        issuer: "https://kubernetes.default.svc.cluster.local".to_owned(),
        audience: "fjord".to_owned(),
    };
    let token = bearer_token(data).ok().or_else(|| std::str::from_utf8(data).ok());
    if let Some(token) = token {
        let _ = validate(token, keys(), &expected, 1_796_000_060);
    }
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (first, last) = rest.split_at(usize::from(split).min(rest.len()));
    for known in [true, false] {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        if server
            .client_first(first, |_| known.then(|| stored().clone()))
            .is_ok()
        {
            // A random proof cannot be right.
            assert!(server.client_final(last).is_err());
        }
    }
});
