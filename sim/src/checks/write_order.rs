//! One checkpoint write of a record at a time: the core issues one write (or delete) of a
//! container's record at a time and the driver queues the next behind it, so the simulated
//! disk must never see two of one record in flight at once (two concurrent writes may land
//! in either order, and an older status could overwrite a newer one).

use berth_simbackend::Overlap;

/// The first of the disk's overlaps ([`berth_simbackend::SimDisk::overlaps`]), as a
/// violation.
pub fn one_write_at_a_time(overlaps: &[Overlap]) -> Result<(), String> {
    match overlaps.first() {
        None => Ok(()),
        Some(o) => Err(o.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_overlap_is_a_violation() {
        let o = Overlap {
            id: "c1".to_owned(),
            first: "write",
            first_at: 5,
            second: "delete",
            second_at: 7,
        };
        assert!(one_write_at_a_time(&[]).is_ok());
        let v = one_write_at_a_time(&[o]).unwrap_err();
        assert_eq!(
            v,
            "checkpoint delete of container c1 began at 7 while its write begun at 5 was in flight"
        );
    }
}
