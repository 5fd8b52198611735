//! Commit log (being written).
