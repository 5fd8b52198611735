//! Partitioning hashes shared by clients and servers.
//!
//! Liftbridge routes with CRC-32 **IEEE** (Go's `crc32.ChecksumIEEE`), not the
//! CRC-32C used by the envelope:
//!
//! * a keyed message goes to partition `crc32_ieee(key) % partitions`, the
//!   checksum taken as an unsigned 32-bit integer (go-liftbridge's key
//!   partitioner; an absent key hashes like an empty one);
//! * a cursor lives in partition `crc32_ieee("<cursorId>,<stream>,<partition>")
//!   % n` of the internal `__cursors` stream, `n` being that stream's partition
//!   count (server `cursors.go`, go-liftbridge `client.go`);
//! * a consumer group stores its positions under the cursor id
//!   `"__group:<groupId>"`.
//!
//! A partition count of 0 has no answer: the functions return `None` instead
//! of dividing by zero. (go-liftbridge's key partitioner picks partition 0 for
//! a stream without partitions; callers that want that write
//! `.unwrap_or(0)`.)

/// Name of the internal stream that stores cursors.
pub const CURSORS_STREAM: &str = "__cursors";

/// Name of the internal activity stream.
pub const ACTIVITY_STREAM: &str = "__activity";

/// Prefix of the cursor id under which a consumer group stores its positions.
pub const GROUP_CURSOR_PREFIX: &str = "__group:";

/// CRC-32 IEEE (the zlib / Ethernet polynomial) of `key`, as Go's
/// `crc32.ChecksumIEEE` computes it.
pub fn key_hash(key: &[u8]) -> u32 {
    crc32fast::hash(key)
}

/// The partition a message with `key` goes to among `partitions` partitions:
/// `key_hash(key) % partitions`. `None` when `partitions` is 0.
pub fn partition_for_key(key: &[u8], partitions: u32) -> Option<u32> {
    key_hash(key).checked_rem(partitions)
}

/// The key under which a cursor is stored in `__cursors`:
/// `"<cursorId>,<stream>,<partition>"`, the partition in decimal.
pub fn cursor_key(cursor_id: &str, stream: &str, partition: i32) -> String {
    format!("{cursor_id},{stream},{partition}")
}

/// The `__cursors` partition that holds the cursor `cursor_id` for
/// `stream`/`partition`, when `__cursors` has `cursors_partitions` partitions.
/// `None` when `cursors_partitions` is 0 (cursors disabled).
pub fn cursor_partition(
    cursor_id: &str,
    stream: &str,
    partition: i32,
    cursors_partitions: u32,
) -> Option<u32> {
    partition_for_key(
        cursor_key(cursor_id, stream, partition).as_bytes(),
        cursors_partitions,
    )
}

/// The cursor id a consumer group uses: `"__group:<groupId>"`.
pub fn group_cursor_id(group_id: &str) -> String {
    format!("{GROUP_CURSOR_PREFIX}{group_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ieee_check_value() {
        // The standard CRC-32 check value.
        assert_eq!(key_hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(key_hash(b""), 0);
    }

    #[test]
    fn zero_partitions_is_none() {
        assert_eq!(partition_for_key(b"key", 0), None);
        assert_eq!(cursor_partition("c", "s", 0, 0), None);
    }

    #[test]
    fn modulo_is_unsigned() {
        // 0xCBF43926 is negative as an i32; the partitioner must not be.
        assert_eq!(partition_for_key(b"123456789", 7), Some(0xCBF4_3926 % 7));
        assert_eq!(partition_for_key(b"123456789", 1), Some(0));
    }

    #[test]
    fn keys_and_ids() {
        assert_eq!(cursor_key("cur", "orders", 3), "cur,orders,3");
        assert_eq!(cursor_key("", "", -1), ",,-1");
        assert_eq!(group_cursor_id("billing"), "__group:billing");
        assert_eq!(
            cursor_partition("__group:billing", "orders", 0, 5),
            partition_for_key(b"__group:billing,orders,0", 5)
        );
    }
}
