//! Checks the Rust code against vectors computed independently in Python
//! (`tests/data/gen_golden.py`: zlib's CRC-32, a pure-Python CRC-32C and
//! hand-encoded protobufs).

use bytes::Bytes;
use liftbridge_proto::{
    envelope::{self, MsgType},
    hash, pb,
};

/// Data rows of a golden TSV: comment lines skipped, fields split on tabs
/// (empty fields kept).
fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn key_partition_golden() {
    let rows = rows(include_str!("data/key_partition_golden.tsv"));
    assert!(rows.len() > 300, "golden file looks truncated");
    for row in rows {
        let [key_hex, crc, partitions, expected] = row[..] else {
            panic!("bad row {row:?}");
        };
        let key = unhex(key_hex);
        let crc: u32 = crc.parse().expect("crc");
        let partitions: u32 = partitions.parse().expect("partitions");
        let expected: u32 = expected.parse().expect("expected");
        assert_eq!(hash::key_hash(&key), crc, "crc32 of {key_hex}");
        assert_eq!(
            hash::partition_for_key(&key, partitions),
            Some(expected),
            "key {key_hex} over {partitions} partitions"
        );
    }
}

#[test]
fn cursor_partition_golden() {
    let rows = rows(include_str!("data/cursor_partition_golden.tsv"));
    assert!(rows.len() > 90, "golden file looks truncated");
    for row in rows {
        let [
            cursor_id,
            stream,
            partition,
            cursors_partitions,
            expected,
            key_crc,
        ] = row[..]
        else {
            panic!("bad row {row:?}");
        };
        let partition: i32 = partition.parse().expect("partition");
        let n: u32 = cursors_partitions.parse().expect("cursors partitions");
        let expected: u32 = expected.parse().expect("expected");
        let key_crc: u32 = key_crc.parse().expect("crc");
        let key = hash::cursor_key(cursor_id, stream, partition);
        assert_eq!(key, format!("{cursor_id},{stream},{partition}"));
        assert_eq!(hash::key_hash(key.as_bytes()), key_crc, "crc32 of {key:?}");
        assert_eq!(
            hash::cursor_partition(cursor_id, stream, partition, n),
            Some(expected),
            "cursor key {key:?} over {n} partitions"
        );
    }
}

/// The messages hand-encoded by `gen_golden.py`, built field by field.
fn expected_message(name: &str) -> Option<pb::Message> {
    match name {
        "message_basic" => Some(pb::Message {
            offset: 42,
            key: Bytes::from_static(b"key"),
            value: Bytes::from_static(b"hello"),
            timestamp: 1_700_000_000_123_456_789,
            stream: "orders".into(),
            partition: 3,
            subject: "orders.3".into(),
            reply_subject: "_INBOX.reply".into(),
            headers: [("h".to_owned(), Bytes::from_static(b"v"))].into(),
            ack_inbox: "acks.inbox".into(),
            correlation_id: "corr-1".into(),
            ack_policy: pb::AckPolicy::All.into(),
        }),
        "message_expected_offset" => Some(pb::Message {
            offset: -1,
            value: Bytes::from_static(b"v"),
            ..Default::default()
        }),
        "empty_publish" => Some(pb::Message::default()),
        _ => None,
    }
}

fn expected_ack(name: &str) -> Option<pb::Ack> {
    match name {
        "ack_basic" => Some(pb::Ack {
            stream: "orders".into(),
            partition_subject: "orders.3".into(),
            msg_subject: "orders.3".into(),
            offset: 42,
            ack_inbox: "acks.inbox".into(),
            correlation_id: "corr-1".into(),
            ack_policy: pb::AckPolicy::All.into(),
            reception_timestamp: 1_700_000_000_000_000_001,
            commit_timestamp: 1_700_000_000_000_000_002,
            ack_error: pb::ack::Error::IncorrectOffset.into(),
        }),
        "ack_empty" => Some(pb::Ack::default()),
        _ => None,
    }
}

#[test]
fn envelope_golden() {
    let rows = rows(include_str!("data/envelope_golden.tsv"));
    assert_eq!(rows.len(), 16);
    let (mut messages, mut acks) = (0, 0);
    for row in rows {
        let [name, msg_type, with_crc, payload_hex, crc, envelope_hex] = row[..] else {
            panic!("bad row {row:?}");
        };
        let msg_type = MsgType::try_from(msg_type.parse::<u8>().expect("type")).expect("known");
        let with_crc = with_crc == "1";
        let payload = unhex(payload_hex);
        let wire = unhex(envelope_hex);
        let crc: u32 = crc.parse().expect("crc");

        // Header bytes and CRC-32C, byte for byte.
        assert_eq!(crc32c::crc32c(&payload), crc, "{name}: crc32c");
        assert_eq!(
            envelope::encode(msg_type, &payload, with_crc),
            wire,
            "{name}: encode"
        );
        if with_crc {
            assert_eq!(
                wire[..8],
                [0xB9, 0x0E, 0x43, 0xB4, 0, 12, 1, msg_type.as_u8()]
            );
            assert_eq!(wire[8..12], crc.to_be_bytes());
        } else {
            assert_eq!(
                wire[..8],
                [0xB9, 0x0E, 0x43, 0xB4, 0, 8, 0, msg_type.as_u8()]
            );
        }

        // Decoding gives back the header facts and the payload.
        let env = envelope::decode(&wire).expect("golden envelope decodes");
        assert_eq!(env.msg_type, msg_type);
        assert_eq!(env.payload, &payload[..]);
        assert_eq!(env.crc32c, with_crc.then_some(crc));

        // Hand-encoded protobufs decode to the expected structs, and prost
        // encodes those structs to the same bytes.
        if let Some(msg) = expected_message(name) {
            messages += 1;
            assert_eq!(envelope::decode_message(&wire), Ok(msg.clone()), "{name}");
            assert_eq!(envelope::encode_message(&msg, with_crc), wire, "{name}");
        }
        if let Some(ack) = expected_ack(name) {
            acks += 1;
            assert_eq!(envelope::decode_ack(&wire), Ok(ack.clone()), "{name}");
            assert_eq!(envelope::encode_ack(&ack, with_crc), wire, "{name}");
        }
    }
    assert_eq!((messages, acks), (6, 4));
}
