//! Whether a `Txn` only reads, read from its encoded body.
//!
//! Why: a `Txn` whose operations are all `Range`s (recursively through nested `Txn`s; its
//! compares never change anything) changes nothing: etcd serves it as a read, without raft
//! (`isTxnReadonly` in `etcdserver/v3_server.go`). It may then be retried after any member
//! failure and hedged, like a `Range`; any other `Txn` is a write, sent again only when
//! certainly not processed.
//!
//! Why a scanner of our own rather than prost's decoding: only the operations' kinds and each
//! range's `range_end` (empty or not) and `limit` matter, so the body is walked in place,
//! without a single allocation (prost would build a `Vec` per operation list and a `Box` per
//! nested `Txn`). Only a `Txn`'s body is ever looked at: other methods pay nothing.
//! Anything unexpected (a compressed or cut-short frame, a field of the wrong wire type, an
//! operation kind this table does not know, nesting deeper than [`MAX_DEPTH`]) makes the `Txn`
//! a write: being wrong that way costs a retry, the other way a write applied twice.

/// Nested `Txn`s deeper than this are taken as writes (no recursion without a bound on a
/// body from a caller).
const MAX_DEPTH: u8 = 16;

/// Protobuf wire types used here.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// `Some(small)` when the `Txn` request in its gRPC frame (`body`: a compression flag, a
/// 4-byte length and the message) only reads; `small` says whether every range in it is small
/// enough to hedge (see [`small_range`](super::small_range), `max_limit`). `None`: it may
/// write, or cannot be read.
pub(crate) fn read_only_txn(body: &[u8], max_limit: u64) -> Option<bool> {
    let (&compressed, rest) = body.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let (len, message) = rest.split_at(4);
    let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
    if message.len() != len {
        return None;
    }
    txn_reads(message, max_limit, 0)
}

/// A `TxnRequest`: `compare` (1, skipped), `success` (2) and `failure` (3) operations.
fn txn_reads(mut msg: &[u8], max_limit: u64, depth: u8) -> Option<bool> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut small = true;
    while !msg.is_empty() {
        let (tag, wire) = key(&mut msg)?;
        match tag {
            2 | 3 => {
                if wire != LEN {
                    return None;
                }
                small &= op_reads(field(&mut msg)?, max_limit, depth)?;
            }
            _ => skip(&mut msg, wire)?,
        }
    }
    Some(small)
}

/// A `RequestOp`: one of `request_range` (1), `request_put` (2), `request_delete_range` (3),
/// `request_txn` (4).
fn op_reads(mut op: &[u8], max_limit: u64, depth: u8) -> Option<bool> {
    let mut small = true;
    while !op.is_empty() {
        let (tag, wire) = key(&mut op)?;
        if wire != LEN {
            return None;
        }
        let inner = field(&mut op)?;
        small &= match tag {
            1 => range_small(inner, max_limit)?,
            4 => txn_reads(inner, max_limit, depth + 1)?,
            // A put, a delete, or an operation this table does not know.
            _ => return None,
        };
    }
    Some(small)
}

/// A `RangeRequest`: whether it is small (`range_end` (2) empty, or `limit` (3) small).
fn range_small(mut range: &[u8], max_limit: u64) -> Option<bool> {
    let mut one_key = true;
    let mut limit = 0i64;
    while !range.is_empty() {
        let (tag, wire) = key(&mut range)?;
        match (tag, wire) {
            (2, LEN) => one_key = field(&mut range)?.is_empty(),
            // int64 on the wire: two's complement in a varint.
            (3, VARINT) => limit = varint(&mut range)? as i64,
            (2 | 3, _) => return None,
            _ => skip(&mut range, wire)?,
        }
    }
    Some(super::range::is_small(one_key, limit, max_limit))
}

/// Reads a field's key: its tag and wire type.
fn key(buf: &mut &[u8]) -> Option<(u64, u64)> {
    let key = varint(buf)?;
    Some((key >> 3, key & 7))
}

/// Reads a varint (at most 10 bytes).
fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Reads a length-delimited field's contents.
fn field<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (contents, rest) = buf.split_at(len);
    *buf = rest;
    Some(contents)
}

