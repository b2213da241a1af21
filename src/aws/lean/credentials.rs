//! The provider chain's credentials for the lean client, cached until five minutes before
//! they expire. The SDK's identity cache keeps them until 5-10 s before; the earlier refresh
//! leaves a failing provider (an IMDS or container endpoint briefly away) minutes of retries
//! before a request would be signed with expired credentials. tests/credentials.rs runs both
//! across rotations against a container credentials endpoint.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::{error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;

use super::failure;
use crate::aws::error::{AwsFailure, FailureClass};
use crate::telemetry::events::CredentialsRefreshFailed;

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Credentials whose refresh failed still sign while they have this long left: the service
/// checks a request's signature when the request arrives, seconds after it was signed.
const USABLE_UNTIL_EXPIRY: Duration = Duration::from_secs(60);

/// After a failed fetch with usable credentials at hand, the next fetch waits this long (a
/// provider that hangs would otherwise hold every request for [`LOAD_TIMEOUT`]).
const RETRY_FETCH_AFTER: Duration = Duration::from_secs(10);

/// How long one fetch may take (the SDK's identity cache allows the same): a provider that
/// hangs (an unreachable IMDS) fails the request as transient instead of holding it.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The provider chain's credentials, kept until shortly before they expire.
pub(super) struct CredentialsCache {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    credentials: Option<Credentials>,
    /// No fetch before this, after one failed (the cached credentials sign until then).
    next_fetch: Option<tokio::time::Instant>,
}

impl CredentialsCache {
    pub(super) fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialsCache {
            provider,
            cached: tokio::sync::Mutex::new(Cached::default()),
        }
    }

    pub(super) async fn get(&self) -> Result<Credentials, AwsFailure> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        let holding = cached
            .next_fetch
            .is_some_and(|t| tokio::time::Instant::now() < t);
        if let Some(c) = cached.credentials.as_ref().filter(|c| {
            left(c, now) > REFRESH_BEFORE_EXPIRY || (holding && left(c, now) > USABLE_UNTIL_EXPIRY)
        }) {
            return Ok(c.clone());
        }
        match self.fetch().await {
            Ok(loaded) => {
                *cached = Cached {
                    credentials: Some(loaded.clone()),
                    next_fetch: None,
                };
                Ok(loaded)
            }
            Err(failure) => {
                let now = SystemTime::now();
                let usable = cached
                    .credentials
                    .clone()
                    .filter(|c| left(c, now) > USABLE_UNTIL_EXPIRY);
                let Some(usable) = usable else {
                    return Err(failure);
                };
                cached.next_fetch = Some(tokio::time::Instant::now() + RETRY_FETCH_AFTER);
                CredentialsRefreshFailed {
                    error: &failure.message,
                    expires_in: left(&usable, now),
                    retry_in: RETRY_FETCH_AFTER,
                }
                .emit();
                Ok(usable)
            }
        }
    }

    /// One bounded call of the provider chain.
    async fn fetch(&self) -> Result<Credentials, AwsFailure> {
        let loading = tokio::time::timeout(LOAD_TIMEOUT, self.provider.provide_credentials());
        let Ok(loaded) = loading.await else {
            return Err(failure(
                FailureClass::Transient,
                format!("no credentials: the provider did not answer within {LOAD_TIMEOUT:?}"),
            ));
        };
        loaded.map_err(|e| {
            let class = match e {
                CredentialsError::ProviderTimedOut(_) | CredentialsError::ProviderError(_) => {
                    FailureClass::Transient
                }
                _ => FailureClass::AccessDenied,
            };
            failure(
                class,
                format!("no credentials: {}", crate::aws::error::error_chain(&e)),
            )
        })
    }
}

