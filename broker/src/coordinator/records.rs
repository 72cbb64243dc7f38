//! The records of `__consumer_offsets`, in Kafka's own key and value schemas, so tools that
//! read that topic (and a future migration) understand them. Keys: version 0 and 1 are an offset
//! commit (group, topic, partition), version 2 is a group's metadata. Values are written at
//! version 3 (the newest non-flexible one) and read at versions 0 to 3. A null value is a
//! tombstone: the offset or the group is gone.

use bytes::{BufMut, Bytes};

/// Which state a record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            Self::Offset { group, .. } | Self::Group { group } => group,
        }
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when the client did not send one.
    pub leader_epoch: i32,
    pub metadata: String,
    /// Wall-clock milliseconds of the commit.
    pub commit_timestamp: i64,
}

/// A group's membership and assignment after a rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// Wall-clock milliseconds of the last state change (when an empty group became empty).
    pub state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the record ends inside its {field}")]
    Truncated { field: &'static str },
    #[error("a {field} is not UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("a {field} has a negative length {len}")]
    NegativeLength { field: &'static str, len: i32 },
    #[error("unknown key version {version}")]
    UnknownKeyVersion { version: i16 },
    #[error("unknown {kind} value version {version}")]
    UnknownValueVersion { kind: &'static str, version: i16 },
}

const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

pub fn encode_key(key: &RecordKey) -> Vec<u8> {
    let mut out = Vec::new();
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            out.put_i16(1);
            put_string(&mut out, group);
            put_string(&mut out, topic);
            out.put_i32(*partition);
        }
        RecordKey::Group { group } => {
            out.put_i16(2);
            put_string(&mut out, group);
        }
    }
    out
}

pub fn decode_key(buf: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader(buf);
    match r.i16("key version")? {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.string("group id")?,
            topic: r.string("topic")?,
            partition: r.i32("partition")?,
        }),
        2 => Ok(RecordKey::Group {
            group: r.string("group id")?,
        }),
        version => Err(RecordError::UnknownKeyVersion { version }),
    }
}

pub fn encode_offset(value: &OffsetValue) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(OFFSET_VALUE_VERSION);
    out.put_i64(value.offset);
    out.put_i32(value.leader_epoch);
    put_string(&mut out, &value.metadata);
    out.put_i64(value.commit_timestamp);
    out
}

pub fn decode_offset(buf: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader(buf);
    let version = r.i16("value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion {
            kind: "offset",
            version,
        });
    }
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 {
        r.i32("leader epoch")?
    } else {
        -1
    };
    let metadata = r.string("metadata")?;
    let commit_timestamp = r.i64("commit timestamp")?;
    if version == 1 {
        r.i64("expire timestamp")?;
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

pub fn encode_group(value: &GroupValue) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut out, &value.protocol_type);
    out.put_i32(value.generation);
    put_nullable_string(&mut out, value.protocol.as_deref());
    put_nullable_string(&mut out, value.leader.as_deref());
    out.put_i64(value.state_timestamp);
    out.put_i32(value.members.len() as i32);
    for member in &value.members {
        put_string(&mut out, &member.member_id);
        put_nullable_string(&mut out, member.instance_id.as_deref());
        put_string(&mut out, &member.client_id);
        put_string(&mut out, &member.client_host);
        out.put_i32(member.rebalance_timeout_ms);
        out.put_i32(member.session_timeout_ms);
        put_bytes(&mut out, &member.subscription);
        put_bytes(&mut out, &member.assignment);
    }
    out
}

