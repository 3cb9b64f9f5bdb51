//! `tracing` inside a wasm module: events go to the base's log, inside the module's span.

use std::fmt::Write as _;

use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
    span,
};

use super::host;

/// Forwards every event to the base; spans are the base's business (each request already
/// runs inside the module's span there).
struct HostLog;

pub(crate) fn install() {
    // A module that installed its own subscriber keeps it.
    let _ = tracing::subscriber::set_global_default(HostLog);
}

impl Subscriber for HostLog {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line::default();
        event.record(&mut line);
        host::log(level(meta.level()), meta.target(), &line.0);
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

fn level(level: &Level) -> host::Level {
    match *level {
        Level::TRACE => host::Level::Trace,
        Level::DEBUG => host::Level::Debug,
        Level::INFO => host::Level::Info,
        Level::WARN => host::Level::Warn,
        _ => host::Level::Error,
    }
}

/// The message first, then `name=value` for every other field.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value}", field.name());
        }
    }
}