/// How long credentials may still sign from `now` (`Duration::MAX` if they never expire).
fn left(c: &Credentials, now: SystemTime) -> Duration {
    c.expiry().map_or(Duration::MAX, |expiry| {
        expiry.duration_since(now).unwrap_or(Duration::ZERO)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::events::{recorder::Recorder, Event};
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_provider_that_hangs_fails_the_request_as_transient() {
        let provider = SharedCredentialsProvider::new(
            aws_credential_types::credential_fn::provide_credentials_fn(move || {
                std::future::pending::<aws_credential_types::provider::Result>()
            }),
        );
        let cache = CredentialsCache::new(provider);
        // Without the bound, get() would never return: the test's own limit fails it.
        let e = tokio::time::timeout(Duration::from_secs(60), cache.get())
            .await
            .expect("the fetch is bounded")
            .unwrap_err();
        assert_eq!(e.class, FailureClass::Transient);
        assert!(e.message.contains("did not answer"), "{}", e.message);
    }

    /// Whether credentials are kept at `now` without fetching new ones.
    fn fresh(c: &Credentials, now: SystemTime) -> bool {
        left(c, now) > REFRESH_BEFORE_EXPIRY
    }

    /// A provider answering from `answers` in turn (then failing), counting its calls.
    fn scripted(
        answers: Vec<aws_credential_types::provider::Result>,
    ) -> (SharedCredentialsProvider, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(std::sync::Mutex::new(VecDeque::from(answers)));
        let counted = Arc::clone(&calls);
        let provider = aws_credential_types::credential_fn::provide_credentials_fn(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let next = answers.lock().unwrap().pop_front();
            async move { next.unwrap_or_else(|| Err(CredentialsError::provider_error("down"))) }
        });
        (SharedCredentialsProvider::new(provider), calls)
    }

    fn expiring_in(key: &str, secs: u64) -> Credentials {
        let expiry = SystemTime::now() + Duration::from_secs(secs);
        Credentials::new(key, "secret", Some("token".into()), Some(expiry), "test")
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_signs_with_the_current_credentials_until_near_expiry() {
        let recorder = Recorder::start();
        // Four minutes left: due for a refresh, still good to sign with.
        let (provider, calls) = scripted(vec![
            Ok(expiring_in("first", 240)),
            Err(CredentialsError::provider_error("IMDS unreachable")),
            Err(CredentialsError::provider_error("IMDS unreachable")),
            Ok(expiring_in("second", 3600)),
        ]);
        let cache = CredentialsCache::new(provider);
        assert_eq!(cache.get().await.unwrap().access_key_id(), "first");
        // The refresh fails: the current credentials still sign, and the failure is reported.
        assert_eq!(cache.get().await.unwrap().access_key_id(), "first");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(recorder.count(Event::CredentialsRefreshFailed), 1);
        // No new fetch for RETRY_FETCH_AFTER: a failing provider does not hold every request.
        assert_eq!(cache.get().await.unwrap().access_key_id(), "first");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::advance(RETRY_FETCH_AFTER).await;
        assert_eq!(cache.get().await.unwrap().access_key_id(), "first");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        tokio::time::advance(RETRY_FETCH_AFTER).await;
        assert_eq!(cache.get().await.unwrap().access_key_id(), "second");
        assert_eq!(cache.get().await.unwrap().access_key_id(), "second");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_fails_the_request_when_the_credentials_are_about_to_expire() {
        let (provider, _) = scripted(vec![Ok(expiring_in("first", 30))]);
        let cache = CredentialsCache::new(provider);
        assert_eq!(cache.get().await.unwrap().access_key_id(), "first");
        let e = cache.get().await.unwrap_err();
        assert_eq!(e.class, FailureClass::Transient);
        assert!(e.message.contains("down"), "{}", e.message);
    }

    #[test]
    fn credentials_are_refreshed_five_minutes_before_they_expire() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expiring = |secs| {
            Credentials::new(
                "a",
                "b",
                Some("t".into()),
                Some(now + Duration::from_secs(secs)),
                "p",
            )
        };
        assert!(fresh(&Credentials::new("a", "b", None, None, "p"), now));
        assert!(fresh(&expiring(301), now));
        assert!(!fresh(&expiring(300), now));
        assert!(!fresh(&expiring(0), now));
        let past = Credentials::new("a", "b", None, Some(now - Duration::from_secs(1)), "p");
        assert!(!fresh(&past, now));
    }
}