/// Skips a field of wire type `wire` (groups, deprecated and unused by etcd, are not read).
fn skip(buf: &mut &[u8], wire: u64) -> Option<()> {
    let n = match wire {
        VARINT => return varint(buf).map(drop),
        LEN => return field(buf).map(drop),
        FIXED64 => 8,
        FIXED32 => 4,
        _ => return None,
    };
    *buf = buf.get(n..)?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{
        compare, request_op::Request, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
        RequestOp, TxnRequest,
    };
    use prost::Message;

    /// A message in a gRPC frame, as tonic sends it.
    fn framed(msg: &impl Message) -> Vec<u8> {
        let msg = msg.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(&msg);
        out
    }

    fn range(key: &[u8], range_end: &[u8], limit: i64) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                limit,
                serializable: true,
                ..Default::default()
            })),
        }
    }

    fn put(key: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }

    fn delete(key: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }
    }

    fn nested(txn: TxnRequest) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(txn)),
        }
    }

    fn compare_version(key: &[u8]) -> Compare {
        Compare {
            key: key.to_vec(),
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Version as i32,
            target_union: Some(compare::TargetUnion::Version(3)),
            ..Default::default()
        }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![compare_version(b"a"), compare_version(b"b")],
            success,
            failure,
        }
    }

    fn read_only(t: &TxnRequest) -> Option<bool> {
        read_only_txn(&framed(t), 10)
    }

    #[test]
    fn a_txn_of_ranges_is_a_read_and_small_when_its_ranges_are() {
        assert_eq!(
            read_only(&txn(vec![range(b"a", b"", 0)], vec![range(b"b", b"", 0)])),
            Some(true)
        );
        assert_eq!(
            read_only(&txn(vec![range(b"a", b"b", 5)], vec![])),
            Some(true),
            "a limited range"
        );
        assert_eq!(
            read_only(&txn(vec![range(b"a", b"", 0)], vec![range(b"a", b"z", 0)])),
            Some(false),
            "a prefix without a limit: a read, not hedged"
        );
        assert_eq!(read_only(&txn(vec![], vec![])), Some(true), "compares only");
        assert_eq!(read_only(&TxnRequest::default()), Some(true), "empty");
    }

    #[test]
    fn a_txn_with_a_put_or_a_delete_anywhere_is_a_write() {
        let writes = [
            txn(vec![put(b"a")], vec![]),
            txn(vec![], vec![put(b"a")]),
            txn(vec![range(b"a", b"", 0), delete(b"a")], vec![]),
            txn(
                vec![range(b"a", b"", 0)],
                vec![range(b"a", b"", 0), put(b"b")],
            ),
            txn(
                vec![nested(txn(vec![range(b"a", b"", 0)], vec![put(b"x")]))],
                vec![],
            ),
        ];
        for t in &writes {
            assert_eq!(read_only(t), None, "{t:?}");
        }
    }

    #[test]
    fn nested_txns_of_reads_are_reads_to_a_bound() {
        let mut t = txn(vec![range(b"a", b"", 0)], vec![]);
        for _ in 0..MAX_DEPTH {
            t = txn(vec![nested(t)], vec![range(b"b", b"", 0)]);
        }
        assert_eq!(read_only(&t), Some(true), "{MAX_DEPTH} levels");
        let deeper = txn(vec![nested(t)], vec![]);
        assert_eq!(read_only(&deeper), None, "deeper: taken as a write");
    }

    #[test]
    fn unreadable_bodies_are_writes() {
        let good = framed(&txn(vec![range(b"a", b"", 0)], vec![]));
        assert_eq!(read_only_txn(&good, 10), Some(true));
        assert_eq!(read_only_txn(&[], 10), None);
        assert_eq!(
            read_only_txn(&good[..good.len() - 1], 10),
            None,
            "cut short"
        );
        let mut compressed = good.clone();
        compressed[0] = 1;
        assert_eq!(read_only_txn(&compressed, 10), None);
        // An operation of a kind not known (tag 5), or success with the wrong wire type.
        let unknown_op = [0, 0, 0, 0, 4, 0x12, 2, 0x2a, 0];
        assert_eq!(read_only_txn(&unknown_op, 10), None);
        let wrong_wire = [0, 0, 0, 0, 2, 0x10, 1];
        assert_eq!(read_only_txn(&wrong_wire, 10), None);
        let endless_varint = [
            0, 0, 0, 0, 11, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(read_only_txn(&endless_varint, 10), None);
    }

    /// What a scan costs (`cargo test --lib --release etcd::txn -- --ignored --nocapture`):
    /// no allocation by construction (it walks slices of the body), so only its time.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn scan_cost() {
        let small = framed(&txn(vec![range(b"a", b"", 0)], vec![range(b"b", b"", 0)]));
        let ops = (0..128).map(|i| range(format!("key/{i}").as_bytes(), b"", 0));
        let large = framed(&txn(ops.collect(), vec![]));
        for (name, body) in [("2 ranges", &small), ("128 ranges (--max-txn-ops)", &large)] {
            let n = 200_000u32;
            let t = std::time::Instant::now();
            for _ in 0..n {
                assert_eq!(read_only_txn(std::hint::black_box(body), 10), Some(true));
            }
            println!("{name}, {} B: {:?} per scan", body.len(), t.elapsed() / n);
        }
    }

    proptest::proptest! {
        /// Agrees with the operations it was given, and never panics on any body.
        #[test]
        fn agrees_with_prost(
            ops in proptest::collection::vec((0u8..3, 0i64..20, proptest::prelude::any::<bool>()), 0..8),
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut success = Vec::new();
            let mut writes = false;
            let mut small = true;
            for (kind, limit, prefix) in &ops {
                match kind {
                    0 => {
                        small &= !*prefix || (1..=10).contains(limit);
                        success.push(range(b"k", if *prefix { b"l" } else { b"" }, *limit));
                    }
                    1 => { writes = true; success.push(put(b"k")); }
                    _ => { writes = true; success.push(delete(b"k")); }
                }
            }
            let want = (!writes).then_some(small);
            proptest::prop_assert_eq!(read_only(&txn(success, vec![])), want);
            let _ = read_only_txn(&junk, 10);
            let mut framed_junk = vec![0u8];
            framed_junk.extend_from_slice(&(junk.len() as u32).to_be_bytes());
            framed_junk.extend_from_slice(&junk);
            let _ = read_only_txn(&framed_junk, 10);
        }
    }
}
