//! Where releases live: a local directory by default, S3-compatible stores, GCS or Azure by
//! URL (the object_store crate); listing, downloading with the digest checked, and
//! publishing whole or not at all.

use std::sync::Arc;

use futures_util::TryStreamExt;
use koupleless_config::{ConfigError, StorageConfig};
use koupleless_wire::Version;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, ObjectStoreScheme, path::Path};

use crate::{
    digest::sha256_hex,
    layout::{self, Artifact, ConfigFile},
};

/// The configured location: a store and the prefix under which modules are released.
pub struct Store {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// `storage.url` as written, for messages.
    url: String,
    /// `storage.max_artifact_mib`, in bytes.
    max_artifact_bytes: u64,
}

/// A storage operation that did not work; the message names the location, the source the
/// cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// `storage.url` or `storage.options` cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A release's `module.toml` cannot be used.
    #[error(transparent)]
    ReleaseConfig(#[from] koupleless_config::ReleaseConfigError),
    /// Listing the location failed.
    #[error("listing {url} failed")]
    List {
        /// `storage.url`.
        url: String,
        /// What the store answered.
        #[source]
        source: object_store::Error,
    },
    /// Downloading an artifact failed.
    #[error("downloading {location} failed")]
    Download {
        /// Where the artifact is.
        location: String,
        /// What the store answered.
        #[source]
        source: object_store::Error,
    },
    /// Reading an artifact's digest file failed.
    #[error("reading the digest {location} failed")]
    ReadDigest {
        /// Where the digest file is.
        location: String,
        /// What the store answered.
        #[source]
        source: object_store::Error,
    },
    /// The artifact's bytes do not match its digest file.
    #[error(
        "{location} has sha256 {actual}, but {digest} says {expected}; the upload is incomplete or the digest file is stale (write the artifact first, then its digest)"
    )]
    DigestMismatch {
        /// Where the artifact is.
        location: String,
        /// Where its digest file is.
        digest: String,
        /// The digest of the downloaded bytes.
        actual: String,
        /// The digest the file gives.
        expected: String,
    },
    /// The artifact is larger than the base accepts.
    #[error(
        "{location} is {size} bytes, more than storage.max_artifact_mib ({max_mib} MiB) allows; raise it or make the component smaller"
    )]
    TooLarge {
        /// Where the artifact is.
        location: String,
        /// Its size as listed, or as far as the download got.
        size: u64,
        /// `storage.max_artifact_mib`.
        max_mib: u64,
    },
    /// Uploading an artifact failed; nothing of it is visible.
    #[error("uploading {location} failed")]
    Upload {
        /// Where the artifact was going.
        location: String,
        /// What the store answered.
        #[source]
        source: object_store::Error,
    },
    /// The artifact was uploaded, its digest file was not.
    #[error(
        "uploading {digest} failed; {location} is complete, and bases install it once two listings see it unchanged"
    )]
    UploadDigest {
        /// Where the digest file was going.
        digest: String,
        /// Where the (complete) artifact is.
        location: String,
        /// What the store answered.
        #[source]
        source: object_store::Error,
    },
}

/// Releases `bytes` as `name@version` at `config.url`, in the layout bases watch:
/// `<prefix>/<name>/<version>/module.wasm`, then its `module.wasm.sha256` (the artifact first,
/// so a base never sees a digest without its artifact). Each object is written whole or not
/// at all. Returns where the artifact is.
pub async fn publish(
    config: &StorageConfig,
    name: &str,
    version: &Version,
    bytes: Vec<u8>,
) -> Result<String, StorageError> {
    publish_with_progress(config, name, version, bytes, &|_| {}).await
}

/// Artifacts larger than this are uploaded in parts of this size (object stores take parts of
/// 5 MiB or more, the last excepted).
pub const UPLOAD_PART_SIZE: usize = 8 * 1024 * 1024;

