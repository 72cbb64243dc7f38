//! The benchmark command runs end to end (debug build, one short round): every single-broker
//! workload against Fjord and the peer, with a ratio on every row, the replicated workloads on
//! three Fjord brokers, and W1 and W3 over TLS on Fjord. The figures themselves come from
//! `make bench` (release build), never from a test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use fjord_tests::broker_binary;

#[test]
fn the_benchmark_runs_every_workload_against_both_brokers_and_prints_ratios() {
    let data = tempfile::tempdir().unwrap();
    // W3's topic is large enough for the brokers' CPU while it is read to pass a clock tick
    // (10 ms): its CPU-per-MB figure needs some.
    let output = Command::new(env!("CARGO_BIN_EXE_fjord-bench"))
        .args(["--rounds", "1", "--seconds", "0.3", "--consume-mib", "32"])
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
    assert_eq!(rows.len(), 23, "{table}");
    let number = |cell: &str| cell.parse::<f64>().ok();
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | workload | figure | Fjord | Tansu | ratio | noise | relaxed | (Nisshi | ratio, when
        // it is installed) |
        if ["W6", "W7", "W8", "W1-TLS", "W3-TLS"].contains(&cells[1]) {
            // Fjord only: the peers do not replicate, and TLS is compared with Fjord's own
            // plaintext. W8's share may be 0.
            assert!(
                number(cells[3]).is_some_and(|v| v >= 0.0),
                "{row}\n{stderr}"
            );
            assert!(cells[4..8].iter().all(|c| *c == "–"), "{row}");
        } else {
            for cell in &cells[3..8] {
                assert!(number(cell).is_some_and(|v| v > 0.0), "{row}\n{stderr}");
            }
        }
    }
    // The cross-rack share of a consumer that names its rack.
    let share = table
        .lines()
        .find(|l| l.starts_with("| W8 | consumer with client.rack"))
        .and_then(|l| l.split('|').nth(3))
        .and_then(|c| c.trim().parse::<f64>().ok());
    assert!(share.is_some_and(|s| s < 1.0), "{table}");
    assert!(table.contains("Machine ceiling: loopback TCP"), "{table}");
    assert!(table.contains("Over TLS, W1 produces at"), "{table}");
}
