//! Dashboard tests (being written).
