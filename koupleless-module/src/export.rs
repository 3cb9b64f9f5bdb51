//! The guest's exports: what [`module`](macro@crate::module) writes for a module built for
//! `wasm32-wasip2`. [`__wasm_export!`](crate::__wasm_export) embeds the manifest in a custom
//! section and exports the module's lifecycle and routes through the blanket implementations
//! below. Nothing here is meant to be called by hand.

use std::sync::OnceLock;

use axum::{Router, body::Body};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::guest::{self, ModuleContext, bindings};
use crate::{Health, Module};

use bindings::{
    exports::koupleless::module::{handler, lifecycle},
    koupleless::module::types,
};

/// Implemented by [`__wasm_export!`](crate::__wasm_export) for the exported module.
pub trait Export: 'static {
    /// The one instance of the module in this wasm instance.
    fn module() -> &'static dyn Module;
}

static CONTEXT: OnceLock<ModuleContext> = OnceLock::new();
static ROUTER: OnceLock<Router> = OnceLock::new();

fn context<T: Export>() -> &'static ModuleContext {
    CONTEXT.get_or_init(|| {
        guest::log::install();
        ModuleContext::guest(installed_as(T::module().manifest()))
    })
}

/// The manifest the base installed this instance under (an install request may give another
/// name, version or prefix than the one compiled in), from the variables the base sets.
fn installed_as(compiled: crate::Manifest) -> crate::Manifest {
    let var = |name: &str| std::env::var(name).ok();
    crate::Manifest::new(
        var("KOUPLELESS_MODULE_NAME").unwrap_or(compiled.name),
        var("KOUPLELESS_MODULE_VERSION")
            .and_then(|v| crate::Version::parse(&v).ok())
            .unwrap_or(compiled.version),
        var("KOUPLELESS_MODULE_PREFIX").unwrap_or(compiled.prefix),
    )
}

impl<T: Export> lifecycle::Guest for T {
    fn start() -> Result<(), String> {
        let ctx = context::<T>();
        wstd::runtime::block_on(T::module().start(ctx)).map_err(|e| e.to_string())
    }

    fn health() -> lifecycle::Status {
        match wstd::runtime::block_on(T::module().health()) {
            Health::Up => lifecycle::Status::Up,
            Health::Degraded(why) => lifecycle::Status::Degraded(why),
            Health::Down(why) => lifecycle::Status::Down(why),
        }
    }

    fn stop() -> Result<(), String> {
        wstd::runtime::block_on(T::module().stop()).map_err(|e| e.to_string())
    }
}

impl<T: Export> handler::Guest for T {
    fn handle(request: types::Request) -> types::Response {
        // The router is built once per instance, not once per request.
        let router = ROUTER.get_or_init(|| T::module().router(context::<T>()));
        let request = match to_http(request) {
            Ok(request) => request,
            Err(why) => return plain(StatusCode::BAD_REQUEST, &why),
        };
        let router = router.clone();
        wstd::runtime::block_on(async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            from_http(response).await
        })
    }
}

fn to_http(request: types::Request) -> Result<Request<Body>, String> {
    let mut builder = Request::builder()
        .method(request.method.as_str())
        .uri(request.uri.as_str());
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Body::from(request.body))
        .map_err(|e| format!("the request cannot be read: {e}"))
}

async fn from_http(response: Response<Body>) -> types::Response {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the response body failed: {e}"),
            );
        }
    };
    types::Response {
        status: parts.status.as_u16(),
        headers: guest::headers(&parts.headers),
        body: body.to_vec(),
    }
}

fn plain(status: StatusCode, message: &str) -> types::Response {
    types::Response {
        status: status.as_u16(),
        headers: vec![("content-type".to_owned(), b"text/plain".to_vec())],
        body: message.as_bytes().to_vec(),
    }
}

/// Exports `$module` (a `Module + Default`) as a koupleless wasm component whose manifest is
/// the JSON text `$manifest`. Written by `#[koupleless::module]`; not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __wasm_export {
    ($module:ty, $manifest:literal) => {
        const _: () = {
            const MANIFEST: &[u8] = $manifest.as_bytes();
            // The manifest the base reads before it compiles the component.
            #[used]
            #[unsafe(link_section = "koupleless-manifest")]
            static EMBEDDED_MANIFEST: [u8; MANIFEST.len()] = {
                let mut out = [0u8; MANIFEST.len()];
                let mut i = 0;
                while i < out.len() {
                    out[i] = MANIFEST[i];
                    i += 1;
                }
                out
            };

            struct Exported;

            impl $crate::export::Export for Exported {
                fn module() -> &'static dyn $crate::Module {
                    static MODULE: ::std::sync::OnceLock<$module> = ::std::sync::OnceLock::new();
                    MODULE.get_or_init(<$module as ::core::default::Default>::default)
                }
            }

            $crate::guest::bindings::__export_koupleless_module!(Exported with_types_in $crate::guest::bindings);
        };
    };
}
