//! Property tests for the envelope codec: it never panics, round-trips every
//! message and ack, and detects corruption and truncation.

use std::collections::HashMap;

use bytes::Bytes;
use liftbridge_proto::{
    envelope::{self, EnvelopeError, MAGIC, MsgType},
    pb,
};
use proptest::prelude::*;

fn bytes_strategy(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn headers_strategy() -> impl Strategy<Value = HashMap<String, Bytes>> {
    prop::collection::hash_map(".{0,12}", bytes_strategy(16), 0..4)
}

fn message_strategy() -> impl Strategy<Value = pb::Message> {
    (
        (
            any::<i64>(),
            bytes_strategy(32),
            bytes_strategy(256),
            any::<i64>(),
        ),
        (".{0,16}", any::<i32>(), ".{0,16}", ".{0,16}"),
        (headers_strategy(), ".{0,16}", ".{0,16}", 0..3i32),
    )
        .prop_map(
            |(
                (offset, key, value, timestamp),
                (stream, partition, subject, reply_subject),
                (headers, ack_inbox, correlation_id, ack_policy),
            )| pb::Message {
                offset,
                key,
                value,
                timestamp,
                stream,
                partition,
                subject,
                reply_subject,
                headers,
                ack_inbox,
                correlation_id,
                ack_policy,
            },
        )
}

fn ack_strategy() -> impl Strategy<Value = pb::Ack> {
    (
        (".{0,16}", ".{0,16}", ".{0,16}", any::<i64>(), ".{0,16}"),
        (".{0,16}", 0..3i32, any::<i64>(), any::<i64>(), 0..5i32),
    )
        .prop_map(
            |(
                (stream, partition_subject, msg_subject, offset, ack_inbox),
                (correlation_id, ack_policy, reception_timestamp, commit_timestamp, ack_error),
            )| pb::Ack {
                stream,
                partition_subject,
                msg_subject,
                offset,
                ack_inbox,
                correlation_id,
                ack_policy,
                reception_timestamp,
                commit_timestamp,
                ack_error,
            },
        )
}

/// Arbitrary bytes, often starting with a valid-looking header so the deeper
/// checks get exercised too.
fn wire_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (
            0u8..2,
            any::<u8>(),
            any::<u8>(),
            0u8..20,
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(version, header_len, flags, msg_type, rest)| {
                let mut v = MAGIC.to_vec();
                v.extend_from_slice(&[version, header_len, flags, msg_type]);
                v.extend_from_slice(&rest);
                v
            }),
        (
            0u8..16,
            prop::collection::vec(any::<u8>(), 0..64),
            any::<bool>()
        )
            .prop_map(|(msg_type, payload, crc)| {
                let t = MsgType::try_from(msg_type).unwrap_or(MsgType::Publish);
                envelope::encode(t, &payload, crc).to_vec()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in wire_strategy()) {
        let decoded = envelope::decode(&data);
        let _ = envelope::decode_message(&data);
        let _ = envelope::decode_ack(&data);
        let _ = envelope::decode_message_bytes(&Bytes::from(data.clone()));
        if let Ok(env) = decoded {
            prop_assert!(envelope::is_envelope(&data));
            prop_assert!(env.header_len >= 8 && env.header_len <= data.len());
            prop_assert_eq!(env.payload, &data[env.header_len..]);
            prop_assert_eq!(env.crc32c.is_some(), env.flags & 1 == 1);
        }
    }

    #[test]
    fn message_round_trips(msg in message_strategy(), with_crc in any::<bool>()) {
        let wire = envelope::encode_message(&msg, with_crc);
        prop_assert_eq!(wire.len(), if with_crc { 12 } else { 8 } + prost::Message::encoded_len(&msg));
        prop_assert_eq!(envelope::decode_message(&wire), Ok(msg.clone()));
        prop_assert_eq!(envelope::decode_message_bytes(&wire), Ok(msg));
        let env = envelope::decode(&wire).expect("decodes");
        prop_assert_eq!(env.msg_type, MsgType::Publish);
        prop_assert_eq!(env.crc32c.is_some(), with_crc);
    }

    #[test]
    fn ack_round_trips(ack in ack_strategy(), with_crc in any::<bool>()) {
        let wire = envelope::encode_ack(&ack, with_crc);
        prop_assert_eq!(envelope::decode_ack(&wire), Ok(ack));
        let wrong_type = matches!(
            envelope::decode_message(&wire),
            Err(EnvelopeError::UnexpectedType { expected: MsgType::Publish, actual: MsgType::Ack })
        );
        prop_assert!(wrong_type);
    }

    #[test]
    fn flipped_payload_bit_is_detected(
        msg in message_strategy(),
        index in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut wire = envelope::encode_message(&msg, true).to_vec();
        // Flip a bit in the CRC or the payload: everything the CRC protects.
        let i = 8 + index.index(wire.len() - 8);
        wire[i] ^= 1 << bit;
        prop_assert!(
            matches!(envelope::decode(&wire), Err(EnvelopeError::CrcMismatch { .. })),
            "bit {} of byte {} flipped, got {:?}", bit, i, envelope::decode(&wire)
        );
        prop_assert!(envelope::decode_message(&wire).is_err());
    }

    #[test]
    fn flipped_header_bit_is_an_error_or_harmless(
        msg in message_strategy(),
        index in 0usize..8,
        bit in 0u8..8,
    ) {
        let mut wire = envelope::encode_message(&msg, true).to_vec();
        wire[index] ^= 1 << bit;
        // Only flag bits may be flipped without an error, and then the
        // message must decode unchanged: bits 1..=7 are unused, and clearing
        // bit 0 turns the CRC into 4 skipped header bytes, which Go accepts
        // too (the format cannot tell the two apart).
        match envelope::decode_message(&wire) {
            Ok(decoded) => {
                prop_assert_eq!(index, 6);
                prop_assert_eq!(decoded, msg);
            }
            Err(_) => prop_assert_ne!(index, 6),
        }
    }

    #[test]
    fn every_truncation_is_an_error(msg in message_strategy(), with_crc in any::<bool>()) {
        let wire = envelope::encode_message(&msg, with_crc);
        let header = if with_crc { 12 } else { 8 };
        for len in 0..wire.len() {
            let cut = &wire[..len];
            let result = envelope::decode_message(cut);
            if len < header || with_crc {
                // Header cut, or payload cut under a CRC: always detected by
                // the envelope layer itself.
                prop_assert!(result.is_err(), "len {} of {} decoded", len, wire.len());
            } else if let Ok(decoded) = result {
                // Without a CRC a truncated payload can still be valid
                // protobuf (e.g. cut exactly between two fields), but never
                // the full message.
                prop_assert_ne!(decoded, msg.clone(), "len {} of {}", len, wire.len());
            }
        }
    }
}
