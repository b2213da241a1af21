//! The clients of the calls made for every batch: SQS's ReceiveMessage and DeleteMessageBatch
//! and Lambda's Invoke. The SDK's by default; with `[aws] client = "lean"`, esmd's own signed
//! client ([`super::lean`]) for those calls, the SDK keeping the rarer ones.

use std::sync::Arc;
use std::time::Duration;

use super::lean::{self, JsonClient, SignedClient};
use super::{AwsContext, Service};
use crate::config::AwsClient;
use crate::invoke::lambda::LambdaInvoker;
use crate::invoke::lean::LeanInvoker;
use crate::invoke::Invoker;
use crate::source::sqs::{LeanSqs, SdkSqs, SqsApi};

/// Lambda's longest invocation, and a margin: the attempt bound of an Invoke.
const INVOKE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(905);

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
    /// The SQS calls a mapping makes.
    pub(crate) async fn sqs_api(&self) -> Result<Arc<dyn SqsApi>, AwsSetupError> {
        let sdk = SdkSqs::new(self.sqs());
        if self.settings.client == AwsClient::Sdk {
            return Ok(Arc::new(sdk));
        }
        let endpoint = self.lean_endpoint(Service::Sqs).await?;
        let signed = SignedClient::new(&self.sdk, &endpoint, "sqs", Duration::from_secs(30))?;
        let client = JsonClient::new(signed, "AmazonSQS", "application/x-amz-json-1.0");
        tracing::info!(%endpoint, "SQS ReceiveMessage and DeleteMessageBatch go through esmd's lean client");
        Ok(Arc::new(LeanSqs::new(sdk, client)))
    }

    /// The Lambda Invoke client.
    pub(crate) async fn invoker(&self) -> Result<Arc<dyn Invoker>, AwsSetupError> {
        if self.settings.client == AwsClient::Sdk {
            return Ok(Arc::new(LambdaInvoker::new(self.lambda())));
        }
        let endpoint = self.lean_endpoint(Service::Lambda).await?;
        let signed = SignedClient::new(&self.sdk, &endpoint, "lambda", INVOKE_ATTEMPT_TIMEOUT)?;
        tracing::info!(%endpoint, "Lambda Invoke goes through esmd's lean client");
        Ok(Arc::new(LeanInvoker::new(signed)))
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
        let endpoint = match service {
            Service::Lambda => {
                use aws_sdk_lambda::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
                let params = Params::builder()
                    .region(region.to_string())
                    .use_fips(fips)
                    .use_dual_stack(dual_stack)
                    .build()
                    .map_err(|e| failed("Lambda")(&e))?;
                DefaultResolver::new().resolve_endpoint(&params).await
            }
            _ => {
                use aws_sdk_sqs::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
                let params = Params::builder()
                    .region(region.to_string())
                    .use_fips(fips)
                    .use_dual_stack(dual_stack)
                    .build()
                    .map_err(|e| failed("SQS")(&e))?;
                DefaultResolver::new().resolve_endpoint(&params).await
            }
        };
        Ok(endpoint.map_err(|e| failed("AWS")(&e))?.url().to_string())
    }
}
