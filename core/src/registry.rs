//! The name registrar (docs/containerd-behaviour.md §4.5): a bijection between reservation names
//! and ids.

use std::collections::BTreeMap;
use std::fmt::Display;

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("invalid name \"\": a name is required")]
    EmptyName,
    /// The name is held by another id.
    #[error("name {name:?} is reserved for {owner}")]
    NameTaken {
        /// The name asked for.
        name: String,
        /// The id holding it.
        owner: String,
    },
    /// The id already holds another name.
    #[error("key {key} is reserved for name {name:?}")]
    KeyTaken {
        /// The id asked for.
        key: String,
        /// The name it holds.
        name: String,
    },
}

/// A bijection name ↔ id. Reserving the same pair twice succeeds (idempotent); releasing
/// never fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRegistry<K> {
    by_name: BTreeMap<String, K>,
    by_key: BTreeMap<K, String>,
}

impl<K> Default for NameRegistry<K> {
    fn default() -> Self {
        NameRegistry {
            by_name: BTreeMap::new(),
            by_key: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone + Display> NameRegistry<K> {
    /// Reserves `name` for `key` (containerd's `Reserve`, docs/containerd-behaviour.md §4.5).
    pub fn reserve(&mut self, name: &str, key: &K) -> Result<(), NameError> {
        if name.is_empty() {
            return Err(NameError::EmptyName);
        }
        if let Some(owner) = self.by_name.get(name) {
            if owner == key {
                return Ok(());
            }
            return Err(NameError::NameTaken {
                name: name.to_owned(),
                owner: owner.to_string(),
            });
        }
        if let Some(held) = self.by_key.get(key) {
            return Err(NameError::KeyTaken {
                key: key.to_string(),
                name: held.clone(),
            });
        }
        self.by_name.insert(name.to_owned(), key.clone());
        self.by_key.insert(key.clone(), name.to_owned());
        Ok(())
    }

    /// Releases whatever name `key` holds; a no-op when it holds none.
    pub fn release_key(&mut self, key: &K) {
        if let Some(name) = self.by_key.remove(key) {
            self.by_name.remove(&name);
        }
    }

    /// The id holding `name`.
    pub fn owner(&self, name: &str) -> Option<&K> {
        self.by_name.get(name)
    }

    /// The name `key` holds.
    pub fn name_of(&self, key: &K) -> Option<&str> {
        self.by_key.get(key).map(String::as_str)
    }

    /// Number of reservations.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is reserved.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every (id, name) pair in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &str)> {
        self.by_key.iter().map(|(k, n)| (k, n.as_str()))
    }

    /// Checks that both directions agree; returns the first disagreement.
    pub fn check_bijection(&self) -> Result<(), String> {
        if self.by_name.len() != self.by_key.len() {
            return Err(format!(
                "name registry has {} names but {} keys",
                self.by_name.len(),
                self.by_key.len()
            ));
        }
        for (name, key) in &self.by_name {
            if self.by_key.get(key).map(String::as_str) != Some(name.as_str()) {
                return Err(format!("name {name:?} maps to {key}, which maps elsewhere"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_idempotent_and_a_bijection() {
        let mut r = NameRegistry::<String>::default();
        r.reserve("a", &"1".to_owned()).unwrap();
        r.reserve("a", &"1".to_owned()).unwrap();
        assert_eq!(
            r.reserve("a", &"2".to_owned()),
            Err(NameError::NameTaken {
                name: "a".into(),
                owner: "1".into()
            })
        );
        assert_eq!(
            r.reserve("b", &"1".to_owned()),
            Err(NameError::KeyTaken {
                key: "1".into(),
                name: "a".into()
            })
        );
        assert_eq!(r.reserve("", &"3".to_owned()), Err(NameError::EmptyName));
        assert_eq!(r.len(), 1);
        r.check_bijection().unwrap();
    }

    #[test]
    fn release_frees_both_directions() {
        let mut r = NameRegistry::<String>::default();
        r.reserve("a", &"1".to_owned()).unwrap();
        r.release_key(&"1".to_owned());
        r.release_key(&"1".to_owned());
        assert!(r.is_empty());
        r.reserve("a", &"2".to_owned()).unwrap();
        assert_eq!(r.owner("a"), Some(&"2".to_owned()));
        assert_eq!(r.name_of(&"2".to_owned()), Some("a"));
    }
}
