//! The Spin interfaces this base does not provide: LLM, Redis, MQTT, MySQL and PostgreSQL
//! (`fermyon:spin@2.0.0`, `spin:postgres@3.0.0` and `@4.0.0`). Each function answers its
//! interface's own error value, naming the interface and what to use instead; no connection
//! is ever opened, so the methods of one are never reached with a live handle.

use wasmtime::component::Resource;

use super::bindings::{
    fermyon::spin::{llm, mqtt, mysql, postgres, rdbms_types, redis},
    spin::{postgres3_0_0::postgres as pg3, postgres4_0_0::postgres as pg4},
};
use crate::wasm::guest_state::GuestState;

/// What every unsupported call says: the interface, and what the base offers instead.
fn unsupported(state: &GuestState, interface: &str, instead: &str) -> String {
    let module = state
        .capabilities()
        .map(|c| c.module.to_string())
        .unwrap_or_default();
    tracing::debug!(%module, interface, "a component called a Spin interface this base does not support");
    format!("{interface} is not supported by this koupleless base; {instead}")
}

const REDIS: (&str, &str) = (
    "Redis (fermyon:spin/redis)",
    "use the module's key-value store (fermyon:spin/key-value, store `default`)",
);
const MQTT: (&str, &str) = (
    "MQTT (fermyon:spin/mqtt)",
    "call an HTTP service of an allowed host instead",
);
const LLM: (&str, &str) = (
    "LLM inferencing (fermyon:spin/llm)",
    "call an inference service over HTTP from an allowed host instead",
);
const MYSQL: (&str, &str) = (
    "MySQL (fermyon:spin/mysql)",
    "use the module's own SQLite database (fermyon:spin/sqlite, database `default`)",
);
const POSTGRES: (&str, &str) = (
    "PostgreSQL (fermyon:spin/postgres, spin:postgres)",
    "use the module's own SQLite database (fermyon:spin/sqlite, database `default`)",
);

impl llm::Host for GuestState {
    async fn infer(
        &mut self,
        _model: String,
        _prompt: String,
        _params: Option<llm::InferencingParams>,
    ) -> Result<llm::InferencingResult, llm::Error> {
        Err(llm::Error::RuntimeError(unsupported(self, LLM.0, LLM.1)))
    }

    async fn generate_embeddings(
        &mut self,
        _model: String,
        _text: Vec<String>,
    ) -> Result<llm::EmbeddingsResult, llm::Error> {
        Err(llm::Error::RuntimeError(unsupported(self, LLM.0, LLM.1)))
    }
}

impl redis::Host for GuestState {}

impl redis::HostConnection for GuestState {
    async fn open(
        &mut self,
        _address: String,
    ) -> Result<Resource<redis::Connection>, redis::Error> {
        Err(self.redis())
    }

    async fn publish(
        &mut self,
        _: Resource<redis::Connection>,
        _channel: String,
        _payload: Vec<u8>,
    ) -> Result<(), redis::Error> {
        Err(self.redis())
    }

    async fn get(
        &mut self,
        _: Resource<redis::Connection>,
        _key: String,
    ) -> Result<Option<Vec<u8>>, redis::Error> {
        Err(self.redis())
    }

    async fn set(
        &mut self,
        _: Resource<redis::Connection>,
        _key: String,
        _value: Vec<u8>,
    ) -> Result<(), redis::Error> {
        Err(self.redis())
    }

    async fn incr(
        &mut self,
        _: Resource<redis::Connection>,
        _key: String,
    ) -> Result<i64, redis::Error> {
        Err(self.redis())
    }

    async fn del(
        &mut self,
        _: Resource<redis::Connection>,
        _keys: Vec<String>,
    ) -> Result<u32, redis::Error> {
        Err(self.redis())
    }

    async fn sadd(
        &mut self,
        _: Resource<redis::Connection>,
        _key: String,
        _values: Vec<String>,
    ) -> Result<u32, redis::Error> {
        Err(self.redis())
    }

    async fn smembers(
        &mut self,
        _: Resource<redis::Connection>,
        _key: String,
    ) -> Result<Vec<String>, redis::Error> {
        Err(self.redis())
    }

    async fn srem(
        &mut self,
        _: Resource<redis::Connection>,
        _key: String,
        _values: Vec<String>,
    ) -> Result<u32, redis::Error> {
        Err(self.redis())
    }

    async fn execute(
        &mut self,
        _: Resource<redis::Connection>,
        _command: String,
        _arguments: Vec<redis::RedisParameter>,
    ) -> Result<Vec<redis::RedisResult>, redis::Error> {
        Err(self.redis())
    }

