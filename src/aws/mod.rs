//! Loading the AWS configuration once and building every service client from it.
//!
//! Credentials and region come from the standard chain (environment, shared profile, web
//! identity, IMDS), optionally overridden by `[aws]`. Endpoints follow the SDKs' rules for
//! `AWS_ENDPOINT_URL_<SERVICE>` and `AWS_ENDPOINT_URL`, with `[aws].endpoint_url` between them:
//!
//! 1. `AWS_ENDPOINT_URL_<SERVICE>` (e.g. `AWS_ENDPOINT_URL_LAMBDA`), unless
//!    `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`;
//! 2. `[aws].endpoint_url` from the config file;
//! 3. `AWS_ENDPOINT_URL` (same opt-out), then anything the shared config file sets.
//!
//! So a test can point every service at moto with `endpoint_url` and still send invocations
//! to its own Invoke endpoint with `AWS_ENDPOINT_URL_LAMBDA`.

pub(crate) mod error;
pub(crate) mod lean;
#[cfg(test)]
pub(crate) mod moto;
mod per_batch;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::AwsSettings;

/// The longest one attempt of a Kinesis, DynamoDB, DynamoDB Streams, SNS or S3 call may take.
pub(crate) const CALL_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// One loaded AWS configuration, shared by every client.
pub(crate) use per_batch::AwsSetupError;

#[derive(Clone, Debug)]
pub(crate) struct AwsContext {
    sdk: SdkConfig,
    settings: AwsSettings,
}

/// The services esmd talks to, with the suffix of their endpoint environment variable.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Service {
    Sqs,
    Lambda,
    Kinesis,
    DynamoDbStreams,
    DynamoDb,
    Sns,
    S3,
}

impl Service {
    fn env_suffix(self) -> &'static str {
        match self {
            Service::Sqs => "SQS",
            Service::Lambda => "LAMBDA",
            Service::Kinesis => "KINESIS",
            Service::DynamoDbStreams => "DYNAMODB_STREAMS",
            Service::DynamoDb => "DYNAMODB",
            Service::Sns => "SNS",
            Service::S3 => "S3",
        }
    }
}

/// The endpoint a service should use, or `None` for the SDK's own resolution.
pub(crate) fn endpoint_for(
    service: Service,
    settings: &AwsSettings,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let ignore_env =
        env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let from_env = |name: &str| {
        if ignore_env {
            None
        } else {
            env(name).filter(|v| !v.is_empty())
        }
    };
    from_env(&format!("AWS_ENDPOINT_URL_{}", service.env_suffix()))
        .or_else(|| settings.endpoint_url.clone())
        .or_else(|| from_env("AWS_ENDPOINT_URL"))
}

impl AwsContext {
    pub(crate) async fn load(settings: &AwsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        AwsContext {
            sdk: loader.load().await,
            settings: settings.clone(),
        }
    }

