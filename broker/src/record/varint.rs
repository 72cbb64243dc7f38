//! Kafka's zig-zag varints, as used inside v2 records (lengths, deltas, header counts).

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The buffer ended before the last byte of the varint.
    Truncated,
    /// More continuation bytes than the type allows.
    TooLong,
}

/// Reads a zig-zag varint of at most `max_bytes` bytes; returns the value and the bytes used.
fn read_zigzag(buf: &[u8], max_bytes: usize) -> Result<(i64, usize), VarintError> {
    let mut raw: u64 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if i == max_bytes {
            return Err(VarintError::TooLong);
        }
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= max_bytes {
        Err(VarintError::TooLong)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Reads a signed 32-bit varint (at most 5 bytes).
pub(crate) fn read_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (value, used) = read_zigzag(buf, 5)?;
    let value = i32::try_from(value).map_err(|_| VarintError::TooLong)?;
    Ok((value, used))
}

/// Reads a signed 64-bit varint (at most 10 bytes).
pub(crate) fn read_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    read_zigzag(buf, 10)
}

/// Appends `value` as a zig-zag varint.
pub(crate) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Appends `value` as a zig-zag varint (the 32-bit encoding is the same bytes).
pub(crate) fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_varlong(out, i64::from(value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // Examples from the Kafka protocol guide's zig-zag table.
        for (value, bytes) in [
            (0i64, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, value);
            assert_eq!(out, bytes, "encoding of {value}");
            assert_eq!(read_varlong(&bytes), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn truncated_and_overlong_inputs_are_errors() {
        assert_eq!(read_varint(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0xff; 6]), Err(VarintError::TooLong));
        assert_eq!(read_varlong(&[0xff; 11]), Err(VarintError::TooLong));
        // Five bytes that decode beyond i32 are rejected for a 32-bit field.
        assert_eq!(
            read_varint(&[0xfe, 0xff, 0xff, 0xff, 0x1f]),
            Err(VarintError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn varlong_round_trips(value: i64, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            write_varlong(&mut out, value);
            let used = out.len();
            out.extend_from_slice(&tail);
            prop_assert_eq!(read_varlong(&out), Ok((value, used)));
        }

        #[test]
        fn varint_round_trips(value: i32) {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            prop_assert_eq!(read_varint(&out), Ok((value, out.len())));
        }
    }
}