    async fn drop(&mut self, _: Resource<redis::Connection>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl mqtt::Host for GuestState {}

impl mqtt::HostConnection for GuestState {
    async fn open(
        &mut self,
        _address: String,
        _username: String,
        _password: String,
        _keep_alive_interval_in_secs: u64,
    ) -> Result<Resource<mqtt::Connection>, mqtt::Error> {
        Err(mqtt::Error::ConnectionFailed(unsupported(
            self, MQTT.0, MQTT.1,
        )))
    }

    async fn publish(
        &mut self,
        _: Resource<mqtt::Connection>,
        _topic: String,
        _payload: Vec<u8>,
        _qos: mqtt::Qos,
    ) -> Result<(), mqtt::Error> {
        Err(mqtt::Error::ConnectionFailed(unsupported(
            self, MQTT.0, MQTT.1,
        )))
    }

    async fn drop(&mut self, _: Resource<mqtt::Connection>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl rdbms_types::Host for GuestState {}

impl GuestState {
    fn redis(&self) -> redis::Error {
        redis::Error::Other(unsupported(self, REDIS.0, REDIS.1))
    }

    fn rdbms(&self, (interface, instead): (&str, &str)) -> rdbms_types::Error {
        rdbms_types::Error::ConnectionFailed(unsupported(self, interface, instead))
    }
}

impl mysql::Host for GuestState {}

impl mysql::HostConnection for GuestState {
    async fn open(
        &mut self,
        _address: String,
    ) -> Result<Resource<mysql::Connection>, rdbms_types::Error> {
        Err(self.rdbms(MYSQL))
    }

    async fn query(
        &mut self,
        _: Resource<mysql::Connection>,
        _statement: String,
        _params: Vec<rdbms_types::ParameterValue>,
    ) -> Result<rdbms_types::RowSet, rdbms_types::Error> {
        Err(self.rdbms(MYSQL))
    }

    async fn execute(
        &mut self,
        _: Resource<mysql::Connection>,
        _statement: String,
        _params: Vec<rdbms_types::ParameterValue>,
    ) -> Result<(), rdbms_types::Error> {
        Err(self.rdbms(MYSQL))
    }

    async fn drop(&mut self, _: Resource<mysql::Connection>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl postgres::Host for GuestState {}

impl postgres::HostConnection for GuestState {
    async fn open(
        &mut self,
        _address: String,
    ) -> Result<Resource<postgres::Connection>, rdbms_types::Error> {
        Err(self.rdbms(POSTGRES))
    }

    async fn query(
        &mut self,
        _: Resource<postgres::Connection>,
        _statement: String,
        _params: Vec<rdbms_types::ParameterValue>,
    ) -> Result<rdbms_types::RowSet, rdbms_types::Error> {
        Err(self.rdbms(POSTGRES))
    }

    async fn execute(
        &mut self,
        _: Resource<postgres::Connection>,
        _statement: String,
        _params: Vec<rdbms_types::ParameterValue>,
    ) -> Result<u64, rdbms_types::Error> {
        Err(self.rdbms(POSTGRES))
    }

    async fn drop(&mut self, _: Resource<postgres::Connection>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// `spin:postgres@3.0.0` and `@4.0.0`: alike but for their types.
macro_rules! postgres_generation {
    ($pg:ident) => {
        impl $pg::Host for GuestState {}

        impl $pg::HostConnection for GuestState {
            async fn open(
                &mut self,
                _address: String,
            ) -> Result<Resource<$pg::Connection>, $pg::Error> {
                Err($pg::Error::ConnectionFailed(unsupported(
                    self, POSTGRES.0, POSTGRES.1,
                )))
            }

            async fn query(
                &mut self,
                _: Resource<$pg::Connection>,
                _statement: String,
                _params: Vec<$pg::ParameterValue>,
            ) -> Result<$pg::RowSet, $pg::Error> {
                Err($pg::Error::ConnectionFailed(unsupported(
                    self, POSTGRES.0, POSTGRES.1,
                )))
            }

            async fn execute(
                &mut self,
                _: Resource<$pg::Connection>,
                _statement: String,
                _params: Vec<$pg::ParameterValue>,
            ) -> Result<u64, $pg::Error> {
                Err($pg::Error::ConnectionFailed(unsupported(
                    self, POSTGRES.0, POSTGRES.1,
                )))
            }

            async fn drop(&mut self, _: Resource<$pg::Connection>) -> wasmtime::Result<()> {
                Ok(())
            }
        }
    };
}

postgres_generation!(pg3);
postgres_generation!(pg4);