pub fn decode_group(buf: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader(buf);
    let version = r.i16("value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion {
            kind: "group",
            version,
        });
    }
    let protocol_type = r.string("protocol type")?;
    let generation = r.i32("generation")?;
    let protocol = r.nullable_string("protocol")?;
    let leader = r.nullable_string("leader")?;
    let state_timestamp = if version >= 2 {
        r.i64("state timestamp")?
    } else {
        -1
    };
    let count = r.i32("member count")?;
    if count < 0 {
        return Err(RecordError::NegativeLength {
            field: "member array",
            len: count,
        });
    }
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.string("member id")?;
        let instance_id = if version >= 3 {
            r.nullable_string("group instance id")?
        } else {
            None
        };
        let client_id = r.string("client id")?;
        let client_host = r.string("client host")?;
        let session_timeout_ms;
        let rebalance_timeout_ms;
        if version >= 1 {
            rebalance_timeout_ms = r.i32("rebalance timeout")?;
            session_timeout_ms = r.i32("session timeout")?;
        } else {
            session_timeout_ms = r.i32("session timeout")?;
            rebalance_timeout_ms = session_timeout_ms;
        }
        members.push(MemberValue {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: r.bytes("subscription")?,
            assignment: r.bytes("assignment")?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn put_nullable_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_string(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated { field });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        let len = self.i16(field)?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize, field)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| RecordError::NotUtf8 { field })
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        Ok(self.nullable_string(field)?.unwrap_or_default())
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        let len = self.i32(field)?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize, field)?))
    }
}

/// Decodes any key and value, for the fuzz target: must never panic.
pub fn fuzz_decode(data: &[u8]) {
    let _ = decode_key(data);
    let _ = decode_offset(data);
    let _ = decode_group(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9._-]{0,20}"
    }

    fn member() -> impl Strategy<Value = MemberValue> {
        (
            text(),
            proptest::option::of(text()),
            text(),
            text(),
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(
                |(member_id, instance_id, client_id, client_host, rb, st, sub, asg)| MemberValue {
                    member_id,
                    instance_id,
                    client_id,
                    client_host,
                    rebalance_timeout_ms: rb,
                    session_timeout_ms: st,
                    subscription: Bytes::from(sub),
                    assignment: Bytes::from(asg),
                },
            )
    }

    proptest! {
        #[test]
        fn keys_round_trip(group in text(), topic in text(), partition in any::<i32>(), offset_key in any::<bool>()) {
            let key = if offset_key {
                RecordKey::Offset { group, topic, partition }
            } else {
                RecordKey::Group { group }
            };
            prop_assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        }

        #[test]
        fn offsets_round_trip(offset in any::<i64>(), leader_epoch in any::<i32>(), metadata in text(), ts in any::<i64>()) {
            let value = OffsetValue { offset, leader_epoch, metadata, commit_timestamp: ts };
            prop_assert_eq!(decode_offset(&encode_offset(&value)).unwrap(), value);
        }

        #[test]
        fn groups_round_trip(
            protocol_type in text(),
            generation in any::<i32>(),
            protocol in proptest::option::of(text()),
            leader in proptest::option::of(text()),
            state_timestamp in any::<i64>(),
            members in proptest::collection::vec(member(), 0..4),
        ) {
            let value = GroupValue { protocol_type, generation, protocol, leader, state_timestamp, members };
            prop_assert_eq!(decode_group(&encode_group(&value)).unwrap(), value);
        }

        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            fuzz_decode(&data);
        }
    }

    #[test]
    fn reads_kafkas_version_1_offset_value() {
        // Kafka 2.0 wrote offset values at version 1, with an expire timestamp.
        let mut v1 = Vec::new();
        v1.put_i16(1);
        v1.put_i64(42);
        put_string(&mut v1, "meta");
        v1.put_i64(1_000);
        v1.put_i64(2_000);
        assert_eq!(
            decode_offset(&v1).unwrap(),
            OffsetValue {
                offset: 42,
                leader_epoch: -1,
                metadata: "meta".into(),
                commit_timestamp: 1_000
            }
        );
    }

    #[test]
    fn truncated_values_are_errors() {
        let value = encode_offset(&OffsetValue {
            offset: 1,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp: 0,
        });
        assert_eq!(
            decode_offset(&value[..value.len() - 1]),
            Err(RecordError::Truncated {
                field: "commit timestamp"
            })
        );
        assert_eq!(
            decode_key(&[0, 9]),
            Err(RecordError::UnknownKeyVersion { version: 9 })
        );
    }
}
