//! Property tests for the partitioning hashes.

use liftbridge_proto::hash;
use proptest::prelude::*;

proptest! {
    #[test]
    fn partition_is_in_range(key in prop::collection::vec(any::<u8>(), 0..128), n in any::<u32>()) {
        match hash::partition_for_key(&key, n) {
            None => prop_assert_eq!(n, 0),
            Some(p) => {
                prop_assert!(p < n);
                prop_assert_eq!(p, crc32fast::hash(&key) % n);
            }
        }
    }

    #[test]
    fn cursor_partition_hashes_the_cursor_key(
        cursor in ".{0,24}",
        stream in ".{0,24}",
        partition in any::<i32>(),
        n in 1u32..1024,
    ) {
        let key = hash::cursor_key(&cursor, &stream, partition);
        prop_assert_eq!(
            hash::cursor_partition(&cursor, &stream, partition, n),
            hash::partition_for_key(key.as_bytes(), n)
        );
        prop_assert_eq!(hash::cursor_partition(&cursor, &stream, partition, 0), None);
    }

    #[test]
    fn group_cursor_id_is_prefixed(group in ".{0,24}") {
        let id = hash::group_cursor_id(&group);
        prop_assert_eq!(id.strip_prefix("__group:"), Some(group.as_str()));
    }
}
