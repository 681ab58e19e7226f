//! berth-testkit (being written).
