//! Log output: a `tracing` subscriber from `[log]`, with `RUST_LOG` taking precedence, and a
//! level per module on top of it.
//!
//! Logs go to stderr, leaving stdout to what the program itself prints (the base prints the
//! addresses it listens on), so scripts can read one without parsing the other.
//!
//! A base calls [`init`] when it starts unless the application turned that off
//! (`BaseBuilder::telemetry(false)`); an application that sets up `tracing` itself keeps its
//! own subscriber either way, since [`init`] never replaces one. It can still honour module
//! levels by filtering its own output layer with [`module_filter`].
//!
//! # Module levels
//!
//! A module's level (`modules.<name>.log_level`, or one set at run time through the admin
//! API) decides alone which of the module's own events are shown: those emitted inside its
//! `request` span or its `module` span (its `start`, `stop`, `health` and tasks, and a wasm
//! guest's log calls). Everything else follows the global filter. The levels live in one
//! table per process, as the subscriber does.
//!
//! While no module has a level, an event costs what the global filter alone costs: one
//! relaxed atomic load more, no lock, no allocation. A change rebuilds `tracing`'s callsite
//! interest cache, so that `debug` callsites the global filter had turned off for good are
//! asked again.

use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::{
        Arc, LazyLock, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use arc_swap::ArcSwap;
use tracing::{
    Metadata, Subscriber,
    field::{Field, Visit},
    level_filters::LevelFilter,
    span::{Attributes, Id, Record},
    subscriber::Interest,
};
use tracing_subscriber::{
    EnvFilter, Layer, fmt,
    layer::{Context, Filter},
    prelude::*,
    registry::LookupSpan,
};

use koupleless_config::{LogConfig, LogFormat, ModuleLogLevel};

/// Installs the global subscriber unless the application installed one already.
pub fn init(config: &LogConfig) {
    let (filter, described) = global_filter(config);
    let _ = DEFAULT_LEVEL.set(described);
    // Colour codes only help a person at a terminal; log collectors get plain text.
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::registry()
        .with(output_layer(config.format, ansi, std::io::stderr).with_filter(module_filter(filter)))
        .try_init();
}

/// The output layer `[log] format` asks for, writing to `writer`.
pub fn output_layer<S, W>(
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Compact => fmt::layer()
            .compact()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .pretty()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .with_writer(writer)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
}

/// The global filter: `RUST_LOG` when set and valid, else `[log] level`, else `info`; with
/// the text it was built from.
pub fn global_filter(config: &LogConfig) -> (EnvFilter, String) {
    if let Ok(from_env) = std::env::var(EnvFilter::DEFAULT_ENV)
        && let Ok(filter) = EnvFilter::try_new(&from_env)
    {
        return (filter, from_env);
    }
    match EnvFilter::try_new(&config.level) {
        Ok(filter) => (filter, config.level.clone()),
        Err(_) => (EnvFilter::new("info"), "info".to_owned()),
    }
}

/// `global` with the module levels over it: a per-layer filter for an output layer.
pub fn module_filter(global: EnvFilter) -> ModuleLevelFilter {
    ModuleLevelFilter { global }
}

/// The global filter [`init`] installed, as text (`info`, `warn,koupleless=debug`); `None`
/// when the application installed its own subscriber.
pub(crate) fn default_level() -> Option<&'static str> {
    DEFAULT_LEVEL.get().map(String::as_str)
}

static DEFAULT_LEVEL: OnceLock<String> = OnceLock::new();

/// Where a module's level comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelSource {
    /// Set through the admin API; a reset returns to the configured one.
    Runtime,
    /// `modules.<name>.log_level`, from the base's configuration or the release's.
    Config,
    /// None set: the global filter applies.
    Default,
}

/// The level module `name` logs at, and where it comes from (`None` with
/// [`LevelSource::Default`]).
pub fn module_level(name: &str) -> (Option<ModuleLogLevel>, LevelSource) {
    let entries = LEVELS.entries.lock().unwrap_or_else(|p| p.into_inner());
    match entries.get(name) {
        Some(Entry {
            runtime: Some(level),
            ..
        }) => (Some(*level), LevelSource::Runtime),
        Some(Entry {
            configured: Some(level),
            ..
        }) => (Some(*level), LevelSource::Config),
        _ => (None, LevelSource::Default),
    }
}

/// Records module `name`'s configured level (`None`: the global filter applies); a level
/// set at run time still wins until it is reset.
pub(crate) fn configure_module_level(name: &str, level: Option<ModuleLogLevel>) {
    LEVELS.update(name, |entry| entry.configured = level);
}

/// Sets module `name`'s level at run time; `None` returns it to its configured level.
pub fn set_module_level(name: &str, level: Option<ModuleLogLevel>) {
    LEVELS.update(name, |entry| entry.runtime = level);
}

static LEVELS: LazyLock<ModuleLevels> = LazyLock::new(ModuleLevels::default);

