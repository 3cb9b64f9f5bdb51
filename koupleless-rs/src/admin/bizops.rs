//! Arklet's asynchronous commands: an `installBiz`, `uninstallBiz`, `switchBiz` or
//! `batchInstallBiz` with `async: true` and a `requestId` answers at once, runs in the
//! background, and `queryBizOps` reports it in Arklet's `ProcessRecord` shape. Memory is
//! bounded: at most [`MAX_RUNNING`] operations at once, and the latest [`MAX_FINISHED`]
//! finished ones are kept, the oldest dropped first.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

/// Finished operations kept for `queryBizOps`.
pub(super) const MAX_FINISHED: usize = 256;
/// Operations running at once; another is refused until one finishes.
pub(super) const MAX_RUNNING: usize = 64;
/// Longest `requestId` accepted.
pub(super) const MAX_REQUEST_ID: usize = 256;

/// `ProcessRecord.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Initialized,
    Executing,
    Succeeded,
    Failed,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Initialized => "INITIALIZED",
            Status::Executing => "EXECUTING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
        }
    }
}

/// What an operation acts on, as its request names it.
#[derive(Clone, Debug, Default)]
pub(super) struct OpMeta {
    pub(super) command: &'static str,
    pub(super) biz_name: String,
    pub(super) biz_version: Option<String>,
}

/// How an operation ended: the envelope the synchronous command would have answered.
pub(super) struct Outcome {
    pub(super) succeeded: bool,
    pub(super) message: Option<String>,
    pub(super) error_code: Option<String>,
    pub(super) data: Value,
}

struct Record {
    request_id: String,
    meta: OpMeta,
    status: Status,
    start_ms: u64,
    end_ms: Option<u64>,
    message: Option<String>,
    error_code: Option<String>,
    result: Value,
}

impl Record {
    fn to_json(&self) -> Value {
        json!({
            "requestId": self.request_id,
            "arkBizMeta": {
                "bizName": self.meta.biz_name,
                "bizVersion": self.meta.biz_version,
                "requestId": self.request_id,
                "async": true,
            },
            "command": self.meta.command,
            "threadName": format!("koupleless-ops-{}", self.request_id),
            "status": self.status.name(),
            "errorCode": self.error_code,
            "message": self.message,
            "startTime": self.start_ms,
            "startTimestamp": self.start_ms,
            "endTime": self.end_ms,
            "endTimestamp": self.end_ms,
            "elapsedTime": self.end_ms.map(|end| end.saturating_sub(self.start_ms)),
            "result": self.result,
        })
    }
}

#[derive(Default)]
struct Inner {
    records: HashMap<String, Record>,
    /// Finished request ids, oldest first.
    finished: VecDeque<String>,
    running: usize,
}

/// The operations `queryBizOps` knows. One per admin listener.
#[derive(Default)]
pub(super) struct OpsBook {
    inner: Mutex<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl OpsBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new operation; its record as the command answers it. Refused (with Arklet's
    /// message) when the id was used already, or when too many operations run.
    pub(super) fn begin(&self, request_id: &str, meta: OpMeta) -> Result<Value, String> {
        let mut inner = self.lock();
        if inner.records.contains_key(request_id) {
            return Err(format!(
                "The request corresponding to the requestId({request_id}) has been executed; send a new requestId, or query this one with queryBizOps"
            ));
        }
        if inner.running >= MAX_RUNNING {
            return Err(format!(
                "{MAX_RUNNING} asynchronous operations are running; wait for one to finish (queryBizOps) and send it again"
            ));
        }
        inner.running += 1;
        let record = Record {
            request_id: request_id.to_owned(),
            meta,
            status: Status::Initialized,
            start_ms: now_ms(),
            end_ms: None,
            message: None,
            error_code: None,
            result: Value::Null,
        };
        let answer = record.to_json();
        inner.records.insert(request_id.to_owned(), record);
        Ok(answer)
    }

    /// The operation started running.
    pub(super) fn start(&self, request_id: &str) {
        if let Some(record) = self.lock().records.get_mut(request_id) {
            record.status = Status::Executing;
        }
    }

    /// The operation ended; the oldest finished records beyond [`MAX_FINISHED`] are dropped.
    pub(super) fn finish(&self, request_id: &str, outcome: Outcome) {
        let mut inner = self.lock();
        let Some(record) = inner.records.get_mut(request_id) else {
            return;
        };
        record.status = if outcome.succeeded {
            Status::Succeeded
        } else {
            Status::Failed
        };
        record.end_ms = Some(now_ms());
        record.message = outcome.message;
        record.error_code = outcome.error_code;
        record.result = outcome.data;
        inner.running = inner.running.saturating_sub(1);
        inner.finished.push_back(request_id.to_owned());
        while inner.finished.len() > MAX_FINISHED {
            if let Some(oldest) = inner.finished.pop_front() {
                inner.records.remove(&oldest);
            }
        }
    }

    /// The record of `request_id`, if it is known.
    pub(super) fn get(&self, request_id: &str) -> Option<Value> {
        self.lock().records.get(request_id).map(Record::to_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(ok: bool) -> Outcome {
        Outcome {
            succeeded: ok,
            message: (!ok).then(|| "it broke".to_owned()),
            error_code: (!ok).then(|| "START_FAILED".to_owned()),
            data: json!({"bizName": "payroll"}),
        }
    }

    #[test]
    fn a_record_goes_from_initialized_to_its_outcome() {
        let book = OpsBook::default();
        let meta = OpMeta {
            command: "installBiz",
            biz_name: "payroll".into(),
            biz_version: Some("1.0.0".into()),
        };
        let answer = book.begin("r1", meta.clone()).unwrap();
        assert_eq!(answer["status"], "INITIALIZED");
        assert_eq!(answer["arkBizMeta"]["bizName"], "payroll");
        assert!(
            book.begin("r1", meta.clone())
                .unwrap_err()
                .contains("has been executed")
        );
        book.start("r1");
        assert_eq!(book.get("r1").unwrap()["status"], "EXECUTING");
        book.finish("r1", done(false));
        let r = book.get("r1").unwrap();
        assert_eq!(r["status"], "FAILED");
        assert_eq!(r["message"], "it broke");
        assert!(r["elapsedTime"].is_u64());
        // A finished id stays taken while it is remembered.
        assert!(book.begin("r1", meta).is_err());
        assert!(book.get("r2").is_none());
    }

    #[test]
    fn only_the_latest_finished_records_are_kept_and_running_ones_are_bounded() {
        let book = OpsBook::default();
        for i in 0..MAX_FINISHED + 10 {
            let id = format!("r{i}");
            book.begin(&id, OpMeta::default()).unwrap();
            book.finish(&id, done(true));
        }
        assert!(book.get("r0").is_none());
        assert!(book.get("r9").is_none());
        assert_eq!(book.get("r10").unwrap()["status"], "SUCCEEDED");
        assert!(book.get(&format!("r{}", MAX_FINISHED + 9)).is_some());
        assert_eq!(book.lock().records.len(), MAX_FINISHED);

        for i in 0..MAX_RUNNING {
            book.begin(&format!("run{i}"), OpMeta::default()).unwrap();
        }
        let refused = book.begin("one-more", OpMeta::default()).unwrap_err();
        assert!(
            refused.contains("asynchronous operations are running"),
            "{refused}"
        );
        book.finish("run0", done(true));
        book.begin("one-more", OpMeta::default()).unwrap();
    }
}
