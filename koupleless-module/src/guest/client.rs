//! In-process calls from a wasm module, through the base's `call` host function.

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::{bindings::koupleless::module::types, headers, host};

/// An in-process HTTP client over the base's shared router.
///
/// Paths are full paths (`/attendance/employees/7`): the base routes the request exactly like
/// one from the network, to whichever version of the target module is active, and hands back
/// the whole response.
#[derive(Clone, Debug)]
pub struct ModuleClient(pub(super) ());

impl ModuleClient {
    /// Sends a request and returns the response, whatever its status.
    pub async fn call(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the request body failed: {e}"),
                );
            }
        };
        let request = types::Request {
            method: parts.method.as_str().to_owned(),
            uri: parts.uri.to_string(),
            headers: headers(&parts.headers),
            body: body.to_vec(),
        };
        match host::call(&request) {
            Ok(response) => {
                let mut builder = Response::builder().status(response.status);
                for (name, value) in response.headers {
                    builder = builder.header(name, value);
                }
                builder
                    .body(Body::from(response.body))
                    .unwrap_or_else(|e| error(StatusCode::BAD_GATEWAY, e.to_string()))
            }
            Err(why) => error(StatusCode::BAD_GATEWAY, why),
        }
    }
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response
}
