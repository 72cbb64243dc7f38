//! The benchmark driver behind `make bench` (`src/bin/fjord-bench.rs`): workloads on
//! librdkafka, the brokers it compares, the machine's ceiling, and the report.

pub mod ceiling;
pub mod report;
pub mod target;
pub mod workload;
