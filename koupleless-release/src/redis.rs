//! Connections to the cluster's Redis.

use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use koupleless_config::{ConfigError, RedisConfig};

/// A connection pool for `redis.url` (`None` when it is not set), sized and bounded by
/// `redis.pool_size` and `redis.timeout`. Connections are made on first use: a base starts
/// (and serves) while Redis is away.
pub fn pool(config: &RedisConfig) -> Result<Option<Pool>, ConfigError> {
    let Some(url) = config.url.as_deref() else {
        return Ok(None);
    };
    let mut cfg = deadpool_redis::Config::from_url(url);
    cfg.pool = Some(PoolConfig {
        max_size: config.pool_size.max(1),
        timeouts: Timeouts {
            wait: Some(config.timeout),
            create: Some(config.timeout),
            recycle: Some(config.timeout),
        },
        ..PoolConfig::default()
    });
    cfg.create_pool(Some(Runtime::Tokio1))
        .map(Some)
        .map_err(|e| {
            ConfigError::invalid(
                "redis.url",
                format!(
                    "`{}` is not a Redis URL ({}); write it like `redis://127.0.0.1:6379/0`",
                    koupleless_config::redact_url(url),
                    koupleless_config::redact_url(&e.to_string()),
                ),
            )
        })
}
