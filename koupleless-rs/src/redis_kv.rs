//! Modules' key-value data in Redis, when `redis.url` is set: shared by the bases of a
//! cluster, kept across restarts.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::{Pool, redis};
use koupleless_module::{KeyValueBackend, KeyValueError};

/// Modules' key-value data in Redis, under `<key_prefix>:kv:<module>/<key>`: shared by every
/// base of the cluster and kept across restarts of the base.
#[derive(Clone)]
pub struct RedisKeyValue {
    pool: Pool,
    prefix: String,
    timeout: Duration,
}

impl RedisKeyValue {
    /// Values under `<key_prefix>:kv:` in the pool's database; every operation gives up after
    /// `timeout`.
    pub fn new(pool: Pool, key_prefix: &str, timeout: Duration) -> Self {
        Self {
            pool,
            prefix: format!("{key_prefix}:kv:"),
            timeout,
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: redis::Cmd,
    ) -> Result<T, KeyValueError> {
        let fail = |why: String| KeyValueError::new(operation, key, why);
        let work = async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| fail(format!("Redis is unreachable ({e}); check redis.url")))?;
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| fail(format!("Redis answered with an error: {e}")))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(fail(format!(
                    "Redis did not answer within redis.timeout ({})",
                    humantime_serde::re::humantime::format_duration(self.timeout)
                )))
            })
    }
}

#[async_trait]
impl KeyValueBackend for RedisKeyValue {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, KeyValueError> {
        let value: Option<Vec<u8>> = self
            .run(
                "get",
                key,
                redis::cmd("GET")
                    .arg(format!("{}{key}", self.prefix))
                    .clone(),
            )
            .await?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<(), KeyValueError> {
        self.run(
            "set",
            key,
            redis::cmd("SET")
                .arg(format!("{}{key}", self.prefix))
                .arg(value.as_ref())
                .clone(),
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, KeyValueError> {
        let removed: u64 = self
            .run(
                "delete",
                key,
                redis::cmd("DEL")
                    .arg(format!("{}{key}", self.prefix))
                    .clone(),
            )
            .await?;
        Ok(removed > 0)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, KeyValueError> {
        let pattern = format!("{}{}*", glob_escape(&self.prefix), glob_escape(prefix));
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .run(
                    "keys",
                    prefix,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .clone(),
                )
                .await?;
            keys.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned)),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

impl std::fmt::Debug for RedisKeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyValue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `text` matched literally by a Redis glob pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_are_matched_literally() {
        assert_eq!(super::glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
