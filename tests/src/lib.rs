//! Shared helpers for Fjord's integration tests, crash tests and benchmark drivers.