#[derive(Default)]
struct ModuleLevels {
    /// Whether any module has a level: checked first on every event.
    active: AtomicBool,
    /// Module → the level in force, read without a lock.
    effective: ArcSwap<HashMap<String, LevelFilter>>,
    /// Module → its configured and run-time levels; writers only.
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    configured: Option<ModuleLogLevel>,
    runtime: Option<ModuleLogLevel>,
}

impl ModuleLevels {
    fn update(&self, name: &str, change: impl FnOnce(&mut Entry)) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(name.to_owned()).or_default();
        change(entry);
        if entry.configured.is_none() && entry.runtime.is_none() {
            entries.remove(name);
        }
        let effective: HashMap<String, LevelFilter> = entries
            .iter()
            .filter_map(|(name, e)| {
                e.runtime
                    .or(e.configured)
                    .map(|level| (name.clone(), to_filter(level)))
            })
            .collect();
        if *self.effective.load_full() == effective {
            return;
        }
        self.active.store(!effective.is_empty(), Ordering::Release);
        self.effective.store(Arc::new(effective));
        drop(entries);
        // Callsites the global filter turned off for good are asked again, and the maximum
        // level follows the most verbose module.
        tracing::callsite::rebuild_interest_cache();
    }

    /// The most verbose module level, `None` when no module has one.
    fn most_verbose(&self) -> Option<LevelFilter> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        self.effective.load().values().copied().max()
    }
}

fn to_filter(level: ModuleLogLevel) -> LevelFilter {
    match level {
        ModuleLogLevel::Trace => LevelFilter::TRACE,
        ModuleLogLevel::Debug => LevelFilter::DEBUG,
        ModuleLogLevel::Info => LevelFilter::INFO,
        ModuleLogLevel::Warn => LevelFilter::WARN,
        ModuleLogLevel::Error => LevelFilter::ERROR,
    }
}

/// A per-layer filter: the global [`EnvFilter`], except for events inside a module's span
/// when that module has a level, which its level alone decides.
pub struct ModuleLevelFilter {
    global: EnvFilter,
}

/// The module a span belongs to, kept in the span's extensions.
struct ModuleOfSpan(Box<str>);

/// The spans that carry a module's name in their `module` field: `request` (one per request,
/// `routing::module_service`) and `module` (the module's own, `koupleless-module`).
fn carries_module(meta: &Metadata<'_>) -> bool {
    meta.is_span()
        && matches!(meta.name(), "request" | "module")
        && meta.target().starts_with("koupleless")
        && meta.fields().field("module").is_some()
}

impl ModuleLevelFilter {
    /// The level of the module whose span the current event is in, if that module has one.
    fn level_here<S>(&self, cx: &Context<'_, S>) -> Option<LevelFilter>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let current = cx.lookup_current()?;
        let levels = LEVELS.effective.load();
        for span in current.scope() {
            if let Some(ModuleOfSpan(name)) = span.extensions().get::<ModuleOfSpan>() {
                return levels.get(&**name).copied();
            }
        }
        None
    }
}

impl<S> Filter<S> for ModuleLevelFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        // While any module has a level, module spans exist whatever the global filter says,
        // so that the module's events are found; otherwise they cost nothing it turned off.
        if carries_module(meta) {
            return LEVELS.active.load(Ordering::Acquire)
                || Filter::<S>::enabled(&self.global, meta, cx);
        }
        if meta.is_event()
            && LEVELS.active.load(Ordering::Acquire)
            && let Some(level) = self.level_here(cx)
        {
            return meta.level() <= &level;
        }
        Filter::<S>::enabled(&self.global, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if carries_module(meta) {
            // Asked at each span: a module level set later turns them on.
            return Interest::sometimes();
        }
        let global = Filter::<S>::callsite_enabled(&self.global, meta);
        match LEVELS.most_verbose() {
            // A module's level may turn this event on, or off: ask each time.
            Some(most) if meta.is_event() && (!global.is_never() || meta.level() <= &most) => {
                Interest::sometimes()
            }
            _ => global,
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let global = Filter::<S>::max_level_hint(&self.global)?;
        // With a module level set, module spans (`info`) are needed too, and a module's level
        // may be more verbose than the global one. Without, the global filter alone decides,
        // and a base at `warn` creates no request span.
        Some(
            LEVELS
                .most_verbose()
                .map_or(global, |most| global.max(most).max(LevelFilter::INFO)),
        )
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if carries_module(attrs.metadata())
            && let Some(span) = ctx.span(id)
        {
            let mut module = ModuleField(None);
            attrs.record(&mut module);
            if let Some(name) = module.0 {
                span.extensions_mut().insert(ModuleOfSpan(name));
            }
        }
        self.global.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.global.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.global.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.global.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.global.on_close(id, ctx);
    }
}

/// Reads a span's `module` field.
struct ModuleField(Option<Box<str>>);

impl Visit for ModuleField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "module" {
            self.0 = Some(value.into());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "module" {
            self.0 = Some(format!("{value:?}").into());
        }
    }
}
