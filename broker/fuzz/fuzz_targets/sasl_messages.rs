//! What an unauthenticated client sends during a SASL login: PLAIN messages and both SCRAM
//! client messages (the first input byte splits the data into the two), against a stored
//! credential and an unknown user: never a panic, and never an authentication.
#![no_main]

use std::sync::OnceLock;

use fjord_broker::security::scram::{ScramCredential, ScramMechanism, ScramServer, parse_plain};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: fjord_broker::alloc::GuardedAlloc = fjord_broker::alloc::GuardedAlloc;

fn stored() -> &'static ScramCredential {
    static STORED: OnceLock<ScramCredential> = OnceLock::new();
    STORED.get_or_init(|| ScramCredential::new(ScramMechanism::Sha256, b"secret"))
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_plain(data);
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
