//! Components named by an `http://` or `https://` `bizUrl`: downloaded within
//! `admin.max_artifact_mib` and `admin.download_timeout`, checked against a `sha256` when the
//! request gives one, and handed to the install path as bytes and a location, as an upload is.
//!
//! The admin API is for operators (loopback, or `admin.token`), so any destination is allowed,
//! loopback and private addresses included: a component server inside the cluster is the
//! common case.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use koupleless_config::AdminConfig;

use crate::wasm::WasmError;

/// Redirects followed before the download is refused.
const MAX_REDIRECTS: usize = 5;

/// A downloaded component: its bytes, and where it came from (without credentials or query,
/// which may hold a signature) for messages.
pub(crate) struct Downloaded {
    pub(crate) location: String,
    pub(crate) bytes: Vec<u8>,
}

/// Downloads components for `installBiz`. One per admin listener; cheap to clone.
#[derive(Clone)]
pub(crate) struct Downloader {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    max_bytes: u64,
    max_mib: u64,
    timeout: Duration,
}

/// Whether `location` names a component to download rather than a file.
pub(crate) fn is_remote(location: &str) -> bool {
    let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// A `sha256` as the request gives it: 64 hex digits, optionally after `sha256:`; lower case.
pub(crate) fn parse_sha256(text: &str) -> Result<String, String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(format!(
            "sha256 `{}` is not a SHA-256 digest; write its 64 hex digits, as `sha256sum` prints them",
            text.chars().take(80).collect::<String>()
        ))
    }
}

impl Downloader {
    pub(crate) fn new(config: &AdminConfig) -> Self {
        let tls = crate::tls::client_config();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        // Downloads are rare: no connection is kept between them.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(https);
        Self {
            client,
            max_bytes: config.max_artifact_mib.saturating_mul(1 << 20),
            max_mib: config.max_artifact_mib,
            timeout: config.download_timeout,
        }
    }

    /// Downloads `url` (following up to five redirects), checks it against `sha256` (lower
    /// case hex) when given.
    pub(crate) async fn fetch(
        &self,
        url: &str,
        sha256: Option<&str>,
    ) -> Result<Downloaded, WasmError> {
        let label = redacted(url);
        let bytes = tokio::time::timeout(self.timeout, self.follow(url, &label))
            .await
            .map_err(|_| {
                WasmError::new(
                    &label,
                    format!(
                        "the download did not finish within admin.download_timeout ({:?}); check the server, or raise the timeout",
                        self.timeout
                    ),
                )
            })??;
        if let Some(expected) = sha256 {
            let actual = koupleless_release::sha256_hex(&bytes);
            if actual != expected {
                return Err(WasmError::new(
                    &label,
                    format!(
                        "its sha256 is {actual}, but the request expects {expected}; the download is not the component you named"
                    ),
                ));
            }
        }
        Ok(Downloaded {
            location: label,
            bytes,
        })
    }

    async fn follow(&self, url: &str, label: &str) -> Result<Vec<u8>, WasmError> {
        let refuse = |why: String| WasmError::new(label, why);
        let mut uri: Uri = url
            .parse()
            .map_err(|e| refuse(format!("it is not a URL ({e})")))?;
        for _ in 0..=MAX_REDIRECTS {
            let request = Request::get(uri.clone())
                .header(
                    header::USER_AGENT,
                    concat!("koupleless/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::new())
                .map_err(|e| refuse(format!("it is not a URL to download ({e})")))?;
            let response = self.client.request(request).await.map_err(|e| {
                refuse(format!(
                    "the download failed ({})",
                    crate::report::Chain(&e)
                ))
            })?;
            let status = response.status();
            if status.is_redirection() {
                let next = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        refuse(format!("the server answered {status} without a Location"))
                    })?;
                uri = redirect_target(&uri, next).ok_or_else(|| {
                    refuse(format!(
                        "the server redirected to `{}`, which is not an http:// or https:// URL",
                        redacted(next)
                    ))
                })?;
                continue;
            }
            if status != StatusCode::OK {
                return Err(refuse(format!(
                    "the server answered {status}; name a URL that answers 200 with the component"
                )));
            }
            let too_large = |size: Option<u64>| {
                let size = size.map_or("more".to_owned(), |n| format!("{n} bytes, more"));
                refuse(format!(
                    "it is {size} than admin.max_artifact_mib ({} MiB) allows; raise it or make the component smaller",
                    self.max_mib
                ))
            };
            let announced = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(length) = announced
                && length > self.max_bytes
            {
                return Err(too_large(Some(length)));
            }
            let mut body = response.into_body();
            let mut bytes = Vec::with_capacity(
                usize::try_from(announced.unwrap_or(0).min(self.max_bytes)).unwrap_or(0),
            );
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| refuse(format!("the download broke off ({e})")))?;
                if let Some(data) = frame.data_ref() {
                    if (bytes.len() + data.len()) as u64 > self.max_bytes {
                        return Err(too_large(None));
                    }
                    bytes.extend_from_slice(data);
                }
            }
            if bytes.is_empty() {
                return Err(refuse(
                    "the server answered 200 with no body; name the component itself".to_owned(),
                ));
            }
            return Ok(bytes);
        }
        Err(refuse(format!(
            "it redirected more than {MAX_REDIRECTS} times; name the component's final URL"
        )))
    }
}

/// The URL a `Location` names, relative to `base`; only http and https.
fn redirect_target(base: &Uri, location: &str) -> Option<Uri> {
    let target: Uri = location.parse().ok()?;
    let target = if target.scheme().is_some() {
        target
    } else {
        // A path on the same server.
        if !location.starts_with('/') {
            return None;
        }
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(location.parse().ok()?);
        Uri::from_parts(parts).ok()?
    };
    matches!(target.scheme_str(), Some("http" | "https")).then_some(target)
}

/// `url` without user information or query: what messages and logs may show.
fn redacted(url: &str) -> String {
    let Ok(uri) = url.parse::<Uri>() else {
        return url.chars().take(200).collect();
    };
    match (uri.scheme_str(), uri.host()) {
        (Some(scheme), Some(host)) => {
            let port = uri.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{}", uri.path())
        }
        _ => url.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_are_downloaded() {
        assert!(is_remote("http://10.0.0.1/a.wasm"));
        assert!(is_remote("HTTPS://example.com/a.wasm"));
        assert!(!is_remote("file:///tmp/a.wasm"));
        assert!(!is_remote("/tmp/a.wasm"));
        assert!(!is_remote("ftp://x"));
    }

    #[test]
    fn a_digest_is_64_hex_digits() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_sha256(&hex).unwrap(), "ab".repeat(32));
        assert_eq!(
            parse_sha256(&format!("sha256:{hex}")).unwrap(),
            "ab".repeat(32)
        );
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn redirects_stay_on_http() {
        let base: Uri = "http://a.example:8080/x/y.wasm?sig=1".parse().unwrap();
        assert_eq!(
            redirect_target(&base, "/z.wasm").unwrap().to_string(),
            "http://a.example:8080/z.wasm"
        );
        assert_eq!(
            redirect_target(&base, "https://b.example/c.wasm")
                .unwrap()
                .to_string(),
            "https://b.example/c.wasm"
        );
        assert!(redirect_target(&base, "file:///etc/passwd").is_none());
        assert!(redirect_target(&base, "relative.wasm").is_none());
    }

    #[test]
    fn messages_never_show_credentials_or_signatures() {
        assert_eq!(
            redacted("https://user:pw@bucket.example:9000/m/a.wasm?X-Amz-Signature=s"),
            "https://bucket.example:9000/m/a.wasm"
        );
    }
}
