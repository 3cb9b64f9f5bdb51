//! The error a module's lifecycle hooks return.

use std::fmt;

/// An error from a module's lifecycle hook. Any `std::error::Error` converts into it
/// with `?`; [`ModuleError::msg`] makes one from text.
pub struct ModuleError {
    message: String,
}

impl ModuleError {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ModuleError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self { message }
    }
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleError({:?})", self.message)
    }
}
