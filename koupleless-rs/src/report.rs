//! How the base shows an error to a person: the error and every error behind it.

use std::{error::Error, fmt};

/// An error followed by each of its sources (`a: b: c`): how the base shows an error to a
/// person, in the admin API's answers and in its log. A source whose message the error
/// before it already includes (some libraries write their sources into their own message)
/// is not repeated.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Plain(&'static str, #[source] Option<Box<Plain>>);

    fn error(levels: &[&'static str]) -> Plain {
        levels
            .iter()
            .rev()
            .fold(None, |source, text| Some(Plain(text, source.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn each_cause_once() {
        let e = error(&["listing failed", "connect error", "connection refused"]);
        assert_eq!(
            Chain(&e).to_string(),
            "listing failed: connect error: connection refused"
        );
        // A library that writes its source into its own message: not said twice.
        let e = error(&[
            "listing failed",
            "request failed: connection refused",
            "connection refused",
        ]);
        assert_eq!(
            Chain(&e).to_string(),
            "listing failed: request failed: connection refused"
        );
    }
}
