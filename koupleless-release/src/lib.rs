//! # koupleless-release
//!
//! A release outside any base: a wasm module's artifact and the manifest it embeds
//! ([`embedded_manifest`]), where releases live in object storage ([`Store`], the
//! [`layout`]), publishing one whole or not at all ([`publish`]), and how the bases of a
//! cluster take turns installing it and record what happened ([`coordination`]).
//!
//! What belongs here: everything about a release that a tool needs without running a base.
//! The base uses it to watch storage and to coordinate rollouts; the `koupleless` command uses
//! it to check a build, publish it and read the cluster's rollout records, and so links no
//! WebAssembly runtime.
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `aws` | yes | `s3://` locations: AWS S3 and S3-compatible stores (Alibaba OSS, MinIO, Ceph) |
//! | `gcp` | no | `gs://` locations: Google Cloud Storage |
//! | `azure` | no | `az://` locations: Azure Blob Storage |

pub mod coordination;
mod digest;
pub mod layout;
mod manifest_section;
pub mod redis;
mod store;

pub use digest::sha256_hex;
pub use manifest_section::{
    ArtifactError, MANIFEST_SECTION, MIGRATIONS_SECTION, embedded_manifest, embedded_migrations,
};
pub use store::{
    StorageError, Store, UPLOAD_PART_SIZE, publish, publish_config, publish_with_progress,
};
