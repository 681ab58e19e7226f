//! Image references: what CreateContainer's `image` may say, and how it is resolved against
//! the images of containerd's image store (docs/containerd-behaviour.md §4.1.1).
//!
//! containerd's CRI (`localResolve`, `pkg/cri/store/image`) accepts, in this order:
//! 1. a full digest (`sha256:<64 hex>`): the image ID (the digest of the image config);
//! 2. a name, normalised by `reference/docker.ParseDockerRef` (`busybox` →
//!    `docker.io/library/busybox:latest`; a digest reference keeps only its digest) and
//!    looked up among the image store's names;
//! 3. else a prefix of an image ID, with or without `sha256:` (`digestset.Lookup`).
//!
//! berth does the same with one pure function, [`resolve_image`], over the store's
//! `(name, ID)` pairs, so the containerd backend, the simulated one and the core's test world
//! all resolve alike. Parsing uses `oci-spec`'s distribution `Reference`, a port of docker's
//! `ParseNormalizedNamed`; the two rules of `ParseDockerRef` it lacks (a 64-hex name is
//! refused, a tag next to a digest is dropped) are added here.

use serde::{Deserialize, Serialize};

use oci_spec::distribution::Reference;

use crate::io::{BackendError, BackendErrorKind};

/// Length of a sha256 digest's hex part.
const SHA256_HEX_LEN: usize = 64;

/// What a container's image resolved to when it was created; stored in its metadata, so
/// ContainerStatus answers the same after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageRef {
    /// The image ID: `sha256:<hex>` of the image config (CRI's `image_id`). Empty only in
    /// metadata written before berth resolved images.
    pub id: String,
    /// The image store name the container was created from (the containerd record's
    /// `image`): the normalised name asked for, or for an ID the image's first reference.
    pub name: String,
    /// The image's first repo tag (`docker.io/library/busybox:latest`); empty if none.
    pub repo_tag: String,
    /// The image's first repo digest (`docker.io/library/busybox@sha256:…`); empty if none.
    pub repo_digest: String,
}

impl ImageRef {
    /// CRI's `image_ref` as containerd's ContainerStatus reports it: the repo digest if the
    /// image has one, else the image ID.
    pub fn cri_image_ref(&self) -> &str {
        if self.repo_digest.is_empty() {
            &self.id
        } else {
            &self.repo_digest
        }
    }
}

/// One image of containerd's image store: a name and the ID (config digest) it points at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRecord {
    /// The image's name in the store (`docker.io/library/busybox:latest`,
    /// `docker.io/library/busybox@sha256:…`, or CRI's `sha256:<id>` record).
    pub name: String,
    /// Its image ID, `sha256:<64 hex>`.
    pub id: String,
}

impl ImageRecord {
    /// A record.
    pub fn new(name: impl Into<String>, id: impl Into<String>) -> Self {
        ImageRecord {
            name: name.into(),
            id: id.into(),
        }
    }
}

/// Why an image reference does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Neither a reference nor an image ID (prefix).
    #[error("image {image:?} is not a valid image reference or ID: {reason}")]
    Invalid {
        /// What was asked for.
        image: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No image in the store matches.
    #[error("image {image:?} not found")]
    NotFound {
        /// What was asked for.
        image: String,
    },
    /// An ID prefix that matches several images.
    #[error("image ID prefix {image:?} is ambiguous: it matches {}", ids.join(", "))]
    Ambiguous {
        /// What was asked for.
        image: String,
        /// The IDs it matches (sorted).
        ids: Vec<String>,
    },
}

impl ImageError {
    /// The backend error a resolution failure is reported as (every backend the same way):
    /// NotFound for a missing image, InvalidArgument for an ambiguous prefix or a reference
    /// that does not parse; the message names the image.
    pub fn to_backend(&self, verb: &str, target: &str) -> BackendError {
        let kind = match self {
            ImageError::NotFound { .. } => BackendErrorKind::NotFound,
            ImageError::Invalid { .. } | ImageError::Ambiguous { .. } => {
                BackendErrorKind::InvalidArgument
            }
        };
        BackendError::new(kind, verb, target, self.to_string())
    }
}

