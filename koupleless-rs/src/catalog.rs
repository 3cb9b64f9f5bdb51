//! The native modules compiled into the base, by name and version.

use std::{collections::BTreeMap, sync::Arc};

use koupleless_module::{Module, Version};

use crate::error::BaseError;

/// Every native module version the base can install, in registration order of names.
#[derive(Clone, Default)]
pub(crate) struct Catalog {
    names: Vec<String>,
    modules: BTreeMap<String, BTreeMap<Version, Arc<dyn Module>>>,
}

impl Catalog {
    pub(crate) fn add(&mut self, module: Arc<dyn Module>) -> Result<(), BaseError> {
        let manifest = module.manifest();
        manifest.validate()?;
        if !self.modules.contains_key(&manifest.name) {
            self.names.push(manifest.name.clone());
        }
        let versions = self.modules.entry(manifest.name.clone()).or_default();
        if versions.contains_key(&manifest.version) {
            return Err(BaseError::InvalidState {
                module: manifest.key(),
                message: "registered twice with the base builder; register each version once"
                    .to_owned(),
            });
        }
        versions.insert(manifest.version, module);
        Ok(())
    }

    /// Names in registration order.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `name@version` is compiled in.
    pub(crate) fn has(&self, name: &str, version: &Version) -> bool {
        self.modules
            .get(name)
            .is_some_and(|versions| versions.contains_key(version))
    }

    /// The requested version, or the highest one.
    pub(crate) fn resolve(
        &self,
        name: &str,
        version: Option<&Version>,
    ) -> Result<Arc<dyn Module>, BaseError> {
        let Some(versions) = self.modules.get(name) else {
            return Err(BaseError::UnknownModule {
                name: name.to_owned(),
                version: version.map(ToString::to_string),
                known: if self.names.is_empty() {
                    "this base has no native modules".to_owned()
                } else {
                    format!("native modules are: {}", self.names.join(", "))
                },
            });
        };
        let found = match version {
            Some(v) => versions.get(v),
            None => versions.values().next_back(),
        };
        found.cloned().ok_or_else(|| BaseError::UnknownModule {
            name: name.to_owned(),
            version: version.map(ToString::to_string),
            known: format!(
                "its known versions are: {}",
                versions
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}
