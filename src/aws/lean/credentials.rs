//! The provider chain's credentials for the lean client, cached as the SDK's identity cache
//! caches them: until five minutes before they expire.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::{error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;

use super::failure;
use crate::aws::error::{AwsFailure, FailureClass};

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// How long one fetch may take (the SDK's identity cache allows the same): a provider that
/// hangs (an unreachable IMDS) fails the request as transient instead of holding it.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The provider chain's credentials, kept until shortly before they expire.
pub(super) struct CredentialsCache {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl CredentialsCache {
    pub(super) fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialsCache {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    pub(super) async fn get(&self) -> Result<Credentials, AwsFailure> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| fresh(c, SystemTime::now())) {
            return Ok(c.clone());
        }
        let loading = tokio::time::timeout(LOAD_TIMEOUT, self.provider.provide_credentials());
        let Ok(loaded) = loading.await else {
            return Err(failure(
                FailureClass::Transient,
                format!("no credentials: the provider did not answer within {LOAD_TIMEOUT:?}"),
            ));
        };
        let loaded = loaded.map_err(|e| {
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
        })?;
        *cached = Some(loaded.clone());
        Ok(loaded)
    }
}

/// Whether credentials may still sign at `now`.
fn fresh(c: &Credentials, now: SystemTime) -> bool {
    c.expiry().is_none_or(|expiry| {
        expiry
            .duration_since(now)
            .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
