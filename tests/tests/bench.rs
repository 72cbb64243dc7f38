//! The benchmark command runs end to end (debug build, one short round): every workload against
//! Fjord and the peer, and a table with a ratio on every row. The figures themselves come from
//! `make bench` (release build), never from a test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use fjord_tests::broker_binary;

#[test]
fn the_benchmark_runs_every_workload_against_both_brokers_and_prints_ratios() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fjord-bench"))
        .args(["--rounds", "1", "--seconds", "0.3", "--consume-mib", "4"])
        .arg("--fjord")
        .arg(broker_binary())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "fjord-bench failed: {stderr}");
    let table = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| W") && !l.starts_with("| Workload"))
        .collect();
    assert_eq!(rows.len(), 11, "{table}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | workload | figure | Fjord | Tansu | ratio | noise | relaxed |
        for cell in &cells[3..8] {
            assert!(
                cell.parse::<f64>().is_ok_and(|v| v > 0.0),
                "{row}\n{stderr}"
            );
        }
    }
    assert!(table.contains("Machine ceiling: loopback TCP"), "{table}");
}
