//! Resolving an image in containerd's image store to what a container needs: the chain id
//! of its unpacked top layer (the parent of the container's snapshot) and its config
//! (entrypoint, cmd, env, working dir, user).
//!
//! Mirrors containerd's `images.Manifest` / `images.Config` / `image.RootFS` + `identity.ChainID`.
//! A CRI container's reference is resolved by ID, name or ID prefix as containerd's CRI does
//! (`localResolve`): `Images.List` gives every name, each image's config digest is its ID,
//! and [`berth_core::resolve_image`] picks (docs/containerd-behaviour.md §4.1.1).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_backend::{BackendError, BackendErrorKind, ImageRecord, ImageRef};
use containerd_client::services::v1::{GetImageRequest, ListImagesRequest, ReadContentRequest};
use containerd_client::types::Descriptor as WireDescriptor;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::client::Client;
use crate::error::{deadline_exceeded, local, map_status};

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Largest manifest, index or config berth reads.
const MAX_BLOB_BYTES: usize = 4 << 20;

/// The part of an image config (OCI `config` object) that feeds a container's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint", deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(rename = "Cmd", deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=value`.
    #[serde(rename = "Env", deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// `WorkingDir`; empty = `/`.
    #[serde(rename = "WorkingDir", deserialize_with = "null_as_default")]
    pub working_dir: String,
    /// `User` (`uid`, `uid:gid`, or a name).
    #[serde(rename = "User", deserialize_with = "null_as_default")]
    pub user: String,
}

/// An image resolved for container creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Digest of the image's target (manifest or index) when it was resolved.
    pub target: String,
    /// The image ID: the digest of its config (`sha256:…`).
    pub id: String,
    /// Chain id of the top layer: the name of the committed snapshot to prepare on.
    pub chain_id: String,
    /// Its config.
    pub config: ImageConfig,
}

/// Resolved images by target digest (content is immutable, so entries never go stale;
/// the name → digest step is done on every create).
#[derive(Debug, Default)]
pub(crate) struct ImageCache {
    by_target: Mutex<HashMap<String, Arc<ResolvedImage>>>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default, deserialize_with = "null_as_default")]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
}

#[derive(Debug, Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<ImageConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default, deserialize_with = "null_as_default")]
    diff_ids: Vec<String>,
}

/// `identity.ChainID`: the first diff id, then `sha256(parent + " " + diff_id)` per layer.
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut it = diff_ids.iter();
    let mut chain = it.next()?.clone();
    for diff in it {
        let mut h = Sha256::new();
        h.update(chain.as_bytes());
        h.update(b" ");
        h.update(diff.as_bytes());
        chain = format!("sha256:{}", hex(&h.finalize()));
    }
    Some(chain)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// containerd's name for this machine's architecture.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Picks the manifest of an index for linux on this architecture, or the only manifest.
fn pick_manifest(index: &Index) -> Result<&Descriptor, String> {
    if let [only] = index.manifests.as_slice() {
        return Ok(only);
    }
    let arch = host_arch();
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .ok_or_else(|| {
            format!(
                "no linux/{arch} manifest among {} manifests",
                index.manifests.len()
            )
        })
}

fn is_index(media_type: &str, body: &serde_json::Value) -> bool {
    INDEX_TYPES.contains(&media_type)
        || (media_type.is_empty() || !media_type.contains("manifest.v"))
            && body.get("manifests").is_some()
            && body.get("config").is_none()
}

