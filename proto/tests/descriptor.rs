//! Pins `api.proto` to Liftbridge's wire contract: every message, field
//! number, type, label, JSON name, jstype option, enum value and RPC must match
//! the listing taken from the upstream API v2.0.0 file.

#[path = "common/descriptor_listing.rs"]
mod descriptor_listing;

use liftbridge_proto::FILE_DESCRIPTOR_SET;
use prost::Message as _;
use prost_types::FileDescriptorSet;

fn ours() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

#[test]
fn descriptor_matches_liftbridge_api_v2() {
    let golden: Vec<&str> = include_str!("data/api_descriptor_golden.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let ours = descriptor_listing::listing(&ours());
    let missing: Vec<_> = golden
        .iter()
        .filter(|l| !ours.iter().any(|o| o == *l))
        .collect();
    let extra: Vec<_> = ours
        .iter()
        .filter(|o| !golden.contains(&o.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "api.proto drifted from the Liftbridge contract\nmissing: {missing:#?}\nextra: {extra:#?}"
    );
    assert_eq!(ours.len(), golden.len());
}

#[test]
fn descriptor_basics() {
    let fds = ours();
    assert_eq!(fds.file.len(), 1);
    let file = &fds.file[0];
    assert_eq!(file.name(), "api.proto");
    assert_eq!(file.package(), "proto");
    assert_eq!(file.service.len(), 1);
    assert_eq!(file.service[0].name(), "API");
    assert_eq!(file.service[0].method.len(), 16);
    let sub = file
        .message_type
        .iter()
        .find(|m| m.name() == "SubscribeRequest")
        .expect("SubscribeRequest");
    let reverse = sub
        .field
        .iter()
        .find(|f| f.name() == "reverse")
        .expect("reverse");
    assert_eq!(reverse.number(), 12);
    assert_eq!(
        reverse.r#type(),
        prost_types::field_descriptor_proto::Type::Bool
    );
}

#[test]
fn reverse_is_field_12_on_the_wire() {
    let req = liftbridge_proto::pb::SubscribeRequest {
        reverse: true,
        ..Default::default()
    };
    // tag = 12 << 3 | varint = 0x60, value 1
    assert_eq!(req.encode_to_vec(), [0x60, 0x01]);
}

#[test]
fn generated_service_name() {
    assert_eq!(liftbridge_proto::pb::api_server::SERVICE_NAME, "proto.API");
}
