//! The base's shared resources, as a typed registry modules can read.

use std::{
    any::{Any, TypeId, type_name},
    collections::HashMap,
    sync::Arc,
};

use crate::ModuleError;

/// Values the base shares with every module (a database pool, an HTTP client, …),
/// one per type.
#[derive(Clone, Default)]
pub struct Resources {
    map: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Resources {
    /// The shared value of type `T`, if the base provides one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|v| Arc::clone(v).downcast::<T>().ok())
    }

    /// Like [`get`](Self::get), with an error that says how to provide it.
    pub fn require<T: Any + Send + Sync>(&self) -> Result<Arc<T>, ModuleError> {
        self.get::<T>().ok_or_else(|| {
            ModuleError::msg(format!(
                "the base provides no shared resource of type `{}`; add it with `BaseBuilder::resource`",
                type_name::<T>()
            ))
        })
    }

    /// Shares `value` as the resource of type `T`, replacing an earlier one. A base fills the
    /// registry once, before any module starts.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        Arc::make_mut(&mut self.map).insert(TypeId::of::<T>(), Arc::new(value));
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("count", &self.map.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lookup() {
        let mut r = Resources::default();
        r.insert(42u32);
        assert_eq!(*r.get::<u32>().unwrap(), 42);
        assert!(r.get::<u64>().is_none());
        let msg = r.require::<u64>().unwrap_err().to_string();
        assert!(
            msg.contains("u64") && msg.contains("BaseBuilder::resource"),
            "{msg}"
        );
    }
}
