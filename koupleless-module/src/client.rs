//! Calls from one module to another's routes, in process, without a network hop: JSON
//! helpers over [`ModuleClient::call`], which each backend provides.

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Serialize, de::DeserializeOwned};

use crate::ModuleClient;

impl ModuleClient {
    /// `GET path`, decoding a 2xx JSON body.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let request = Request::get(path)
            .body(Body::empty())
            .map_err(|e| ClientError::request(path, e))?;
        self.json(path, request).await
    }

    /// `POST path` with a JSON body, decoding a 2xx JSON body.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::request(path, e))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .map_err(|e| ClientError::request(path, e))?;
        self.json(path, request).await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        request: Request<Body>,
    ) -> Result<T, ClientError> {
        let response = self.call(request).await;
        let status = response.status();
        let body: Bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::request(path, e))?
            .to_bytes();
        if !status.is_success() {
            return Err(ClientError {
                path: path.to_owned(),
                status: Some(status),
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError {
            path: path.to_owned(),
            status: Some(status),
            message: format!("response is not the expected JSON: {e}"),
        })
    }
}

/// A failed in-process call: the path, the status if one came back, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("in-process call to `{path}` failed{}: {message}", status.map(|s| format!(" with {s}")).unwrap_or_default())]
pub struct ClientError {
    path: String,
    status: Option<StatusCode>,
    message: String,
}

impl ClientError {
    fn request(path: &str, err: impl std::fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            status: None,
            message: err.to_string(),
        }
    }

    /// The status the target answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The path that was called.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The target's answer (for a non-2xx status) or why the call failed.
    pub fn message(&self) -> &str {
        &self.message
    }
}