    /// Tests only: the configuration with fixed credentials instead of the provider chain.
    #[cfg(test)]
    pub(crate) async fn with_credentials(settings: &AwsSettings, key: &str, secret: &str) -> Self {
        let credentials = aws_credential_types::Credentials::new(key, secret, None, None, "test");
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).credentials_provider(credentials);
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        AwsContext {
            sdk: loader.load().await,
            settings: settings.clone(),
        }
    }

    pub(crate) fn endpoint(&self, service: Service) -> Option<String> {
        endpoint_for(service, &self.settings, |k| std::env::var(k).ok())
    }

    /// The SQS client. Its calls are bounded by a 30 s attempt timeout (a long poll waits at
    /// most 20 s) rather than by the SDK's stalled-stream protection, whose throughput checks
    /// run timers for the whole of every idle long poll: an idle mapping should cost nothing.
    pub(crate) fn sqs(&self) -> aws_sdk_sqs::Client {
        let mut b = aws_sdk_sqs::config::Builder::from(&self.sdk)
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(url) = self.endpoint(Service::Sqs) {
            b = b.endpoint_url(url);
        }
        aws_sdk_sqs::Client::from_conf(b.build())
    }

    /// The Lambda client never retries by itself (the failure policy decides) and allows
    /// invocations as long as Lambda's 15-minute maximum.
    pub(crate) fn lambda(&self) -> aws_sdk_lambda::Client {
        let mut b = aws_sdk_lambda::config::Builder::from(&self.sdk)
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(905))
                    .build(),
            );
        if let Some(url) = self.endpoint(Service::Lambda) {
            b = b.endpoint_url(url);
        }
        aws_sdk_lambda::Client::from_conf(b.build())
    }

    /// Kinesis, DynamoDB, DynamoDB Streams, SNS and S3 calls are bounded by a 30 s attempt
    /// timeout (so, as for SQS and Lambda, the SDK's stalled-stream protection is off: its
    /// throughput checks poll timers for as long as a response is awaited, which multiplied
    /// esmd's CPU per request against a slow backend): without one, a backend that accepts a request and never answers (a half-open
    /// connection, a stalled load balancer) would hold a shard's reader forever. The fault
    /// campaign's proxy stalls requests to prove it. SubscribeToShard lifts it for its
    /// event stream (`source::kinesis::fanout`).
    fn bounded() -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(CALL_ATTEMPT_TIMEOUT)
            .build()
    }

    pub(crate) fn kinesis(&self) -> aws_sdk_kinesis::Client {
        let mut b = aws_sdk_kinesis::config::Builder::from(&self.sdk)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(Self::bounded());
        if let Some(url) = self.endpoint(Service::Kinesis) {
            b = b.endpoint_url(url);
        }
        aws_sdk_kinesis::Client::from_conf(b.build())
    }

    /// The lease table's client.
    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let mut b = aws_sdk_dynamodb::config::Builder::from(&self.sdk)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(Self::bounded());
        if let Some(url) = self.endpoint(Service::DynamoDb) {
            b = b.endpoint_url(url);
        }
        aws_sdk_dynamodb::Client::from_conf(b.build())
    }

    pub(crate) fn dynamodb_streams(&self) -> aws_sdk_dynamodbstreams::Client {
        let mut b = aws_sdk_dynamodbstreams::config::Builder::from(&self.sdk)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(Self::bounded());
        if let Some(url) = self
            .endpoint(Service::DynamoDbStreams)
            .or_else(|| self.endpoint(Service::DynamoDb))
        {
            b = b.endpoint_url(url);
        }
        aws_sdk_dynamodbstreams::Client::from_conf(b.build())
    }

    pub(crate) fn sns(&self) -> aws_sdk_sns::Client {
        let mut b = aws_sdk_sns::config::Builder::from(&self.sdk)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(Self::bounded());
        if let Some(url) = self.endpoint(Service::Sns) {
            b = b.endpoint_url(url);
        }
        aws_sdk_sns::Client::from_conf(b.build())
    }

    pub(crate) fn s3(&self) -> aws_sdk_s3::Client {
        let mut b = aws_sdk_s3::config::Builder::from(&self.sdk)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(Self::bounded());
        if let Some(url) = self.endpoint(Service::S3) {
            // Emulators serve buckets by path, not by virtual host.
            b = b.endpoint_url(url).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn service_env_beats_config_beats_global_env() {
        let with_config = AwsSettings {
            endpoint_url: Some("http://config".into()),
            ..Default::default()
        };
        let e = env(&[
            ("AWS_ENDPOINT_URL", "http://global"),
            ("AWS_ENDPOINT_URL_LAMBDA", "http://lambda"),
        ]);
        assert_eq!(
            endpoint_for(Service::Lambda, &with_config, &e).as_deref(),
            Some("http://lambda")
        );
        assert_eq!(
            endpoint_for(Service::Sqs, &with_config, &e).as_deref(),
            Some("http://config")
        );
        assert_eq!(
            endpoint_for(Service::Sqs, &AwsSettings::default(), &e).as_deref(),
            Some("http://global")
        );
        assert_eq!(
            endpoint_for(Service::Sqs, &AwsSettings::default(), env(&[])),
            None
        );
        let ignored = env(&[
            ("AWS_ENDPOINT_URL", "http://global"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(
            endpoint_for(Service::Sqs, &AwsSettings::default(), ignored),
            None
        );
    }
}
