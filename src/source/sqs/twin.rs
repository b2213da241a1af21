//! An in-memory SQS for unit tests: queues with visibility timeouts, receive counts, receipt
//! handles and FIFO groups, on tokio's clock (so paused time drives visibility). It answers
//! the [`SqsApi`] calls as SQS does, including per-entry failures for stale receipts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{FailedEntry, ReceiptRef, SqsApi, SqsError};
use crate::payload::sqs::SqsMessage;

#[derive(Debug, Default)]
pub(crate) struct MemorySqs {
    state: Mutex<State>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<String, Queue>,
    next_id: u64,
    /// GetQueueAttributes calls for the backlog (queue_depth), for tests of idle cost.
    depth_samples: usize,
    /// Receives still to fail with a transient error.
    failing_receives: usize,
}

#[derive(Debug)]
struct Queue {
    visibility_timeout: Duration,
    messages: Vec<Stored>,
}

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    group: Option<String>,
    visible_at: Instant,
    receive_count: u32,
    receipt: Option<String>,
}

fn url(name: &str) -> String {
    format!("memory://sqs/{name}")
}

impl MemorySqs {
    pub(crate) fn create_queue(&self, name: &str, visibility_timeout: Duration) {
        self.lock().queues.insert(
            url(name),
            Queue {
                visibility_timeout,
                messages: Vec::new(),
            },
        );
    }

    /// How many times the backlog was sampled.
    /// The next `n` receives fail as a dropped connection would.
    pub(crate) fn fail_receives(&self, n: usize) {
        self.lock().failing_receives = n;
    }

    pub(crate) fn depth_samples(&self) -> usize {
        self.lock().depth_samples
    }

    /// Sends a message (`group` for FIFO queues); returns its id.
    pub(crate) fn send(&self, name: &str, body: &str, group: Option<&str>) -> String {
        let mut state = self.lock();
        state.next_id += 1;
        let id = format!("m-{}", state.next_id);
        if let Some(queue) = state.queues.get_mut(&url(name)) {
            queue.messages.push(Stored {
                id: id.clone(),
                body: body.into(),
                group: group.map(str::to_string),
                visible_at: Instant::now(),
                receive_count: 0,
                receipt: None,
            });
        }
        drop(state);
        self.arrived.notify_waiters();
        id
    }

    /// Bodies of the messages still in the queue (not deleted), in order.
    pub(crate) fn remaining(&self, name: &str) -> Vec<String> {
        self.lock()
            .queues
            .get(&url(name))
            .map(|q| q.messages.iter().map(|m| m.body.clone()).collect())
            .unwrap_or_default()
    }

    /// How many remaining messages are visible now.
    pub(crate) fn visible(&self, name: &str) -> usize {
        let now = Instant::now();
        self.lock()
            .queues
            .get(&url(name))
            .map(|q| q.messages.iter().filter(|m| m.visible_at <= now).count())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up to `max` visible messages; a FIFO group with a message in flight, or an
    /// earlier message still invisible, gives nothing.
    fn take(&self, queue_url: &str, max: usize) -> Result<Vec<SqsMessage>, SqsError> {
        let mut state = self.lock();
        if state.failing_receives > 0 {
            state.failing_receives -= 1;
            return Err(SqsError::Transient("connection reset".into()));
        }
        state.next_id += 1;
        let receive = state.next_id;
        let queue = state
            .queues
            .get_mut(queue_url)
            .ok_or_else(|| SqsError::QueueMissing(queue_url.into()))?;
        let now = Instant::now();
        let mut blocked: Vec<String> = Vec::new();
        let mut taken = Vec::new();
        for m in queue.messages.iter_mut() {
            if let Some(group) = &m.group {
                if blocked.contains(group) {
                    continue;
                }
                if m.visible_at > now {
                    blocked.push(group.clone());
                    continue;
                }
            }
            if m.visible_at > now || taken.len() >= max {
                continue;
            }
            m.visible_at = now + queue.visibility_timeout;
            m.receive_count += 1;
            let receipt = format!("{}#{receive}", m.id);
            m.receipt = Some(receipt.clone());
            taken.push(to_message(m, receipt));
        }
        Ok(taken)
    }
}

fn to_message(m: &Stored, receipt: String) -> SqsMessage {
    let mut attributes = vec![
        (
            "ApproximateReceiveCount".to_string(),
            m.receive_count.to_string(),
        ),
        ("SentTimestamp".to_string(), "1700000000000".to_string()),
    ];
    if let Some(group) = &m.group {
        attributes.push(("MessageGroupId".into(), group.clone()));
    }
    SqsMessage {
        message_id: m.id.clone(),
        receipt_handle: receipt,
        body: m.body.clone(),
        attributes,
        md5_of_body: Some(format!("{:x}", md5::Md5::digest(m.body.as_bytes()))),
        ..SqsMessage::default()
    }
}

use md5::Digest;

/// Applies `f` to the message with each receipt; entries with a stale receipt fail.
fn by_receipt<'a, T>(
    queue: &mut Queue,
    entries: impl Iterator<Item = (usize, &'a str, T)>,
    mut f: impl FnMut(&mut Queue, usize, T),
) -> Vec<FailedEntry> {
    let mut failed = Vec::new();
    for (index, receipt, value) in entries {
        match queue
            .messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt))
        {
            Some(at) => f(queue, at, value),
            None => failed.push(FailedEntry {
                index,
                code: "ReceiptHandleIsInvalid".into(),
                message: "stale receipt handle".into(),
            }),
        }
    }
    failed
}