impl ImageCache {
    /// Resolves `image` (a name in containerd's image store). A missing image, or one that
    /// cannot be read, is `FailedPrecondition` naming the image; `target` is the container
    /// the resolution is for (it goes into the error).
    pub(crate) async fn resolve(
        &self,
        client: &Client,
        image: &str,
        target: &str,
        timeout: Duration,
    ) -> Result<Arc<ResolvedImage>, BackendError> {
        const VERB: &str = "Images.Get";
        let got = tokio::time::timeout(
            timeout,
            client.images().get(client.request(GetImageRequest {
                name: image.to_owned(),
            })),
        )
        .await
        .map_err(|_| deadline_exceeded(VERB, target, timeout))?;
        let got = match got {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Err(local(
                    BackendErrorKind::FailedPrecondition,
                    VERB,
                    target,
                    format!(
                        "image {image:?} is not in containerd's image store (namespace {:?})",
                        client.namespace()
                    ),
                ));
            }
            Err(s) => return Err(map_status(&s, VERB, target)),
        };
        let desc = got.image.and_then(|i| i.target).ok_or_else(|| {
            local(
                BackendErrorKind::FailedPrecondition,
                VERB,
                target,
                format!("image {image:?} has no target"),
            )
        })?;
        self.load(client, image, desc, target, timeout).await
    }

    /// Every image of the store with its ID, read through the cache. An image whose content
    /// cannot be read (a partial pull, another platform only) is left out, as containerd's
    /// CRI leaves it out of its image store; an unreachable containerd is an error.
    async fn records(
        &self,
        client: &Client,
        target: &str,
        timeout: Duration,
    ) -> Result<Vec<(ImageRecord, Arc<ResolvedImage>)>, BackendError> {
        const VERB: &str = "Images.List";
        let listed = tokio::time::timeout(
            timeout,
            client
                .images()
                .list(client.request(ListImagesRequest { filters: vec![] })),
        )
        .await
        .map_err(|_| deadline_exceeded(VERB, target, timeout))?
        .map_err(|s| map_status(&s, VERB, target))?
        .into_inner();
        let mut out = Vec::with_capacity(listed.images.len());
        for image in listed.images {
            let Some(desc) = image.target else { continue };
            match self.load(client, &image.name, desc, target, timeout).await {
                Ok(r) => out.push((ImageRecord::new(image.name, r.id.clone()), r)),
                Err(e) if e.kind == BackendErrorKind::FailedPrecondition => {
                    tracing::debug!(image = %image.name, error = %e, "image left out: unreadable");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Resolves a CRI container's image reference (`input`) by ID, name or unique ID prefix.
    /// NotFound names the image; an ambiguous prefix is InvalidArgument.
    pub(crate) async fn resolve_ref(
        &self,
        client: &Client,
        input: &str,
        target: &str,
        timeout: Duration,
    ) -> Result<(ImageRef, Arc<ResolvedImage>), BackendError> {
        let records = self.records(client, target, timeout).await?;
        let table: Vec<ImageRecord> = records.iter().map(|(r, _)| r.clone()).collect();
        let image = berth_core::resolve_image(input, &table).map_err(|e| {
            let mut e = e.to_backend("Images.List", target);
            e.message
                .push_str(&format!(" (containerd namespace {:?})", client.namespace()));
            e
        })?;
        let resolved = records
            .into_iter()
            .find(|(r, _)| r.name == image.name)
            .map(|(_, r)| r)
            .ok_or_else(|| {
                local(
                    BackendErrorKind::NotFound,
                    "Images.List",
                    target,
                    format!("image {input:?} not found"),
                )
            })?;
        Ok((image, resolved))
    }

    /// The image a container's metadata names: the store name it was resolved through if
    /// that still points at the same ID, else any name of that ID (a tag moved meanwhile),
    /// else NotFound. Metadata without a resolved image resolves `config.image`.
    pub(crate) async fn for_container(
        &self,
        client: &Client,
        image: &ImageRef,
        config_image: &str,
        target: &str,
        timeout: Duration,
    ) -> Result<(String, Arc<ResolvedImage>), BackendError> {
        if image.id.is_empty() {
            let (image, r) = self
                .resolve_ref(client, config_image, target, timeout)
                .await?;
            return Ok((image.name, r));
        }
        let records = self.records(client, target, timeout).await?;
        let same = |(rec, _): &&(ImageRecord, Arc<ResolvedImage>)| rec.id == image.id;
        records
            .iter()
            .filter(same)
            .find(|(rec, _)| rec.name == image.name)
            .or_else(|| records.iter().find(same))
            .map(|(rec, r)| (rec.name.clone(), r.clone()))
            .ok_or_else(|| {
                local(
                    BackendErrorKind::NotFound,
                    "Images.List",
                    target,
                    format!(
                        "image {config_image:?} ({}) is no longer in containerd's image store (namespace {:?})",
                        image.id,
                        client.namespace()
                    ),
                )
            })
    }

    /// What the image with target `desc` (named `image`) is, read once per target digest.
    async fn load(
        &self,
        client: &Client,
        image: &str,
        desc: WireDescriptor,
        target: &str,
        timeout: Duration,
    ) -> Result<Arc<ResolvedImage>, BackendError> {
        if let Some(hit) = self.lock().get(&desc.digest) {
            return Ok(hit.clone());
        }
        let bad = |why: String| {
            local(
                BackendErrorKind::FailedPrecondition,
                "Content.Read",
                target,
                format!("image {image:?}: {why}"),
            )
        };
        let mut body = read_blob(client, &desc.digest, target, timeout).await?;
        let mut value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| bad(format!("{}: {e}", desc.digest)))?;
        if is_index(&desc.media_type, &value) {
            let index: Index =
                serde_json::from_value(value).map_err(|e| bad(format!("index: {e}")))?;
            let chosen = pick_manifest(&index).map_err(bad)?.digest.clone();
            body = read_blob(client, &chosen, target, timeout).await?;
            value = serde_json::from_slice(&body).map_err(|e| bad(format!("{chosen}: {e}")))?;
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| bad(format!("manifest: {e}")))?;
        let config_bytes = read_blob(client, &manifest.config.digest, target, timeout).await?;
        let config: ConfigBlob = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(format!("config {}: {e}", manifest.config.digest)))?;
        let chain_id = chain_id(&config.rootfs.diff_ids)
            .ok_or_else(|| bad("config lists no layers (rootfs.diff_ids is empty)".into()))?;
        let resolved = Arc::new(ResolvedImage {
            target: desc.digest.clone(),
            id: manifest.config.digest.clone(),
            chain_id,
            config: config.config.unwrap_or_default(),
        });
        self.lock().insert(desc.digest, resolved.clone());
        Ok(resolved)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ResolvedImage>>> {
        self.by_target.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads a whole blob from the content store.
async fn read_blob(
    client: &Client,
    digest: &str,
    target: &str,
    timeout: Duration,
) -> Result<Vec<u8>, BackendError> {
    const VERB: &str = "Content.Read";
    let read = async {
        let mut stream = client
            .content()
            .read(client.request(ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            }))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await? {
            out.extend_from_slice(&chunk.data);
            if out.len() > MAX_BLOB_BYTES {
                return Err(tonic::Status::out_of_range(format!(
                    "blob {digest} is larger than {MAX_BLOB_BYTES} bytes"
                )));
            }
        }
        Ok(out)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(deadline_exceeded(VERB, target, timeout)),
        Ok(Err(s)) if s.code() == tonic::Code::NotFound => Err(local(
            BackendErrorKind::FailedPrecondition,
            VERB,
            target,
            format!("image blob {digest} is missing from the content store"),
        )),
        Ok(Err(s)) => Err(map_status(&s, VERB, target)),
        Ok(Ok(b)) => Ok(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_of_one_layer_is_its_diff_id() {
        let d = vec!["sha256:aa".to_owned()];
        assert_eq!(chain_id(&d).as_deref(), Some("sha256:aa"));
        assert_eq!(chain_id(&[]), None);
    }

    #[test]
    fn chain_id_follows_identity_chain_id() {
        // sha256("sha256:a sha256:b")
        let d = vec!["sha256:a".to_owned(), "sha256:b".to_owned()];
        let mut h = Sha256::new();
        h.update(b"sha256:a sha256:b");
        let want = format!("sha256:{}", hex(&h.finalize()));
        assert_eq!(chain_id(&d), Some(want.clone()));
        let d3 = vec![
            "sha256:a".to_owned(),
            "sha256:b".to_owned(),
            "sha256:c".to_owned(),
        ];
        let mut h = Sha256::new();
        h.update(format!("{want} sha256:c").as_bytes());
        assert_eq!(
            chain_id(&d3),
            Some(format!("sha256:{}", hex(&h.finalize())))
        );
    }

    #[test]
    fn index_picks_this_platform_or_the_only_manifest() {
        let arch = host_arch();
        let idx: Index = serde_json::from_value(serde_json::json!({
            "manifests": [
                {"mediaType": "m", "digest": "sha256:other", "platform": {"os": "linux", "architecture": "s390x"}},
                {"mediaType": "m", "digest": "sha256:mine", "platform": {"os": "linux", "architecture": arch}},
            ]
        }))
        .unwrap();
        assert_eq!(pick_manifest(&idx).unwrap().digest, "sha256:mine");
        let one: Index = serde_json::from_value(serde_json::json!({
            "manifests": [{"digest": "sha256:only"}]
        }))
        .unwrap();
        assert_eq!(pick_manifest(&one).unwrap().digest, "sha256:only");
        let none: Index = serde_json::from_value(serde_json::json!({
            "manifests": [
                {"digest": "sha256:x", "platform": {"os": "windows", "architecture": arch}},
                {"digest": "sha256:y", "platform": {"os": "linux", "architecture": "s390x"}},
            ]
        }))
        .unwrap();
        assert!(pick_manifest(&none).unwrap_err().contains("no linux/"));
    }

    #[test]
    fn config_with_nulls_decodes() {
        let c: ConfigBlob = serde_json::from_value(serde_json::json!({
            "config": {"Entrypoint": null, "Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "", "User": null},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:l1"]}
        }))
        .unwrap();
        let cfg = c.config.unwrap();
        assert_eq!(cfg.cmd, vec!["sh"]);
        assert!(cfg.entrypoint.is_empty());
        assert_eq!(cfg.env, vec!["PATH=/bin"]);
        assert_eq!(c.rootfs.diff_ids, vec!["sha256:l1"]);
    }

    #[test]
    fn index_detection() {
        let v = serde_json::json!({"manifests": []});
        assert!(is_index("", &v));
        assert!(is_index(INDEX_TYPES[0], &serde_json::json!({})));
        let m = serde_json::json!({"config": {}, "layers": []});
        assert!(!is_index("application/vnd.oci.image.manifest.v1+json", &m));
        assert!(!is_index("", &m));
    }
}
