//! File-system checkpoint store (being written).
