//! Ids given by CRI callers: an exact id or a unique prefix of one (containerd's
//! truncindex). [`resolve_prefix`] is the rule; [`Machine::container_id`] and
//! [`Machine::sandbox_id`] apply it to the objects the machine shows, for reads and for
//! commands alike.

use crate::error::CommandError;
use crate::ids::{ContainerId, SandboxId};
use crate::machine::Machine;

/// The id among `ids` that `prefix` names: the id equal to it if there is one (an exact id
/// wins over longer ids it is a prefix of), else the only id starting with it. `Ok(None)`
/// if none matches (the empty prefix matches nothing); [`CommandError::AmbiguousPrefix`]
/// naming the prefix and the count if several do.
pub fn resolve_prefix<'a, T: AsRef<str> + Clone + 'a>(
    ids: impl IntoIterator<Item = &'a T>,
    prefix: &str,
) -> Result<Option<T>, CommandError> {
    let mut matches = Vec::new();
    for id in ids {
        if id.as_ref() == prefix {
            return Ok(Some(id.clone()));
        }
        if !prefix.is_empty() && id.as_ref().starts_with(prefix) {
            matches.push(id);
        }
    }
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(CommandError::AmbiguousPrefix {
            prefix: prefix.to_owned(),
            matches: many.len(),
        }),
    }
}

impl Machine {
    /// The container `id_or_prefix` names among the visible containers
    /// ([`resolve_prefix`]). An id that matches none is returned as given, so that the
    /// command decides what an unknown id means (stop and remove succeed, the others are
    /// NotFound); a malformed one is [`CommandError::InvalidId`].
    pub fn container_id(&self, id_or_prefix: &str) -> Result<ContainerId, CommandError> {
        match resolve_prefix(self.containers().map(|c| &c.meta().id), id_or_prefix)? {
            Some(id) => Ok(id),
            None => Ok(ContainerId::new(id_or_prefix)?),
        }
    }

    /// The sandbox `id_or_prefix` names, as [`Machine::container_id`] resolves containers.
    pub fn sandbox_id(&self, id_or_prefix: &str) -> Result<SandboxId, CommandError> {
        match resolve_prefix(self.sandboxes().map(|s| &s.meta().id), id_or_prefix)? {
            Some(id) => Ok(id),
            None => Ok(SandboxId::new(id_or_prefix)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ids_win_and_prefixes_must_be_unique() {
        let ids: Vec<String> = ["abc1", "abc2", "abd", "x", "xy"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let find = |p: &str| resolve_prefix(&ids, p);
        assert_eq!(find("abd"), Ok(Some("abd".to_owned())));
        assert_eq!(find("abc1"), Ok(Some("abc1".to_owned())));
        // "x" is an id and a prefix of "xy": the exact id wins.
        assert_eq!(find("x"), Ok(Some("x".to_owned())));
        assert_eq!(find("ab"), Err(ambiguous("ab", 3)));
        assert_eq!(find("zz"), Ok(None));
        assert_eq!(find(""), Ok(None));
        assert_eq!(find("abc"), Err(ambiguous("abc", 2)));
        assert_eq!(
            ambiguous("abc", 2).to_string(),
            "id prefix \"abc\" is ambiguous: it matches 2 objects"
        );
        assert_eq!(
            ambiguous("abc", 2).code(),
            crate::error::ErrorCode::InvalidArgument
        );
    }

    fn ambiguous(prefix: &str, matches: usize) -> CommandError {
        CommandError::AmbiguousPrefix {
            prefix: prefix.to_owned(),
            matches,
        }
    }
}
