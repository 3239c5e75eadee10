//! Filter language, sort and index key encoding (pure: no I/O).
pub mod keys;
