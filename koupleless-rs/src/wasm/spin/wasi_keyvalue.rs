//! `wasi:keyvalue@0.2.0-draft2` (store, atomics, batch), the key-value API of Spin 3: the
//! bucket `default` is the module's own key-value store, as in `fermyon:spin/key-value`.
//!
//! `increment` keeps the number as decimal text. It and `swap` are atomic against each other
//! within this base process (a lock per key); a plain `set` of the same key, or another base
//! sharing a Redis store, is not held off.

use std::hash::{Hash, Hasher};

use bytes::Bytes;
use koupleless_module::KeyValue;
use tokio::sync::Mutex;
use wasmtime::component::Resource;

use super::{
    DEFAULT_LABEL,
    bindings::wasi::keyvalue::{
        atomics::{self, CasError, HostCas},
        batch,
        store::{self, Error, HostBucket, KeyResponse},
    },
    close_handle, handle, open_handle, quoted,
};
use crate::wasm::guest_state::GuestState;

/// Keys a `list-keys` page holds at most.
const PAGE: usize = 1000;

/// An open bucket: the module's own key-value store.
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct Bucket {
    kv: KeyValue,
    module: String,
}

/// A compare-and-swap in progress: the value of `key` when it began.
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct Cas {
    kv: KeyValue,
    module: String,
    key: String,
    seen: Option<Bytes>,
}

/// The lock `increment` and `swap` of `module`'s `key` take.
fn lock_of(module: &str, key: &str) -> &'static Mutex<()> {
    static STRIPES: [Mutex<()>; 64] = [const { Mutex::const_new(()) }; 64];
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (module, key).hash(&mut h);
    // The remainder is below the array's length, so it fits any usize.
    let i = usize::try_from(h.finish() % STRIPES.len() as u64).unwrap_or(0);
    &STRIPES[i]
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

impl GuestState {
    fn bucket(&mut self, bucket: &Resource<Bucket>) -> Result<(KeyValue, String), Error> {
        handle(self, bucket)
            .map(|b| (b.kv.clone(), b.module.clone()))
            .map_err(Error::Other)
    }
}

impl store::Host for GuestState {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Error> {
        if identifier != DEFAULT_LABEL {
            tracing::debug!(bucket = %quoted(&identifier), "a component opened a wasi:keyvalue bucket other than `default`");
            return Err(Error::NoSuchStore);
        }
        let caps = self.capabilities().map_err(|_| Error::AccessDenied)?;
        let bucket = Bucket {
            kv: caps.kv.clone(),
            module: caps.module.name.clone(),
        };
        open_handle(self, bucket).map_err(Error::Other)
    }
}

impl HostBucket for GuestState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        let (kv, _) = self.bucket(&bucket)?;
        kv.get(&key)
            .await
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(other)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let (kv, _) = self.bucket(&bucket)?;
        kv.set(&key, value).await.map_err(other)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Error> {
        let (kv, _) = self.bucket(&bucket)?;
        kv.delete(&key).await.map(|_existed| ()).map_err(other)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Error> {
        let (kv, _) = self.bucket(&bucket)?;
        kv.get(&key).await.map(|v| v.is_some()).map_err(other)
    }

    /// Keys in order, a page at a time; the cursor is the last key of the page before.
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<KeyResponse, Error> {
        let (kv, _) = self.bucket(&bucket)?;
        let keys = kv.keys("").await.map_err(other)?;
        let after = match &cursor {
            Some(last) => keys.partition_point(|k| k <= last),
            None => 0,
        };
        let budget = self.max_body();
        let mut used = 0;
        let mut page = Vec::new();
        for key in &keys[after..] {
            used += key.len() + 8;
            if page.len() == PAGE || (used > budget && !page.is_empty()) {
                break;
            }
            if used > budget {
                return Err(Error::Other(format!(
                    "the key after the cursor is larger than the instance's memory (wasm.max_memory_mib): {}",
                    quoted(key)
                )));
            }
            page.push(key.clone());
        }
        let cursor = (after + page.len() < keys.len())
            .then(|| page.last().cloned())
            .flatten();
        Ok(KeyResponse { keys: page, cursor })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        close_handle(self, bucket);
        Ok(())
    }
}

impl atomics::Host for GuestState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, Error> {
        let (kv, module) = self.bucket(&bucket)?;
        let _held = lock_of(&module, &key).lock().await;
        let current = match kv.get(&key).await.map_err(other)? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    Error::Other(format!(
                        "the value of {} is not a decimal integer, so it cannot be incremented",
                        quoted(&key)
                    ))
                })?,
        };
        let next = current.checked_add(delta).ok_or_else(|| {
            Error::Other(format!(
                "incrementing {} by {delta} overflows a signed 64-bit integer",
                quoted(&key)
            ))
        })?;
        kv.set(&key, next.to_string()).await.map_err(other)?;
        Ok(next)
    }

    async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> Result<(), CasError> {
        let (kv, module, key, seen) = match handle(self, &cas) {
            Ok(c) => (
                c.kv.clone(),
                c.module.clone(),
                c.key.clone(),
                c.seen.clone(),
            ),
            Err(why) => return Err(CasError::StoreError(Error::Other(why))),
        };
        let outcome = {
            let _held = lock_of(&module, &key).lock().await;
            match kv.get(&key).await {
                Err(e) => Err(Err(other(e))),
                Ok(now) if now != seen => Err(Ok(now)),
                Ok(_) => kv.set(&key, value).await.map_err(|e| Err(other(e))),
            }
        };
        match outcome {
            Ok(()) => {
                close_handle(self, cas);
                Ok(())
            }
            Err(Err(e)) => {
                close_handle(self, cas);
                Err(CasError::StoreError(e))
            }
            // Changed since: the caller may read `current` again and retry with this cas.
            Err(Ok(now)) => {
                if let Ok(c) = handle(self, &cas) {
                    c.seen = now;
                }
                Err(CasError::CasFailed(cas))
            }
        }
    }
}

impl HostCas for GuestState {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Resource<Cas>, Error> {
        let (kv, module) = self.bucket(&bucket)?;
        let seen = kv.get(&key).await.map_err(other)?;
        open_handle(
            self,
            Cas {
                kv,
                module,
                key,
                seen,
            },
        )
        .map_err(Error::Other)
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, Error> {
        handle(self, &cas)
            .map(|c| c.seen.as_ref().map(|b| b.to_vec()))
            .map_err(Error::Other)
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        close_handle(self, cas);
        Ok(())
    }
}

impl batch::Host for GuestState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        let (kv, _) = self.bucket(&bucket)?;
        let budget = self.max_body();
        let mut used = 0usize;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let value = kv.get(&key).await.map_err(other)?.map(|b| b.to_vec());
            used += key.len() + value.as_ref().map_or(0, Vec::len) + 16;
            if used > budget {
                return Err(Error::Other(
                    "the values asked for are larger than the instance's memory (wasm.max_memory_mib); ask for fewer keys at once".to_owned(),
                ));
            }
            found.push((key, value));
        }
        Ok(found)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Error> {
        let (kv, _) = self.bucket(&bucket)?;
        for (key, value) in key_values {
            kv.set(&key, value).await.map_err(other)?;
        }
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), Error> {
        let (kv, _) = self.bucket(&bucket)?;
        for key in keys {
            kv.delete(&key).await.map_err(other)?;
        }
        Ok(())
    }
}
