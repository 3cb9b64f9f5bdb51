//! Requests a browser could send on a web page's behalf are refused: any `Origin` that is not
//! configured, and any `Host` that names this base by a name it was not given (DNS
//! rebinding). Tools (the command-line tool, curl, Arklet clients, the kubelet) send neither.

use std::{net::IpAddr, sync::Arc};

use axum::{
    Json,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{StatusCode, header};
use koupleless_config::AdminConfig;

/// The origins and host names the admin API accepts.
#[derive(Clone)]
pub(crate) struct Guard(Arc<Allowed>);

struct Allowed {
    origins: Vec<String>,
    hosts: Vec<String>,
}

impl Guard {
    pub(crate) fn new(config: &AdminConfig) -> Self {
        let lower = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|s| s.trim_end_matches('/').to_ascii_lowercase())
                .collect()
        };
        Self(Arc::new(Allowed {
            origins: lower(&config.allowed_origins),
            hosts: lower(&config.allowed_hosts),
        }))
    }

    /// Why `request` is refused, if it is.
    fn refusal(&self, request: &Request) -> Option<String> {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).to_ascii_lowercase();
            if !self.0.origins.contains(&origin) {
                return Some(format!(
                    "requests from web pages are refused (Origin: {}); a page in a browser must not drive the admin API. List the origin in admin.allowed_origins to allow it",
                    shorten(&origin)
                ));
            }
        }
        let host = request
            .headers()
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).to_ascii_lowercase());
        match host {
            Some(host) if !self.host_allowed(&host) => Some(format!(
                "this base's admin API answers requests addressed to an IP address, localhost or a name in admin.allowed_hosts, not to `{}`; add the name to admin.allowed_hosts if the base is reached by it",
                shorten(&host)
            )),
            _ => None,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || self.0.hosts.iter().any(|h| h == name)
    }
}

/// `host:port`, `[v6]:port`, `[v6]` or `host` → the host alone (brackets removed).
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Hostile header values are quoted back at most this long.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub(crate) async fn refuse_browsers(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    match guard.refusal(&request) {
        None => next.run(request).await,
        Some(message) => (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({
                "code": "FAILED",
                "errorCode": "FORBIDDEN",
                "error": "FORBIDDEN",
                "message": message,
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(origins: &[&str], hosts: &[&str]) -> Guard {
        Guard::new(&AdminConfig {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
            ..AdminConfig::default()
        })
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().uri("/installBiz");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn tools_pass_and_pages_do_not() {
        let g = guard(&["https://Console.example.com/"], &["base.hr.svc"]);
        for ok in [
            vec![],
            vec![("host", "127.0.0.1:1238")],
            vec![("host", "[::1]:1238")],
            vec![("host", "localhost:1238")],
            vec![("host", "10.1.2.3")],
            vec![("host", "BASE.hr.svc:1238")],
            vec![
                ("host", "127.0.0.1:1238"),
                ("origin", "https://console.example.com"),
            ],
        ] {
            assert_eq!(g.refusal(&request(&ok)), None, "{ok:?}");
        }
        for refused in [
            vec![("host", "evil.example:1238")],
            vec![("host", "localhost.evil.example")],
            vec![
                ("host", "127.0.0.1:1238"),
                ("origin", "https://evil.example"),
            ],
            vec![("host", "127.0.0.1:1238"), ("origin", "null")],
        ] {
            assert!(g.refusal(&request(&refused)).is_some(), "{refused:?}");
        }
    }

    #[test]
    fn a_long_hostile_host_is_quoted_short() {
        let g = guard(&[], &[]);
        let host = "a".repeat(5000);
        let why = g.refusal(&request(&[("host", &host)])).unwrap();
        assert!(why.len() < 400, "{why}");
    }
}
