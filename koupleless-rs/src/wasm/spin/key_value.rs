//! `fermyon:spin/key-value@2.0.0`: the store labelled `default` is the module's own
//! key-value store, with its limits (key and value sizes, quota); no other label exists.

use koupleless_module::KeyValue;
use wasmtime::component::Resource;

use super::{
    DEFAULT_LABEL,
    bindings::fermyon::spin::key_value::{Error, Host, HostStore},
    close_handle, handle, open_handle, quoted,
};
use crate::wasm::guest_state::GuestState;

/// An open Spin store: the module's own key-value store.
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct KvStore(KeyValue);

impl Host for GuestState {}

impl GuestState {
    fn kv_store(&mut self, store: &Resource<KvStore>) -> Result<KeyValue, Error> {
        handle(self, store)
            .map(|s| s.0.clone())
            .map_err(Error::Other)
    }
}

/// The module's keys, as long as they fit in what the guest may receive.
pub(super) async fn all_keys(
    kv: &KeyValue,
    prefix: &str,
    most_bytes: usize,
) -> Result<Vec<String>, String> {
    let keys = kv.keys(prefix).await.map_err(|e| e.to_string())?;
    // Each string costs the guest its bytes and a pointer and length.
    let size: usize = keys.iter().map(|k| k.len() + 8).sum();
    if size > most_bytes {
        return Err(format!(
            "the module holds {} keys ({size} bytes), more than the instance's memory (wasm.max_memory_mib) can take at once; delete keys",
            keys.len()
        ));
    }
    Ok(keys)
}

impl HostStore for GuestState {
    async fn open(&mut self, label: String) -> Result<Resource<KvStore>, Error> {
        if label != DEFAULT_LABEL {
            tracing::debug!(label = %quoted(&label), "a Spin component opened a key-value store other than `default`");
            return Err(Error::NoSuchStore);
        }
        let kv = self
            .capabilities()
            .map_err(|_| Error::AccessDenied)?
            .kv
            .clone();
        open_handle(self, KvStore(kv)).map_err(|_| Error::StoreTableFull)
    }

    async fn get(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        let kv = self.kv_store(&store)?;
        kv.get(&key)
            .await
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(|e| Error::Other(e.to_string()))
    }

    async fn set(
        &mut self,
        store: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        let kv = self.kv_store(&store)?;
        kv.set(&key, value)
            .await
            .map_err(|e| Error::Other(e.to_string()))
    }

    async fn delete(&mut self, store: Resource<KvStore>, key: String) -> Result<(), Error> {
        let kv = self.kv_store(&store)?;
        kv.delete(&key)
            .await
            .map(|_existed| ())
            .map_err(|e| Error::Other(e.to_string()))
    }

    async fn exists(&mut self, store: Resource<KvStore>, key: String) -> Result<bool, Error> {
        let kv = self.kv_store(&store)?;
        kv.get(&key)
            .await
            .map(|v| v.is_some())
            .map_err(|e| Error::Other(e.to_string()))
    }

    async fn get_keys(&mut self, store: Resource<KvStore>) -> Result<Vec<String>, Error> {
        let kv = self.kv_store(&store)?;
        all_keys(&kv, "", self.max_body())
            .await
            .map_err(Error::Other)
    }

    async fn drop(&mut self, store: Resource<KvStore>) -> wasmtime::Result<()> {
        close_handle(self, store);
        Ok(())
    }
}
