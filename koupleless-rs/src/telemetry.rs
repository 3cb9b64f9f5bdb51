//! Log output: a `tracing` subscriber from `[log]`, with `RUST_LOG` taking precedence.
//!
//! Logs go to stderr, leaving stdout to what the program itself prints (the base prints the
//! addresses it listens on), so scripts can read one without parsing the other.
//!
//! A base calls [`init`] when it starts unless the application turned that off
//! (`BaseBuilder::telemetry(false)`); an application that sets up `tracing` itself keeps its
//! own subscriber either way, since [`init`] never replaces one.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use koupleless_config::{LogConfig, LogFormat};

/// Installs the global subscriber unless the application installed one already.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // Colour codes only help a person at a terminal; log collectors get plain text.
    let ansi = std::io::stderr().is_terminal();
    let _ = match config.format {
        LogFormat::Compact => registry
            .with(
                fmt::layer()
                    .compact()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .pretty()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
}
