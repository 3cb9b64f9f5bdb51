//! The SQL state of one wasm instance: handles to the databases it used, and the
//! transactions of the request it is serving. Data only: the `koupleless:module/sql` host
//! functions that fill it are in `sql_host.rs`.

use std::{collections::HashMap, sync::Arc};

use koupleless_module::sql::{Database, Transaction};
use tokio::sync::Mutex;

/// A transaction a guest opened; `None` once it is over.
pub(crate) type TransactionSlot = Arc<Mutex<Option<Transaction>>>;

/// How long the rollback of a transaction a request left open may take.
const ROLLBACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The SQL state of one instance: handles to the databases it used, and the transactions
/// of the request it is serving.
#[derive(Default)]
pub(crate) struct SqlSession {
    pub(crate) named: HashMap<String, Database>,
    pub(crate) open: Vec<TransactionSlot>,
}

impl SqlSession {
    /// Rolls back every transaction the request left open. The base calls it when a request
    /// ends; an instance thrown away (a trap, a timeout) drops them, which rolls back too.
    pub(crate) async fn end_request(&mut self) {
        for slot in self.open.drain(..) {
            let open = slot.lock().await.take();
            if let Some(tx) = open {
                // A rollback that does not answer in time drops the connection instead,
                // which the database rolls back on its own.
                match tokio::time::timeout(ROLLBACK_TIMEOUT, tx.rollback()).await {
                    Ok(Ok(())) => {
                        tracing::debug!("rolled back a transaction the request left open");
                    }
                    Ok(Err(e)) => tracing::warn!(
                        error = %e,
                        "rolling back a transaction the request left open failed"
                    ),
                    Err(_) => tracing::warn!(
                        "rolling back a transaction the request left open took too long; its connection was dropped"
                    ),
                }
            }
        }
    }
}