/// [`publish`], calling `progress` with the bytes of the artifact uploaded so far. An artifact
/// larger than [`UPLOAD_PART_SIZE`] goes up as a multipart upload, which the store shows
/// only once it is complete and which is aborted on failure: nothing partial is left.
pub async fn publish_with_progress(
    config: &StorageConfig,
    name: &str,
    version: &Version,
    bytes: Vec<u8>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<String, StorageError> {
    let storage = Store::open(config)?;
    let key = storage.release_key(name, version, layout::MODULE_FILE);
    let where_ = storage.describe(&key);
    let digest = sha256_hex(&bytes);
    storage
        .upload(&key, bytes::Bytes::from(bytes), progress)
        .await
        .map_err(|source| StorageError::Upload {
            location: where_.clone(),
            source,
        })?;
    storage
        .put_digest(&key, &where_, &digest, layout::MODULE_FILE)
        .await?;
    Ok(where_)
}

/// Releases `text` as the configuration of `name@version` at `config.url`:
/// `<prefix>/<name>/<version>/module.toml`, then its `module.toml.sha256`. Publish it before
/// the artifact ([`publish`]): a base installs a complete artifact with whatever complete
/// config is beside it at that moment. The text is checked first ([`ReleaseConfig::parse`]),
/// so a config every base would refuse is never published. Returns where it is.
///
/// [`ReleaseConfig::parse`]: koupleless_config::ReleaseConfig::parse
pub async fn publish_config(
    config: &StorageConfig,
    name: &str,
    version: &Version,
    text: Vec<u8>,
) -> Result<String, StorageError> {
    let storage = Store::open(config)?;
    let key = storage.release_key(name, version, layout::CONFIG_FILE);
    let where_ = storage.describe(&key);
    koupleless_config::ReleaseConfig::parse(&where_, &text)?;
    let digest = sha256_hex(&text);
    storage
        .store
        .put(&key, text.into())
        .await
        .map_err(|source| StorageError::Upload {
            location: where_.clone(),
            source,
        })?;
    storage
        .put_digest(&key, &where_, &digest, layout::CONFIG_FILE)
        .await?;
    Ok(where_)
}

impl Store {
    /// `<prefix>/<name>/<version>/<file>`.
    fn release_key(&self, name: &str, version: &Version, file: &str) -> Path {
        Path::from_iter(self.prefix.parts().chain([
            name.into(),
            version.to_string().as_str().into(),
            file.into(),
        ]))
    }

    /// Writes the `sha256sum`-style digest file of `key` (`location` in messages): written
    /// after the object, it marks the object complete.
    async fn put_digest(
        &self,
        key: &Path,
        location: &str,
        digest: &str,
        file: &str,
    ) -> Result<(), StorageError> {
        let digest_key = Path::from(format!("{key}{}", layout::DIGEST_SUFFIX));
        self.store
            .put(
                &digest_key,
                format!("{digest}  {file}\n").into_bytes().into(),
            )
            .await
            .map_err(|source| StorageError::UploadDigest {
                digest: self.describe(&digest_key),
                location: location.to_owned(),
                source,
            })?;
        Ok(())
    }
}

impl Store {
    /// One object, whole: a single put, or parts of [`UPLOAD_PART_SIZE`] completed together
    /// (and aborted when one fails).
    async fn upload(
        &self,
        key: &Path,
        bytes: bytes::Bytes,
        progress: &(dyn Fn(u64) + Sync),
    ) -> object_store::Result<()> {
        let size = bytes.len() as u64;
        if bytes.len() <= UPLOAD_PART_SIZE {
            self.store.put(key, bytes.into()).await?;
            progress(size);
            return Ok(());
        }
        let mut upload = self.store.put_multipart(key).await?;
        let mut sent = 0u64;
        for part in bytes.chunks(UPLOAD_PART_SIZE) {
            let part = bytes.slice_ref(part);
            let len = part.len() as u64;
            if let Err(e) = upload.put_part(part.into()).await {
                // Best effort: a store that keeps the parts of an aborted upload expires them.
                let _ = upload.abort().await;
                return Err(e);
            }
            sent += len;
            progress(sent);
        }
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(e);
        }
        Ok(())
    }

    /// Opens `storage.url`; an unknown scheme, a missing feature or a bad option is a
    /// configuration error naming the key.
    pub fn open(config: &StorageConfig) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::invalid("storage.url", why);
        let url = to_url(&config.url).map_err(invalid)?;
        let (scheme, prefix) = ObjectStoreScheme::parse(&url)
            .map_err(|e| invalid(format!("`{}` is not a storage location ({e})", config.url)))?;
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                no_options(config, "a local directory")?;
                Arc::new(object_store::local::LocalFileSystem::new())
            }
            ObjectStoreScheme::Memory => {
                no_options(config, "memory://")?;
                Arc::new(object_store::memory::InMemory::new())
            }
            ObjectStoreScheme::AmazonS3 => s3(&url, config)?,
            ObjectStoreScheme::GoogleCloudStorage => gcs(&url, config)?,
            ObjectStoreScheme::MicrosoftAzure => azure(&url, config)?,
            other => {
                return Err(invalid(format!(
                    "`{}` is a {other:?} location, which the base cannot watch; use a directory, s3://, gs:// or az://",
                    config.url
                )));
            }
        };
        Ok(Self {
            store,
            prefix,
            url: config.url.clone(),
            max_artifact_bytes: config.max_artifact_mib.saturating_mul(1 << 20),
        })
    }

    /// `storage.url` as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where an object is, as a person would look for it.
    pub fn describe(&self, location: &Path) -> String {
        let relative: Vec<_> = location
            .prefix_match(&self.prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect())
            .unwrap_or_default();
        format!("{}/{}", self.url.trim_end_matches('/'), relative.join("/"))
    }

    /// Every object under the prefix.
    pub async fn list(&self) -> Result<Vec<ObjectMeta>, StorageError> {
        self.store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|source| StorageError::List {
                url: self.url.clone(),
                source,
            })
    }

    /// The prefix objects are listed under.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Downloads an artifact and, when it has a digest file, checks the bytes against it. An
    /// artifact over `storage.max_artifact_mib` is refused from its listed size, and a
    /// download is stopped as soon as it streams past the cap, whatever the listing said.
    pub async fn fetch(&self, artifact: &Artifact) -> Result<Vec<u8>, StorageError> {
        let where_ = self.describe(&artifact.location);
        let too_large = |size| StorageError::TooLarge {
            location: where_.clone(),
            size,
            max_mib: self.max_artifact_bytes >> 20,
        };
        if artifact.size > self.max_artifact_bytes {
            return Err(too_large(artifact.size));
        }
        let download = |source| StorageError::Download {
            location: where_.clone(),
            source,
        };
        let mut stream = self
            .store
            .get(&artifact.location)
            .await
            .map_err(download)?
            .into_stream();
        let mut bytes = Vec::with_capacity(usize::try_from(artifact.size).unwrap_or(0));
        while let Some(chunk) = stream.try_next().await.map_err(download)? {
            let size = bytes.len() as u64 + chunk.len() as u64;
            if size > self.max_artifact_bytes {
                return Err(too_large(size));
            }
            bytes.extend_from_slice(&chunk);
        }
        if let Some(digest) = &artifact.digest {
            self.check_digest(&where_, digest, &bytes).await?;
        }
        Ok(bytes)
    }

    /// Downloads a release's configuration: at most one byte over
    /// [`MAX_RELEASE_CONFIG_BYTES`](koupleless_config::MAX_RELEASE_CONFIG_BYTES) is read
    /// (parsing refuses it), and the bytes are checked against its digest file when there
    /// is one.
    pub async fn fetch_config(&self, config: &ConfigFile) -> Result<Vec<u8>, StorageError> {
        let where_ = self.describe(&config.location);
        let download = |source| StorageError::Download {
            location: where_.clone(),
            source,
        };
        let cap = koupleless_config::MAX_RELEASE_CONFIG_BYTES as u64 + 1;
        let bytes = self
            .store
            .get_opts(
                &config.location,
                object_store::GetOptions {
                    range: Some(object_store::GetRange::Bounded(0..cap)),
                    ..Default::default()
                },
            )
            .await
            .map_err(download)?
            .bytes()
            .await
            .map_err(download)?
            .to_vec();
        if let Some(digest) = &config.digest {
            self.check_digest(&where_, digest, &bytes).await?;
        }
        Ok(bytes)
    }

    /// Checks `bytes`, downloaded from `where_`, against the digest file at `digest`.
    async fn check_digest(
        &self,
        where_: &str,
        digest: &Path,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        let read_digest = |source| StorageError::ReadDigest {
            location: self.describe(digest),
            source,
        };
        // A digest file is one line; more than that is not read.
        let expected = self
            .store
            .get_opts(
                digest,
                object_store::GetOptions {
                    range: Some(object_store::GetRange::Bounded(0..DIGEST_FILE_MAX)),
                    ..Default::default()
                },
            )
            .await
            .map_err(read_digest)?
            .bytes()
            .await
            .map_err(read_digest)?;
        // `sha256sum` output ("<hex>  module.wasm") or the bare hex digest.
        let expected = String::from_utf8_lossy(&expected)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let actual = sha256_hex(bytes);
        if expected != actual {
            return Err(StorageError::DigestMismatch {
                location: where_.to_owned(),
                digest: self.describe(digest),
                actual,
                expected,
            });
        }
        Ok(())
    }
}

