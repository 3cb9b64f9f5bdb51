//! Components built with the Spin SDK: every interface the SDK 5.2 imports besides WASI
//! (`koupleless-rs/wit-spin/`), linked for every component.
//!
//! What Spin calls the `default` key-value store and the `default` SQLite database are the
//! module's own store and database; Spin variables are the top-level keys of the module's
//! `[modules.<name>]` section. Everything else (LLM, Redis, MQTT, MySQL, PostgreSQL) answers
//! that interface's own error value saying the base does not support it: a toolchain that
//! imports the SDK's whole world gets a component that installs and runs, and fails only
//! where it calls what is missing, with an error it can handle, never a trap.

mod key_value;
mod sqlite;
mod unsupported;
mod variables;
mod wasi_keyvalue;

use wasmtime::component::{HasSelf, Linker, Resource};

use super::guest_state::GuestState;

/// Host bindings generated from `wit-spin/world.wit`.
#[allow(missing_docs, unreachable_pub)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit-spin",
        world: "koupleless:spin-host/spin-imports",
        imports: { default: async },
        with: {
            "fermyon:spin/key-value.store": super::key_value::KvStore,
            "fermyon:spin/sqlite.connection": super::sqlite::SqlConnection,
            "spin:sqlite/sqlite.connection": super::sqlite::SqlConnection,
            "wasi:keyvalue/store.bucket": super::wasi_keyvalue::Bucket,
            "wasi:keyvalue/atomics.cas": super::wasi_keyvalue::Cas,
        },
    });
}

/// The one store and the one database a Spin component may open: the module's own.
pub(crate) const DEFAULT_LABEL: &str = "default";

/// Spin stores and connections one instance may hold open at once: a guest that opens
/// without dropping gets an error, not a host table that grows for as long as it runs.
pub(crate) const MAX_OPEN_HANDLES: usize = 256;

/// Links every Spin interface into the base's linker.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    bindings::SpinImports::add_to_linker::<_, HasSelf<GuestState>>(linker, |s| s)
}

/// Keeps `value` as a new resource of the guest, within [`MAX_OPEN_HANDLES`].
fn open_handle<T: Send + 'static>(state: &mut GuestState, value: T) -> Result<Resource<T>, String> {
    if *state.spin_handles() >= MAX_OPEN_HANDLES {
        return Err(format!(
            "this instance already holds {MAX_OPEN_HANDLES} open Spin stores and connections; drop the ones it no longer uses"
        ));
    }
    let handle = state
        .table()
        .push(value)
        .map_err(|e| format!("cannot keep the handle: {e}"))?;
    *state.spin_handles() += 1;
    Ok(handle)
}

/// Forgets a resource the guest dropped.
fn close_handle<T: 'static>(state: &mut GuestState, handle: Resource<T>) {
    if state.table().delete(handle).is_ok() {
        let open = state.spin_handles();
        *open = open.saturating_sub(1);
    }
}

/// The value behind a resource the guest passed in.
fn handle<'a, T: 'static>(
    state: &'a mut GuestState,
    handle: &Resource<T>,
) -> Result<&'a mut T, String> {
    state
        .table()
        .get_mut(handle)
        .map_err(|e| format!("the handle is not open: {e}"))
}

/// A guest-chosen name, shortened for an error message.
fn quoted(name: &str) -> String {
    const MOST: usize = 64;
    if name.len() <= MOST {
        format!("`{name}`")
    } else {
        format!("`{}…`", &name[..name.floor_char_boundary(MOST)])
    }
}