/// How a reference is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageQuery {
    /// A full digest: the image ID itself.
    Id(String),
    /// A name (normalised), and the ID prefix to try when no image has that name.
    Name {
        /// The normalised name (`docker.io/library/busybox:latest`).
        name: String,
        /// The input read as an ID prefix (hex, without `sha256:`), if it is one.
        prefix: Option<String>,
    },
    /// Only an ID prefix (hex, without `sha256:`).
    Prefix(String),
}

/// `reference/docker.ParseDockerRef`: the fully qualified name containerd's image store
/// uses. `busybox` → `docker.io/library/busybox:latest`, `a:tag@sha256:…` →
/// `docker.io/library/a@sha256:…`. Fails, with docker's reason, on anything that is not a
/// reference (uppercase repository, empty name, bad digest, a 64-hex name).
pub fn normalize_reference(input: &str) -> Result<String, String> {
    if is_hex(input) && input.len() == SHA256_HEX_LEN {
        return Err("cannot specify 64-byte hexadecimal strings as a repository name".into());
    }
    let r = Reference::try_from(input).map_err(|e| e.to_string())?;
    Ok(match (r.tag(), r.digest()) {
        // ParseDockerRef: a reference both tagged and digested keeps only the digest.
        (_, Some(d)) => format!("{}/{}@{d}", r.registry(), r.repository()),
        (Some(t), None) => format!("{}/{}:{t}", r.registry(), r.repository()),
        (None, None) => format!("{}/{}:latest", r.registry(), r.repository()),
    })
}

/// Reads an image reference as containerd's `localResolve` does (see the module doc).
/// [`ImageError::Invalid`] when it is neither a reference nor an ID prefix.
pub fn parse_image(input: &str) -> Result<ImageQuery, ImageError> {
    if let Some(id) = full_digest(input) {
        return Ok(ImageQuery::Id(id));
    }
    let prefix = id_prefix(input);
    match (normalize_reference(input), prefix) {
        (Ok(name), prefix) => Ok(ImageQuery::Name { name, prefix }),
        (Err(_), Some(p)) => Ok(ImageQuery::Prefix(p)),
        (Err(reason), None) => Err(ImageError::Invalid {
            image: input.to_owned(),
            reason,
        }),
    }
}

/// Resolves `input` against the image store's `records` (containerd's `localResolve`, then
/// its ContainerStatus's repo tag and digest): by full ID, else by normalised name, else by
/// unique ID prefix.
pub fn resolve_image(input: &str, records: &[ImageRecord]) -> Result<ImageRef, ImageError> {
    let not_found = || ImageError::NotFound {
        image: input.to_owned(),
    };
    let (id, via_name) = match parse_image(input)? {
        ImageQuery::Id(id) => (id, None),
        ImageQuery::Name { name, prefix } => match records.iter().find(|r| r.name == name) {
            Some(r) => (r.id.clone(), Some(name)),
            None => (
                by_prefix(input, prefix.as_deref().ok_or_else(not_found)?, records)?,
                None,
            ),
        },
        ImageQuery::Prefix(p) => (by_prefix(input, &p, records)?, None),
    };
    let mut names: Vec<&str> = records
        .iter()
        .filter(|r| r.id == id)
        .map(|r| r.name.as_str())
        .collect();
    if names.is_empty() {
        return Err(not_found());
    }
    // docker's `reference.Sort` (what containerd's image store keeps References in):
    // tagged and digested, tagged, digested, the rest; alphabetical within each.
    names.sort_by_key(|n| (rank(n), *n));
    names.dedup();
    let first_of = |want: &[u8]| {
        names
            .iter()
            .find(|n| want.contains(&rank(n)))
            .map(|n| normalized_or_self(n))
            .unwrap_or_default()
    };
    Ok(ImageRef {
        name: via_name.unwrap_or_else(|| names[0].to_owned()),
        repo_tag: first_of(&[1]),
        repo_digest: first_of(&[0, 2]),
        id,
    })
}

/// The rank of a store name in docker's `reference.Sort`: 0 name+tag+digest, 1 name+tag,
/// 2 name+digest, 3 anything else (an ID record, a name that does not parse).
fn rank(name: &str) -> u8 {
    if full_digest(name).is_some() {
        return 3;
    }
    match Reference::try_from(name) {
        Ok(r) => match (
            name.contains('@'),
            r.tag().is_some() && has_explicit_tag(name),
        ) {
            (true, true) => 0,
            (false, true) => 1,
            (true, false) => 2,
            (false, false) => 3,
        },
        Err(_) => 3,
    }
}