impl SqsApi for MemorySqs {
    fn queue_url<'a>(
        &'a self,
        name: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, SqsError>> {
        let found = self.lock().queues.contains_key(&url(name));
        Box::pin(async move {
            match found {
                true => Ok(url(name)),
                false => Err(SqsError::QueueMissing(format!("QueueDoesNotExist: {name}"))),
            }
        })
    }

    fn visibility_timeout<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> BoxFuture<'a, Result<Duration, SqsError>> {
        let found = self
            .lock()
            .queues
            .get(queue_url)
            .map(|q| q.visibility_timeout);
        Box::pin(async move { found.ok_or_else(|| SqsError::QueueMissing(queue_url.into())) })
    }

    fn queue_depth<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> BoxFuture<'a, Result<(i64, i64), SqsError>> {
        let now = Instant::now();
        let mut state = self.lock();
        state.depth_samples += 1;
        let depth = state.queues.get(queue_url).map(|q| {
            let visible = q.messages.iter().filter(|m| m.visible_at <= now).count() as i64;
            (visible, q.messages.len() as i64 - visible)
        });
        drop(state);
        Box::pin(async move { depth.ok_or_else(|| SqsError::QueueMissing(queue_url.into())) })
    }

    fn receive<'a>(
        &'a self,
        queue_url: &'a str,
        max_messages: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<SqsMessage>, SqsError>> {
        Box::pin(async move {
            let deadline = Instant::now() + wait;
            loop {
                let arrived = self.arrived.notified();
                let taken = self.take(queue_url, max_messages)?;
                if !taken.is_empty() || Instant::now() >= deadline {
                    return Ok(taken);
                }
                // Wake on a new message, or poll again as visibility timeouts pass.
                let next = (Instant::now() + Duration::from_millis(100)).min(deadline);
                tokio::select! {
                    _ = arrived => {}
                    _ = tokio::time::sleep_until(next) => {}
                }
            }
        })
    }

    fn delete<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [ReceiptRef<'a>],
    ) -> BoxFuture<'a, Result<Vec<FailedEntry>, SqsError>> {
        let result = match self.lock().queues.get_mut(queue_url) {
            None => Err(SqsError::QueueMissing(queue_url.into())),
            Some(queue) => {
                let entries = entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (i, e.receipt_handle, ()));
                Ok(by_receipt(queue, entries, |q, at, ()| {
                    q.messages.remove(at);
                }))
            }
        };
        Box::pin(async move { result })
    }

    fn change_visibility<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [(ReceiptRef<'a>, Duration)],
    ) -> BoxFuture<'a, Result<Vec<FailedEntry>, SqsError>> {
        let now = Instant::now();
        let result = match self.lock().queues.get_mut(queue_url) {
            None => Err(SqsError::QueueMissing(queue_url.into())),
            Some(queue) => {
                let entries = entries
                    .iter()
                    .enumerate()
                    .map(|(i, (e, d))| (i, e.receipt_handle, *d));
                Ok(by_receipt(queue, entries, |q, at, d| {
                    q.messages[at].visible_at = now + d;
                }))
            }
        };
        self.arrived.notify_waiters();
        Box::pin(async move { result })
    }
}
