//! In-process calls from a native module: straight into the base's router.

use std::convert::Infallible;

use axum::body::Body;
use http::{Request, Response};
use koupleless_wire::ModuleKey;
use tower::{ServiceExt, util::BoxCloneSyncService};

/// The router a client calls into.
pub(crate) type Routes = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// An in-process HTTP client over the base's shared router.
///
/// Paths are full paths (`/attendance/employees/7`): the call is routed exactly like a
/// request from the network, to whichever version of the target module is active. A module
/// compiled to wasm makes the same calls through the base's `call` host function.
#[derive(Clone)]
pub struct ModuleClient {
    routes: Routes,
    caller: http::HeaderValue,
}

impl ModuleClient {
    pub(crate) fn new(routes: Routes, caller: &ModuleKey) -> Self {
        Self {
            routes,
            caller: http::HeaderValue::from_str(&caller.to_string())
                .unwrap_or(http::HeaderValue::from_static("unknown")),
        }
    }

    /// Sends a request and returns the response, whatever its status.
    pub async fn call(&self, mut request: Request<Body>) -> Response<Body> {
        request
            .headers_mut()
            .insert("x-koupleless-caller", self.caller.clone());
        match self.routes.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

impl std::fmt::Debug for ModuleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleClient")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}
