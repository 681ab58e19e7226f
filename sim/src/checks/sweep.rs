//! Recovery's orphan sweep removes only what containerd does not know: the checkpoint
//! directory of a container whose containerd record exists survives every recovery, even
//! one during which reading that record's metadata failed (docs/recovery.md §1, step 5). The
//! fault plan's `meta_read` makes listings report metadata as unreadable now and then.
//!
//! Judged against the simulated disk's log of the directories the sweep began to remove
//! ([`berth_simbackend::SimDisk::swept`]) and containerd's records: a removal of the
//! directory of a record that containerd created before the sweep, and still holds, is a
//! violation (container ids are never reused, so a record with the id is that container's).

use berth_simbackend::Swept;

/// Every swept directory of a container containerd knows, as violations. `record` gives
/// the creation time (unix ns) of containerd's record with that id, if one exists.
pub fn known_checkpoints_kept(
    swept: &[Swept],
    record: impl Fn(&str) -> Option<i64>,
) -> Vec<String> {
    swept
        .iter()
        .filter_map(|s| {
            let created = record(&s.id)?;
            (created <= s.at).then(|| {
                format!(
                    "recovery's orphan sweep removed the checkpoint directory of container {} at \
                     {}, but containerd holds its record (created at {created})",
                    s.id, s.at
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swept_directory_of_a_known_container_is_a_violation() {
        let swept = [
            Swept {
                id: "gone".to_owned(),
                at: 100,
            },
            Swept {
                id: "known".to_owned(),
                at: 100,
            },
        ];
        let records = |id: &str| (id == "known").then_some(50);
        let bad = known_checkpoints_kept(&swept, records);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("container known at 100"), "{bad:?}");
        // A record created after the sweep is not the one swept; no record, no violation.
        assert!(known_checkpoints_kept(&swept, |id| (id == "known").then_some(150)).is_empty());
        assert!(known_checkpoints_kept(&swept, |_| None).is_empty());
        assert!(known_checkpoints_kept(&[], records).is_empty());
    }
}
