//! What Fjord's processes (the broker and the operator) share at run time, so the operator does
//! not link the broker: the guarded global allocator both decode Kafka messages with
//! ([`alloc`]), and the small HTTP server of their admin and metrics endpoints ([`http`]).

pub mod alloc;
pub mod http;

// The allocator's own tests reserve more than the machine has: they run on it.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc::GuardedAlloc = alloc::GuardedAlloc;