/// Whether a reference spells a tag (a `:` after its last `/`, before any `@`).
fn has_explicit_tag(name: &str) -> bool {
    let before_digest = name.split('@').next().unwrap_or(name);
    before_digest
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

/// A store name in the form containerd reports it (`ParseAnyReference(..).String()`).
fn normalized_or_self(name: &str) -> String {
    match Reference::try_from(name) {
        Ok(r) => r.whole(),
        Err(_) => name.to_owned(),
    }
}

fn by_prefix(input: &str, prefix: &str, records: &[ImageRecord]) -> Result<String, ImageError> {
    let want = format!("sha256:{prefix}");
    let mut ids: Vec<&str> = records
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| id.starts_with(&want))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [] => Err(ImageError::NotFound {
            image: input.to_owned(),
        }),
        [one] => Ok((*one).to_owned()),
        many => Err(ImageError::Ambiguous {
            image: input.to_owned(),
            ids: many.iter().map(|s| (*s).to_owned()).collect(),
        }),
    }
}

/// `sha256:<64 hex>` (or sha384/sha512 with their lengths): a full digest.
fn full_digest(input: &str) -> Option<String> {
    let (alg, hex) = input.split_once(':')?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && is_hex(hex)).then(|| input.to_owned())
}

/// The hex part of an ID prefix (`sha256:<1..64 hex>` or `<1..64 hex>`), lowercase only as
/// containerd's digests are.
fn id_prefix(input: &str) -> Option<String> {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    (!hex.is_empty() && hex.len() <= SHA256_HEX_LEN && is_hex(hex)).then(|| hex.to_owned())
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID_A: &str = "sha256:aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";
    const ID_A2: &str = "sha256:aaaa1111ffff2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";
    const ID_B: &str = "sha256:0123456789ab0123456789ab0123456789ab0123456789ab0123456789abcdef";
    const MANIFEST: &str =
        "sha256:9999999999999999999999999999999999999999999999999999999999999999";

    fn store() -> Vec<ImageRecord> {
        vec![
            ImageRecord::new("docker.io/library/busybox:latest", ID_B),
            ImageRecord::new("docker.io/library/busybox:1.36", ID_B),
            ImageRecord::new(format!("docker.io/library/busybox@{MANIFEST}"), ID_B),
            ImageRecord::new(ID_B, ID_B),
            ImageRecord::new("localhost:5000/x:latest", ID_A),
            ImageRecord::new("registry.example/y:v1", ID_A2),
        ]
    }

    #[test]
    fn normalises_like_parse_docker_ref() {
        let d = &MANIFEST["sha256:".len()..];
        let table: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost/x:v2", "localhost/x:v2"),
            ("myorg/app", "docker.io/myorg/app:latest"),
            (
                "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64",
                "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
            ),
            ("0123456789ab", "docker.io/library/0123456789ab:latest"),
        ];
        for (input, want) in table {
            assert_eq!(normalize_reference(input).as_deref(), Ok(*want), "{input}");
        }
        assert_eq!(
            normalize_reference(&format!("a@{MANIFEST}")).unwrap(),
            format!("docker.io/library/a@{MANIFEST}")
        );
        assert_eq!(
            normalize_reference(&format!("a:tag@{MANIFEST}")).unwrap(),
            format!("docker.io/library/a@{MANIFEST}"),
            "a tag next to a digest is dropped"
        );
        for bad in ["", "BusyBox", "busybox:", "a@sha256:12", "-x", "a b", d] {
            assert!(normalize_reference(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn parse_tells_ids_names_and_prefixes_apart() {
        assert_eq!(parse_image(ID_B), Ok(ImageQuery::Id(ID_B.into())));
        assert_eq!(
            parse_image("0123456789ab"),
            Ok(ImageQuery::Name {
                name: "docker.io/library/0123456789ab:latest".into(),
                prefix: Some("0123456789ab".into()),
            })
        );
        assert_eq!(
            parse_image("busybox"),
            Ok(ImageQuery::Name {
                name: "docker.io/library/busybox:latest".into(),
                prefix: None,
            })
        );
        // 64 hex without the algorithm: not a name, an ID (as a prefix of full length).
        let bare = &ID_B["sha256:".len()..];
        assert_eq!(parse_image(bare), Ok(ImageQuery::Prefix(bare.into())));
        // sha256:<short> also reads as the name "sha256" with a tag, as in docker.
        assert!(matches!(
            parse_image("sha256:0123"),
            Ok(ImageQuery::Name { prefix: Some(p), .. }) if p == "0123"
        ));
        // Uppercase hex is no ID (containerd's digests are lowercase) but a valid tag.
        assert!(matches!(
            parse_image("sha256:ABCD"),
            Ok(ImageQuery::Name { prefix: None, .. })
        ));
        for bad in [
            "BUSYBOX",
            "Busybox:latest",
            "a b",
            "",
            "sha256:",
            "sha256:abc:d",
        ] {
            match parse_image(bad) {
                Err(ImageError::Invalid { image, reason }) => {
                    assert_eq!(image, bad);
                    assert!(!reason.is_empty());
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let e = parse_image("BusyBox").unwrap_err().to_string();
        assert!(e.contains("\"BusyBox\""), "{e}");
    }

    #[test]
    fn resolves_by_name_id_and_prefix() {
        let s = store();
        let busybox = ImageRef {
            id: ID_B.into(),
            name: "docker.io/library/busybox:latest".into(),
            repo_tag: "docker.io/library/busybox:1.36".into(),
            repo_digest: format!("docker.io/library/busybox@{MANIFEST}"),
        };
        assert_eq!(resolve_image("busybox", &s), Ok(busybox.clone()));
        assert_eq!(resolve_image("library/busybox", &s), Ok(busybox.clone()));
        assert_eq!(resolve_image("docker.io/busybox", &s), Ok(busybox.clone()));
        let by_tag = resolve_image("busybox:1.36", &s).unwrap();
        assert_eq!(by_tag.name, "docker.io/library/busybox:1.36");
        assert_eq!(by_tag.id, ID_B);
        let by_digest = resolve_image(&format!("busybox@{MANIFEST}"), &s).unwrap();
        assert_eq!(
            by_digest.name,
            format!("docker.io/library/busybox@{MANIFEST}")
        );
        // By ID, full, bare hex or prefix: created from the first reference (a tag).
        let by_id = ImageRef {
            name: "docker.io/library/busybox:1.36".into(),
            ..busybox.clone()
        };
        assert_eq!(resolve_image(ID_B, &s), Ok(by_id.clone()));
        assert_eq!(resolve_image(&ID_B[7..], &s), Ok(by_id.clone()));
        assert_eq!(resolve_image("0123456789ab", &s), Ok(by_id.clone()));
        assert_eq!(resolve_image("sha256:0123456789ab", &s), Ok(by_id));
        assert_eq!(busybox.cri_image_ref(), busybox.repo_digest);
        // An image without a repo digest reports its ID.
        let x = resolve_image("localhost:5000/x", &s).unwrap();
        assert_eq!(x.id, ID_A);
        assert_eq!(x.repo_tag, "localhost:5000/x:latest");
        assert_eq!(x.repo_digest, "");
        assert_eq!(x.cri_image_ref(), ID_A);
    }

    #[test]
    fn missing_and_ambiguous_are_typed() {
        let s = store();
        for missing in [
            "busybox:9",
            "nginx",
            "sha256:feedfeedfeedfeedfeedfeedfeedfeedfeedfeedfeedfeedfeedfeedfeedfeed",
            "beef",
            "sha256:beef",
        ] {
            assert_eq!(
                resolve_image(missing, &s),
                Err(ImageError::NotFound {
                    image: missing.into()
                }),
                "{missing}"
            );
        }
        assert_eq!(
            resolve_image("aaaa1111", &s),
            Err(ImageError::Ambiguous {
                image: "aaaa1111".into(),
                ids: vec![ID_A.into(), ID_A2.into()],
            })
        );
        assert_eq!(resolve_image("aaaa1111b", &s).unwrap().id, ID_A);
        assert!(matches!(
            resolve_image("UPPER", &s),
            Err(ImageError::Invalid { .. })
        ));
        assert!(matches!(
            resolve_image("busybox", &[]),
            Err(ImageError::NotFound { .. })
        ));
    }
}
