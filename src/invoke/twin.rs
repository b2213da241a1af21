//! An in-memory function for unit tests: it keeps every event it was invoked with and answers
//! with whatever its script says for that call.

use std::sync::Mutex;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{InvokeOutcome, Invoker};

type Script = Box<dyn Fn(&serde_json::Value, usize) -> InvokeOutcome + Send + Sync>;

pub(crate) struct ScriptedFunction {
    script: Script,
    calls: Mutex<Vec<serde_json::Value>>,
}

impl ScriptedFunction {
    /// A function answering each call (`event`, 0-based call number) as `script` says.
    pub(crate) fn new(
        script: impl Fn(&serde_json::Value, usize) -> InvokeOutcome + Send + Sync + 'static,
    ) -> Self {
        ScriptedFunction {
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// A function that always succeeds.
    pub(crate) fn ok() -> Self {
        Self::new(|_, _| returned(""))
    }

    /// Every event received, in order.
    pub(crate) fn calls(&self) -> Vec<serde_json::Value> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The values of `field` in each record of each call (e.g. `body`, `messageId`).
    pub(crate) fn record_fields(&self, field: &str) -> Vec<Vec<String>> {
        self.calls()
            .iter()
            .map(|event| {
                event["Records"]
                    .as_array()
                    .map(|records| {
                        records
                            .iter()
                            .map(|r| r[field].as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// A 200 answer with this body.
pub(crate) fn returned(body: &str) -> InvokeOutcome {
    InvokeOutcome::Returned {
        body: Bytes::from(body.to_string()),
    }
}

impl Invoker for ScriptedFunction {
    fn invoke<'a>(&'a self, _: &'a str, payload: Bytes) -> BoxFuture<'a, InvokeOutcome> {
        let event: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        let outcome = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            let outcome = (self.script)(&event, calls.len());
            calls.push(event);
            outcome
        };
        Box::pin(async move { outcome })
    }
}
