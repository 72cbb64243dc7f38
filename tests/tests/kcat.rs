//! Debian's kcat (librdkafka 2.0.2, the old-client case) against Fjord: metadata, keyed produce
//! with headers and every compression codec, and consume by partition.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};

use fjord_tests::{TestBroker, require_tool};

fn kcat(broker: &TestBroker, args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new(require_tool("kcat"))
        .arg("-b")
        .arg(broker.bootstrap())
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting kcat");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn kcat_lists_metadata() {
    let broker = TestBroker::start(|c| c.default_partitions = 3);
    kcat(&broker, &["-P", "-t", "listed"], Some("one\n"));
    let listing = kcat(&broker, &["-L"], None);
    assert!(
        listing.contains(&format!("broker 1 at {} (controller)", broker.bootstrap())),
        "{listing}"
    );
    assert!(
        listing.contains("topic \"listed\" with 3 partitions"),
        "{listing}"
    );
    assert!(
        listing.contains("partition 2, leader 1, replicas: 1, isrs: 1"),
        "{listing}"
    );
}

#[test]
fn kcat_produces_keyed_records_with_headers_in_every_codec_and_reads_them_back() {
    let broker = TestBroker::start(|c| c.default_partitions = 4);
    let mut sent: Vec<(String, String)> = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let lines: Vec<(String, String)> = (0..25)
            .map(|i| (format!("key-{}", i % 7), format!("{codec}-value-{i}")))
            .collect();
        let input: String = lines.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
        kcat(
            &broker,
            &[
                "-P",
                "-t",
                "codecs",
                "-K",
                "\t",
                "-z",
                codec,
                "-H",
                &format!("codec={codec}"),
            ],
            Some(&input),
        );
        sent.extend(lines);
    }
    // A null value (-Z turns an empty value into NULL) and an empty key.
    kcat(
        &broker,
        &["-P", "-t", "codecs", "-K", "\t", "-Z"],
        Some("tomb\t\n"),
    );

    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    let mut received: BTreeMap<i32, Vec<(i64, String, String, String)>> = BTreeMap::new();
    for partition in 0..4 {
        let out = kcat(
            &broker,
            &[
                "-C",
                "-t",
                "codecs",
                "-p",
                &partition.to_string(),
                "-o",
                "beginning",
                "-e",
                "-Z",
                "-f",
                "%o|%k|%S|%s|%h\n",
            ],
            None,
        );
        for line in out.lines() {
            let fields: Vec<&str> = line.splitn(5, '|').collect();
            let (offset, key, size, value, headers) =
                (fields[0], fields[1], fields[2], fields[3], fields[4]);
            let previous = partition_of_key.insert(key.to_owned(), partition);
            assert!(
                previous.is_none_or(|p| p == partition),
                "key {key} in partitions {previous:?} and {partition}"
            );
            let value = if size == "-1" {
                "<null>".to_owned()
            } else {
                value.to_owned()
            };
            received.entry(partition).or_default().push((
                offset.parse().unwrap(),
                key.to_owned(),
                value,
                headers.to_owned(),
            ));
        }
    }
    for (partition, records) in &received {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (0..records.len() as i64).collect::<Vec<_>>(),
            "partition {partition} offsets"
        );
    }
    let all: Vec<&(i64, String, String, String)> = received.values().flatten().collect();
    assert_eq!(all.len(), sent.len() + 1);
    assert!(
        all.iter().any(|r| r.1 == "tomb" && r.2 == "<null>"),
        "null value read back as null"
    );
    // Per key, values come back in the order they were sent, each with its codec's header.
    for (key, _) in &sent {
        let expected: Vec<&String> = sent
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect();
        let got: Vec<&String> = all.iter().filter(|r| &r.1 == key).map(|r| &r.2).collect();
        assert_eq!(got, expected, "order of key {key}");
    }
    for record in all.iter().filter(|r| r.1 != "tomb") {
        let codec = record.2.split('-').next().unwrap();
        assert_eq!(record.3, format!("codec={codec}"));
    }
}

#[test]
fn kcat_consumes_as_a_group_and_the_next_run_continues_from_the_commit() {
    let broker = TestBroker::start(|c| c.default_partitions = 3);
    let first: Vec<String> = (0..60).map(|i| format!("first-{i}")).collect();
    kcat(
        &broker,
        &["-P", "-t", "grouped"],
        Some(&(first.join("\n") + "\n")),
    );
    // -G: a balanced consumer group (new groups start from the beginning); -e: exit at the end
    // of every partition. librdkafka commits what it consumed when it closes. (-o would
    // override the committed offsets.)
    let group_run = || {
        let out = kcat(
            &broker,
            &[
                "-G",
                "kcat-group",
                "-X",
                "auto.offset.reset=earliest",
                "-e",
                "-f",
                "%s\n",
                "grouped",
            ],
            None,
        );
        let mut values: Vec<String> = out.lines().map(str::to_owned).collect();
        values.sort();
        values
    };
    let mut expected = first;
    expected.sort();
    assert_eq!(group_run(), expected);
    let second: Vec<String> = (0..7).map(|i| format!("second-{i}")).collect();
    kcat(
        &broker,
        &["-P", "-t", "grouped"],
        Some(&(second.join("\n") + "\n")),
    );
    let mut expected = second;
    expected.sort();
    assert_eq!(group_run(), expected, "only what arrived after the commit");
}