/// The most of a digest file that is read (`sha256sum` writes 64 hex digits, two spaces and
/// the file name).
const DIGEST_FILE_MAX: u64 = 1024;

/// A URL, or a directory path (relative to the working directory) made into a `file://` URL.
fn to_url(location: &str) -> Result<url::Url, String> {
    if location.contains("://") {
        return url::Url::parse(location).map_err(|e| {
            format!("`{location}` is not a URL ({e}); write e.g. s3://bucket/modules or ./modules")
        });
    }
    let path = std::path::absolute(location)
        .map_err(|e| format!("`{location}` is not a usable directory path ({e})"))?;
    url::Url::from_directory_path(&path)
        .map_err(|()| format!("`{location}` is not a usable directory path"))
}

fn no_options(config: &StorageConfig, what: &str) -> Result<(), ConfigError> {
    match config.options.keys().next() {
        None => Ok(()),
        Some(key) => Err(ConfigError::invalid(
            &format!("storage.options.{key}"),
            format!("{what} takes no options; remove it"),
        )),
    }
}

#[cfg(feature = "aws")]
fn s3(url: &url::Url, config: &StorageConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
    for (key, value) in &config.options {
        let parsed: AmazonS3ConfigKey = key.parse().map_err(|e| unknown_option(key, e))?;
        builder = builder.with_config(parsed, value);
    }
    Ok(Arc::new(builder.build().map_err(|e| built(config, e))?))
}

