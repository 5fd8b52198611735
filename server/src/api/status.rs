//! One place that turns the server's errors into gRPC statuses, with Liftbridge's codes and messages.
//!
//! Where Liftbridge answers `Unknown` for a known condition (permission denied, incorrect expected offset) we
//! answer the precise code; `docs/compatibility.md` lists those.

use tonic::Status;

use crate::bus::BusError;
use crate::metadata::MetadataError;

/// Maps a metadata error to the code Liftbridge uses for it.
pub fn from_metadata(err: MetadataError) -> Status {
    match err {
        MetadataError::StreamExists(_) => Status::already_exists(err.to_string()),
        MetadataError::NoSuchStream(_) | MetadataError::NoSuchPartition { .. } => {
            Status::not_found(err.to_string())
        }
        MetadataError::Invalid(_) => Status::invalid_argument(err.to_string()),
        MetadataError::Storage(_) => Status::internal(err.to_string()),
        MetadataError::Unavailable(_) => Status::unavailable(err.to_string()),
        MetadataError::StaleEpoch(_) => Status::failed_precondition(err.to_string()),
    }
}

/// Maps a bus error: an outage is `Unavailable` (retryable), a bad subject `InvalidArgument`.
pub fn from_bus(err: BusError) -> Status {
    match err {
        BusError::Unavailable(_) | BusError::Connect { .. } => Status::unavailable(err.to_string()),
        BusError::InvalidSubject { .. } | BusError::PayloadTooLarge { .. } => {
            Status::invalid_argument(err.to_string())
        }
        BusError::Timeout { .. } => Status::deadline_exceeded(err.to_string()),
        _ => Status::internal(err.to_string()),
    }
}

/// The status for a missing stream, worded like Liftbridge's.
pub fn no_such_stream(stream: &str) -> Status {
    Status::not_found(format!("No such stream: {stream}"))
}

/// The status for a missing partition, worded like Liftbridge's.
pub fn no_such_partition(stream: &str, partition: i32) -> Status {
    Status::not_found(format!("No such partition: {stream}/{partition}"))
}

/// The status for an RPC whose feature has not landed yet.
pub fn not_implemented(feature: &str) -> Status {
    Status::unimplemented(format!("{feature} is not implemented by this server yet"))
}
