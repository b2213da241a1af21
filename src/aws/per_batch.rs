//! Building esmd's own signed client ([`super::lean`]) for the calls made for every batch
//! (SQS's ReceiveMessage and DeleteMessageBatch, Kinesis's GetRecords, Lambda's Invoke) when `[aws] client =
//! "lean"`: its endpoint, resolved once. The sources and the invoker pick their client
//! (`source::sqs::lean::sqs_api`, `invoke::lean::invoker`).

use std::time::Duration;

use super::lean::{self, SignedClient};
use super::{AwsContext, Service};
use crate::config::AwsClient;

/// A client esmd cannot build from the AWS configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsSetupError {
    #[error("[aws] client = \"lean\": {0}")]
    Lean(#[from] lean::BuildError),
    #[error("[aws] client = \"lean\": cannot resolve the {service} endpoint: {message}")]
    Endpoint {
        service: &'static str,
        message: String,
    },
}

impl AwsContext {
    /// With `[aws] client = "lean"`, esmd's own client for `service`'s per-batch calls
    /// (signed as `signing_name`, each attempt bounded by `attempt_timeout`); `None` with the
    /// SDK, the default.
    pub(crate) async fn lean_client(
        &self,
        service: Service,
        signing_name: &'static str,
        attempt_timeout: Duration,
    ) -> Result<Option<SignedClient>, AwsSetupError> {
        if self.settings.client == AwsClient::Sdk {
            return Ok(None);
        }
        let endpoint = self.lean_endpoint(service).await?;
        let client = SignedClient::new(&self.sdk, &endpoint, signing_name, attempt_timeout)?;
        tracing::info!(%endpoint, service = signing_name, "per-batch calls go through esmd's lean client");
        Ok(Some(client))
    }

    /// The configured endpoint, or the SDK's own resolution of it (region, FIPS, dual-stack),
    /// computed once.
    async fn lean_endpoint(&self, service: Service) -> Result<String, AwsSetupError> {
        if let Some(url) = self.endpoint(service) {
            return Ok(url);
        }
        let region = self.sdk.region().ok_or(lean::BuildError::NoRegion)?;
        let (fips, dual_stack) = (
            self.sdk.use_fips().unwrap_or(false),
            self.sdk.use_dual_stack().unwrap_or(false),
        );
        let failed = |name: &'static str| {
            move |e: &dyn std::fmt::Display| AwsSetupError::Endpoint {
                service: name,
                message: e.to_string(),
            }
        };
        // Each service's own resolver (the same rules, generated per service by the SDK).
        macro_rules! resolve {
            ($sdk:ident, $name:literal) => {{
                use $sdk::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
                let params = Params::builder()
                    .region(region.to_string())
                    .use_fips(fips)
                    .use_dual_stack(dual_stack)
                    .build()
                    .map_err(|e| failed($name)(&e))?;
                DefaultResolver::new().resolve_endpoint(&params).await
            }};
        }
        let endpoint = match service {
            Service::Sqs => resolve!(aws_sdk_sqs, "SQS"),
            Service::Kinesis => resolve!(aws_sdk_kinesis, "Kinesis"),
            Service::Lambda => resolve!(aws_sdk_lambda, "Lambda"),
            other => {
                return Err(AwsSetupError::Endpoint {
                    service: other.env_suffix(),
                    message: "esmd's lean client does not call this service".into(),
                })
            }
        };
        Ok(endpoint.map_err(|e| failed("AWS")(&e))?.url().to_string())
    }
}