#[cfg(feature = "gcp")]
fn gcs(url: &url::Url, config: &StorageConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
    for (key, value) in &config.options {
        let parsed: GoogleConfigKey = key.parse().map_err(|e| unknown_option(key, e))?;
        builder = builder.with_config(parsed, value);
    }
    Ok(Arc::new(builder.build().map_err(|e| built(config, e))?))
}

#[cfg(feature = "azure")]
fn azure(url: &url::Url, config: &StorageConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
    for (key, value) in &config.options {
        let parsed: AzureConfigKey = key.parse().map_err(|e| unknown_option(key, e))?;
        builder = builder.with_config(parsed, value);
    }
    Ok(Arc::new(builder.build().map_err(|e| built(config, e))?))
}

#[cfg(not(feature = "aws"))]
fn s3(_: &url::Url, config: &StorageConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    Err(missing_feature(config, "aws"))
}

#[cfg(not(feature = "gcp"))]
fn gcs(_: &url::Url, config: &StorageConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    Err(missing_feature(config, "gcp"))
}

#[cfg(not(feature = "azure"))]
fn azure(_: &url::Url, config: &StorageConfig) -> Result<Arc<dyn ObjectStore>, ConfigError> {
    Err(missing_feature(config, "azure"))
}

#[allow(dead_code)]
fn missing_feature(config: &StorageConfig, feature: &str) -> ConfigError {
    ConfigError::invalid(
        "storage.url",
        format!(
            "`{}` needs the `{feature}` feature of the koupleless crate; enable it in the base's Cargo.toml (koupleless = {{ version = \"…\", features = [\"{feature}\"] }})",
            config.url
        ),
    )
}

