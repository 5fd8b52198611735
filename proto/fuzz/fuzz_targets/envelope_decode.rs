//! Feeds arbitrary bytes to every envelope decoder. Any panic is a bug:
//! decoding must fail with an `EnvelopeError` instead.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use liftbridge_proto::envelope::{self, EnvelopeError, MsgType};

fuzz_target!(|data: &[u8]| {
    let parsed = envelope::decode(data);
    let message = envelope::decode_message(data);
    let ack = envelope::decode_ack(data);
    let shared = envelope::decode_message_bytes(&Bytes::copy_from_slice(data));
    assert_eq!(message, shared);

    let Ok(env) = parsed else {
        assert!(message.is_err() && ack.is_err());
        return;
    };
    assert!(envelope::is_envelope(data));
    assert!(env.header_len >= envelope::HEADER_LEN && env.header_len <= data.len());
    assert_eq!(env.payload, &data[env.header_len..]);

    // A valid envelope re-encodes to the same facts (the canonical header may
    // be shorter than an extended one).
    let again = envelope::encode(env.msg_type, env.payload, env.crc32c.is_some());
    let re = envelope::decode(&again).expect("re-encoded envelope decodes");
    assert_eq!(
        (re.msg_type, re.payload, re.crc32c),
        (env.msg_type, env.payload, env.crc32c)
    );

    // The typed decoders agree with the header: the matching one succeeds or
    // fails on the protobuf only, the other one reports the type.
    let wrong_type = |r: &Result<_, EnvelopeError>| {
        matches!(r, Err(EnvelopeError::UnexpectedType { actual, .. }) if *actual == env.msg_type)
    };
    let ok_or_protobuf = |is_ok: bool, err: Option<&EnvelopeError>| {
        is_ok || matches!(err, Some(EnvelopeError::Protobuf(_)))
    };
    match env.msg_type {
        MsgType::Publish => {
            assert!(ok_or_protobuf(message.is_ok(), message.as_ref().err()));
            assert!(wrong_type(&ack.clone().map(|_| ())));
        }
        MsgType::Ack => {
            assert!(ok_or_protobuf(ack.is_ok(), ack.as_ref().err()));
            assert!(wrong_type(&message.clone().map(|_| ())));
        }
        _ => {
            assert!(wrong_type(&message.clone().map(|_| ())));
            assert!(wrong_type(&ack.clone().map(|_| ())));
        }
    }

    // Whatever decodes re-encodes and decodes to the same value.
    if let Ok(msg) = &message {
        let wire = envelope::encode_message(msg, true);
        assert_eq!(envelope::decode_message(&wire).as_ref(), Ok(msg));
    }
    if let Ok(a) = &ack {
        let wire = envelope::encode_ack(a, false);
        assert_eq!(envelope::decode_ack(&wire).as_ref(), Ok(a));
    }
});
