//! Secrets kept out of messages and listings.

/// `url` with the password (or a lone user part, which Redis uses as a password) of its
/// authority replaced by `***`: `redis://:hunter2@cache:6379/0` → `redis://:***@cache:6379/0`.
/// Text without an authority comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{userinfo}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_and_the_rest_is_kept() {
        for (url, shown) in [
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            (
                "redis://app:hunter2@cache:6379",
                "redis://app:***@cache:6379",
            ),
            ("redis://hunter2@cache", "redis://***@cache"),
            ("redis://cache:6379/0", "redis://cache:6379/0"),
            (
                "postgres://u:p@ss@db/x?a=b@c",
                "postgres://u:***@db/x?a=b@c",
            ),
            ("./modules", "./modules"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
