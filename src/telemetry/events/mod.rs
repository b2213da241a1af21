//! Named log events. Each is a struct with an `emit` method, so the set of things esmd logs is
//! visible in one place and no call site can slip a payload or credential into a log line.

mod lifecycle;
mod records;

pub(crate) use lifecycle::*;
pub(crate) use records::*;

use std::sync::atomic::{AtomicU64, Ordering};

/// Every named event, for counting (`esmd_events_total{event=…}`) and for the test recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    MappingStarted,
    MappingErrored,
    BatchInvoked,
    InvokeRetrying,
    BatchFailed,
    BatchEntriesFailed,
    RecordTooLarge,
    BatchGivenUp,
    BatchBisected,
    ShardStarted,
    ShardEnded,
    ShardReadFailed,
    ReceiveFailed,
    ConfigReloaded,
    ConfigReloadRejected,
    ConfigNeedsRestart,
    MappingStopped,
    RecordsPolled,
    RecordsFilteredOut,
    RecordsFailed,
    MessagesDeleted,
    DeleteFailed,
    MessagesReleased,
    DestinationDelivered,
    LeaseLost,
    LeaseStolen,
    LeaseTaken,
    LeaseReleased,
    ApiMappingChanged,
    StoredMappingRejected,
    CredentialsRefreshFailed,
}

const EVENTS: usize = 31;

/// The events' names in `esmd_events_total`, in [`Event`]'s order.
const NAMES: [&str; EVENTS] = [
    "mapping_started",
    "mapping_errored",
    "batch_invoked",
    "invoke_retrying",
    "batch_failed",
    "batch_entries_failed",
    "record_too_large",
    "batch_given_up",
    "batch_bisected",
    "shard_started",
    "shard_ended",
    "shard_read_failed",
    "receive_failed",
    "config_reloaded",
    "config_reload_rejected",
    "config_needs_restart",
    "mapping_stopped",
    "records_polled",
    "records_filtered_out",
    "records_failed",
    "messages_deleted",
    "delete_failed",
    "messages_released",
    "destination_delivered",
    "lease_lost",
    "lease_stolen",
    "lease_taken",
    "lease_released",
    "api_mapping_changed",
    "stored_mapping_rejected",
    "credentials_refresh_failed",
];

static COUNTS: [AtomicU64; EVENTS] = [const { AtomicU64::new(0) }; EVENTS];

/// Counts one emitted event (and hands it to the test recorder, in tests).
pub(super) fn counted(event: Event, mapping: Option<&str>) {
    COUNTS[event as usize].fetch_add(1, Ordering::Relaxed);
    #[cfg(test)]
    recorder::record(event, mapping);
    #[cfg(not(test))]
    let _ = mapping;
}

/// How often each event was emitted since the process started.
pub(crate) fn counts() -> impl Iterator<Item = (&'static str, u64)> {
    NAMES
        .iter()
        .zip(COUNTS.iter())
        .map(|(name, count)| (*name, count.load(Ordering::Relaxed)))
}

/// Lets a test assert on the events a scenario emitted instead of on log text. Recording is
/// per thread, which holds every task of a `#[tokio::test]` (a current-thread runtime).
#[cfg(test)]
pub(crate) mod recorder {
    use std::cell::RefCell;

    use super::Event;

    /// An event and the mapping it was about.
    type Recorded = (Event, Option<String>);

    thread_local! {
        static RECORDED: RefCell<Option<Vec<Recorded>>> = const { RefCell::new(None) };
    }

    pub(super) fn record(event: Event, mapping: Option<&str>) {
        RECORDED.with(|r| {
            if let Some(events) = r.borrow_mut().as_mut() {
                events.push((event, mapping.map(str::to_string)));
            }
        });
    }

    /// Records the events emitted on this thread until dropped.
    pub(crate) struct Recorder(());

    impl Recorder {
        pub(crate) fn start() -> Self {
            RECORDED.with(|r| *r.borrow_mut() = Some(Vec::new()));
            Recorder(())
        }

        /// How many times `event` was emitted.
        pub(crate) fn count(&self, event: Event) -> usize {
            RECORDED.with(|r| {
                r.borrow().as_ref().map_or(0, |events| {
                    events.iter().filter(|(e, _)| *e == event).count()
                })
            })
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            RECORDED.with(|r| *r.borrow_mut() = None);
        }
    }
}