#[allow(dead_code)]
fn unknown_option(key: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::invalid(
        &format!("storage.options.{key}"),
        format!(
            "not an option of this store ({e}); see the object_store crate's configuration keys"
        ),
    )
}

#[allow(dead_code)]
fn built(config: &StorageConfig, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::invalid("storage.url", format!("cannot open `{}`: {e}", config.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> StorageConfig {
        StorageConfig {
            url: url.to_owned(),
            ..StorageConfig::default()
        }
    }

    #[test]
    fn a_relative_directory_is_resolved_against_the_working_directory() {
        let storage = Store::open(&config("./modules")).expect("opens");
        let cwd = std::env::current_dir().unwrap();
        let expected = Path::from_absolute_path(cwd.join("modules")).unwrap();
        assert_eq!(storage.prefix(), &expected);
    }

    #[test]
    fn unsupported_locations_and_options_name_the_key() {
        let err = Store::open(&config("ftp://example.com/x"))
            .err()
            .expect("ftp is refused")
            .to_string();
        assert!(err.contains("storage.url"), "{err}");
        let mut with_option = config("./modules");
        with_option.options.insert("region".into(), "x".into());
        let err = Store::open(&with_option)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("storage.options.region"), "{err}");
    }

    #[cfg(feature = "aws")]
    #[test]
    fn s3_options_are_checked() {
        let mut c = config("s3://bucket/modules");
        c.options
            .insert("aws_endpoint".into(), "http://127.0.0.1:9".into());
        c.options.insert("aws_region".into(), "us-east-1".into());
        c.options.insert("allow_http".into(), "true".into());
        let storage = Store::open(&c).expect("opens without contacting anything");
        assert_eq!(storage.prefix().as_ref(), "modules");
        c.options.insert("aws_colour".into(), "blue".into());
        let err = Store::open(&c).err().expect("refused").to_string();
        assert!(err.contains("storage.options.aws_colour"), "{err}");
    }

    #[tokio::test]
    async fn a_download_that_streams_past_the_cap_is_stopped_whatever_the_listing_said() {
        let store = Store::open(&StorageConfig {
            max_artifact_mib: 1,
            ..config("memory:///modules")
        })
        .expect("opens");
        let location = Path::from("modules/hello/1.0.0/module.wasm");
        store
            .store
            .put(&location, vec![0u8; 3 << 20].into())
            .await
            .unwrap();
        let artifact = Artifact {
            name: "hello".to_owned(),
            version: Version::new(1, 0, 0),
            location,
            // The listing understates the size.
            size: 10,
            digest: None,
            config: None,
        };
        let err = store.fetch(&artifact).await.expect_err("refused");
        assert!(
            matches!(err, StorageError::TooLarge { size, .. } if size > 1 << 20),
            "{err}"
        );
        assert!(
            err.to_string().contains("storage.max_artifact_mib"),
            "{err}"
        );
    }
}
