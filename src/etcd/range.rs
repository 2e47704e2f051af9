//! How much a `Range` request asks for, read from its encoded body.
//!
//! Why decode at all: a second copy of a `Range` over a large prefix with no limit doubles the
//! most expensive work a member does (and its answer's size on the wire), so only small
//! ranges are hedged. The body is already buffered for retries; only `range_end` and `limit`
//! are decoded (prost skips the other fields without copying them, and `range_end` is a slice
//! of the buffer).

use bytes::{Buf, Bytes};

/// The two fields of etcd's `RangeRequest` that say how many keys it may return.
#[derive(Clone, PartialEq, prost::Message)]
struct RangeShape {
    /// Set for a range over several keys (a prefix, `[key, range_end)`, or all keys from
    /// `key` on for `"\0"`); empty for one key.
    #[prost(bytes = "bytes", tag = "2")]
    range_end: Bytes,
    /// Keys returned at most; 0 for no limit.
    #[prost(int64, tag = "3")]
    limit: i64,
}

/// Whether a `Range` request in its gRPC frame (`body`: a compression flag, a 4-byte length
/// and the message) is small enough to hedge: one key, or a range with a limit of
/// `1..=max_limit` keys. A body that cannot be read (compressed, cut short, not a
/// `RangeRequest`) is not.
pub(crate) fn small_range(body: &Bytes, max_limit: u64) -> bool {
    let mut frame = body.clone();
    if frame.remaining() < 5 || frame.get_u8() != 0 {
        return false;
    }
    let len = frame.get_u32() as usize;
    if frame.remaining() != len {
        return false;
    }
    let Ok(shape) = <RangeShape as prost::Message>::decode(frame) else {
        return false;
    };
    is_small(shape.range_end.is_empty(), shape.limit, max_limit)
}

/// Whether a range with `range_end` empty or not and `limit` is small enough to hedge: one key,
/// or a limit of `1..=max_limit` keys. The one rule for a `Range` and a `Txn`'s ranges.
pub(super) fn is_small(one_key: bool, limit: i64, max_limit: u64) -> bool {
    one_key || u64::try_from(limit).is_ok_and(|limit| (1..=max_limit).contains(&limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A `RangeRequest` in a gRPC frame, as tonic sends it.
    fn framed(req: &crate::proto::etcdserverpb::RangeRequest) -> Bytes {
        let msg = req.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(&msg);
        Bytes::from(out)
    }

    fn range(key: &[u8], range_end: &[u8], limit: i64) -> Bytes {
        framed(&crate::proto::etcdserverpb::RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            limit,
            serializable: true,
            ..Default::default()
        })
    }

    #[test]
    fn one_key_and_small_limited_ranges_are_small() {
        assert!(small_range(&range(b"k", b"", 0), 10));
        assert!(small_range(&range(b"k", b"", 0), 0));
        assert!(small_range(&range(b"a", b"b", 10), 10));
        assert!(small_range(&range(b"a", b"b", 1), 10));
        assert!(small_range(&range(b"", b"", 0), 10));
    }

    #[test]
    fn unlimited_and_large_ranges_are_not() {
        assert!(
            !small_range(&range(b"a", b"b", 0), 10),
            "a prefix, no limit"
        );
        assert!(!small_range(&range(b"\0", b"\0", 0), 10), "every key");
        assert!(!small_range(&range(b"a", b"b", 11), 10));
        assert!(!small_range(&range(b"a", b"b", -1), 10));
        assert!(!small_range(&range(b"a", b"b", 5), 0));
    }

    #[test]
    fn unreadable_bodies_are_not() {
        let good = range(b"a", b"", 0);
        assert!(!small_range(&Bytes::new(), 10));
        assert!(!small_range(&good.slice(..good.len() - 1), 10), "cut short");
        let mut compressed = good.to_vec();
        compressed[0] = 1;
        assert!(!small_range(&Bytes::from(compressed), 10));
        let garbage = Bytes::from_static(&[0, 0, 0, 0, 2, 0xff, 0xff]);
        assert!(!small_range(&garbage, 10));
    }

    proptest::proptest! {
        /// Never panics on any body, and agrees with the fields it was given.
        #[test]
        fn decodes_what_was_encoded(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            end in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            limit in proptest::prelude::any::<i64>(),
            max in 0u64..2_000,
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let want = end.is_empty() || (limit >= 1 && (limit as u64) <= max);
            proptest::prop_assert_eq!(small_range(&range(&key, &end, limit), max), want);
            let _ = small_range(&Bytes::from(junk), max);
        }
    }
}
