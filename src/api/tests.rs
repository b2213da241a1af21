//! The API over HTTP, driven by the real `aws-sdk-lambda` client, on the in-memory catalog.
//! (The daemon applying the changes is covered by `tests/lambda_api.rs`, against moto.)

use aws_sdk_lambda::error::ProvideErrorMetadata;
use aws_sdk_lambda::types::{DestinationConfig, FilterCriteria, OnFailure, ScalingConfig};

use super::*;
use crate::checkpoint::catalog::MemoryCatalog;

const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
const STREAM: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks";

struct Served {
    client: aws_sdk_lambda::Client,
    catalog: Arc<MemoryCatalog>,
    control: Arc<Mutex<Control>>,
    changes: mpsc::UnboundedReceiver<()>,
}

async fn serve_api(file: Vec<crate::config::MappingConfig>, upstream: Option<String>) -> Served {
    let catalog = Arc::new(MemoryCatalog::default());
    let control = Arc::new(Mutex::new(Control::new(file, 0.0)));
    let (changed, changes) = mpsc::unbounded_channel();
    let api = Arc::new(Api {
        control: Arc::clone(&control),
        catalog: catalog.clone(),
        registry: Arc::new(Registry::default()),
        changed,
        proxy: proxy::Proxy::new(upstream),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::for_tests())
        .endpoint_url(format!("http://{addr}"))
        .build();
    Served {
        client: aws_sdk_lambda::Client::from_conf(config),
        catalog,
        control,
        changes,
    }
}

/// What the supervisor does after a change: apply the snapshot.
async fn settle(served: &mut Served) {
    assert!(
        served.changes.try_recv().is_ok(),
        "the change was announced"
    );
    let mut control = served.control.lock().await;
    let (_, applied) = control.desired();
    control.settle(&applied);
}

#[tokio::test]
async fn create_get_update_delete_with_the_sdk() {
    let mut s = serve_api(vec![], None).await;
    let created = s
        .client
        .create_event_source_mapping()
        .event_source_arn(QUEUE)
        .function_name("process")
        .batch_size(5)
        .function_response_types(
            aws_sdk_lambda::types::FunctionResponseType::ReportBatchItemFailures,
        )
        .scaling_config(ScalingConfig::builder().maximum_concurrency(3).build())
        .filter_criteria(
            FilterCriteria::builder()
                .filters(
                    aws_sdk_lambda::types::Filter::builder()
                        .pattern(r#"{"body": {"a": [1]}}"#)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.state(), Some("Creating"));
    let uuid = created.uuid().unwrap().to_string();
    assert_eq!(
        s.catalog.list().await.unwrap().len(),
        1,
        "stored before the answer"
    );
    settle(&mut s).await;

    let got = s
        .client
        .get_event_source_mapping()
        .uuid(&uuid)
        .send()
        .await
        .unwrap();
    assert_eq!(got.state(), Some("Enabled"));
    assert_eq!(got.batch_size(), Some(5));
    assert_eq!(got.event_source_arn(), Some(QUEUE));
    assert_eq!(
        got.function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:process")
    );
    assert_eq!(
        got.scaling_config().and_then(|c| c.maximum_concurrency()),
        Some(3)
    );
    assert_eq!(
        got.filter_criteria().unwrap().filters()[0].pattern(),
        Some(r#"{"body": {"a": [1]}}"#)
    );
    assert!(got.last_modified().is_some());

    let updated = s
        .client
        .update_event_source_mapping()
        .uuid(&uuid)
        .enabled(false)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.state(), Some("Disabling"));
    assert_eq!(updated.batch_size(), Some(5), "other settings kept");
    let busy = s
        .client
        .update_event_source_mapping()
        .uuid(&uuid)
        .batch_size(2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Some("ResourceInUseException"));
    assert_eq!(busy.raw_response().unwrap().status().as_u16(), 400);
    settle(&mut s).await;
    let got = s
        .client
        .get_event_source_mapping()
        .uuid(&uuid)
        .send()
        .await
        .unwrap();
    assert_eq!(got.state(), Some("Disabled"));

    let deleted = s
        .client
        .delete_event_source_mapping()
        .uuid(&uuid)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.state(), Some("Deleting"));
    assert!(s.catalog.list().await.unwrap().is_empty());
    settle(&mut s).await;
    let gone = s
        .client
        .get_event_source_mapping()
        .uuid(&uuid)
        .send()
        .await
        .unwrap_err();
    assert!(
        gone.as_service_error()
            .unwrap()
            .is_resource_not_found_exception(),
        "{gone:?}"
    );
    assert_eq!(gone.raw_response().unwrap().status().as_u16(), 404);
}

#[tokio::test]
async fn errors_have_aws_types_and_status_codes() {
    let s = serve_api(vec![], None).await;
    let bad = s
        .client
        .create_event_source_mapping()
        .event_source_arn(QUEUE)
        .function_name("f")
        .batch_size(11)
        .send()
        .await
        .unwrap_err();
    let service = bad.as_service_error().unwrap();
    assert!(service.is_invalid_parameter_value_exception(), "{bad:?}");
    assert_eq!(bad.raw_response().unwrap().status().as_u16(), 400);
    assert!(
        service
            .message()
            .unwrap()
            .contains("MaximumBatchingWindowInSeconds"),
        "{service:?}"
    );

    s.client
        .create_event_source_mapping()
        .event_source_arn(QUEUE)
        .function_name("f")
        .send()
        .await
        .unwrap();
    let twice = s
        .client
        .create_event_source_mapping()
        .event_source_arn(QUEUE)
        .function_name("f")
        .send()
        .await
        .unwrap_err();
    assert!(
        twice
            .as_service_error()
            .unwrap()
            .is_resource_conflict_exception(),
        "{twice:?}"
    );
    assert_eq!(twice.raw_response().unwrap().status().as_u16(), 409);

    let missing = s
        .client
        .update_event_source_mapping()
        .uuid("0b7a4a34-9a4e-4b36-9c1b-5f1f1ce0d7a1")
        .batch_size(1)
        .send()
        .await
        .unwrap_err();
    assert!(missing
        .as_service_error()
        .unwrap()
        .is_resource_not_found_exception());
    let missing = s
        .client
        .delete_event_source_mapping()
        .uuid("nope")
        .send()
        .await
        .unwrap_err();
    assert!(missing
        .as_service_error()
        .unwrap()
        .is_resource_not_found_exception());

    let stream = s
        .client
        .create_event_source_mapping()
        .event_source_arn(STREAM)
        .function_name("f")
        .parallelization_factor(11)
        .destination_config(
            DestinationConfig::builder()
                .on_failure(
                    OnFailure::builder()
                        .destination("arn:aws:lambda:us-east-1:123456789012:function:x")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    let message = stream
        .as_service_error()
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    for field in [
        "StartingPosition",
        "ParallelizationFactor",
        "DestinationConfig.OnFailure.Destination",
    ] {
        assert!(message.contains(field), "{field} in {message}");
    }
}

#[tokio::test]
async fn list_filters_and_pages() {
    let s = serve_api(vec![], None).await;
    for i in 0..5 {
        s.client
            .create_event_source_mapping()
            .event_source_arn(format!("arn:aws:sqs:us-east-1:123456789012:q{i}"))
            .function_name(if i % 2 == 0 { "even" } else { "odd" })
            .send()
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = s
            .client
            .list_event_source_mappings()
            .max_items(2)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        assert!(page.event_source_mappings().len() <= 2);
        seen.extend(
            page.event_source_mappings()
                .iter()
                .map(|m| m.event_source_arn().unwrap().to_string()),
        );
        marker = page.next_marker().map(String::from);
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    let even = s
        .client
        .list_event_source_mappings()
        .function_name("even")
        .send()
        .await
        .unwrap();
    assert_eq!(even.event_source_mappings().len(), 3);
    let by_arn = s
        .client
        .list_event_source_mappings()
        .function_name("arn:aws:lambda:us-east-1:123456789012:function:odd")
        .event_source_arn("arn:aws:sqs:us-east-1:123456789012:q3")
        .send()
        .await
        .unwrap();
    assert_eq!(by_arn.event_source_mappings().len(), 1);
    let bad = s
        .client
        .list_event_source_mappings()
        .max_items(0)
        .send()
        .await;
    assert!(bad.is_err());
}

#[tokio::test]
async fn other_lambda_calls_are_forwarded_unchanged() {
    // An upstream that answers every request with what it received.
    let upstream = Router::new().fallback(|request: axum::extract::Request| async move {
        let path = request.uri().to_string();
        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap();
        Json(serde_json::json!({"path": path, "body": String::from_utf8_lossy(&body)}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await });

    let s = serve_api(vec![], Some(format!("http://{addr}"))).await;
    let out = s
        .client
        .invoke()
        .function_name("echo")
        .payload(aws_sdk_lambda::primitives::Blob::new(r#"{"x":1}"#))
        .send()
        .await
        .unwrap();
    let echoed: Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert_eq!(echoed["path"], "/2015-03-31/functions/echo/invocations");
    assert_eq!(echoed["body"], r#"{"x":1}"#);

    let none = serve_api(vec![], None).await;
    let err = none
        .client
        .get_function()
        .function_name("f")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ServiceException"));
    assert!(
        err.message().unwrap().contains("AWS_ENDPOINT_URL_LAMBDA"),
        "{err:?}"
    );
}

/// Every stream field, sent by the SDK and read back by the SDK, unchanged.
#[tokio::test]
async fn every_stream_field_round_trips_through_the_sdk() {
    use aws_sdk_lambda::primitives::DateTime;
    use aws_sdk_lambda::types::{EventSourcePosition, FunctionResponseType};
    let s = serve_api(vec![], None).await;
    let at = DateTime::from_secs(1_700_000_000);
    let created = s
        .client
        .create_event_source_mapping()
        .event_source_arn(STREAM)
        .function_name("arn:aws:lambda:us-east-1:123456789012:function:f:live")
        .enabled(false)
        .batch_size(500)
        .maximum_batching_window_in_seconds(2)
        .starting_position(EventSourcePosition::AtTimestamp)
        .starting_position_timestamp(at)
        .parallelization_factor(4)
        .bisect_batch_on_function_error(true)
        .maximum_retry_attempts(3)
        .maximum_record_age_in_seconds(3600)
        .tumbling_window_in_seconds(30)
        .function_response_types(FunctionResponseType::ReportBatchItemFailures)
        .destination_config(
            DestinationConfig::builder()
                .on_failure(
                    OnFailure::builder()
                        .destination("arn:aws:sns:us-east-1:123456789012:failures")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = s
        .client
        .get_event_source_mapping()
        .uuid(created.uuid().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.event_source_arn(), Some(STREAM));
    assert_eq!(
        got.function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:f:live")
    );
    assert_eq!(got.batch_size(), Some(500));
    assert_eq!(got.maximum_batching_window_in_seconds(), Some(2));
    assert_eq!(
        got.starting_position(),
        Some(&EventSourcePosition::AtTimestamp)
    );
    assert_eq!(got.starting_position_timestamp(), Some(&at));
    assert_eq!(got.parallelization_factor(), Some(4));
    assert_eq!(got.bisect_batch_on_function_error(), Some(true));
    assert_eq!(got.maximum_retry_attempts(), Some(3));
    assert_eq!(got.maximum_record_age_in_seconds(), Some(3600));
    assert_eq!(got.tumbling_window_in_seconds(), Some(30));
    assert_eq!(
        got.function_response_types(),
        &[FunctionResponseType::ReportBatchItemFailures]
    );
    assert_eq!(
        got.destination_config()
            .and_then(|d| d.on_failure())
            .and_then(|f| f.destination()),
        Some("arn:aws:sns:us-east-1:123456789012:failures")
    );
    assert_eq!(
        got.state(),
        Some("Creating"),
        "not applied yet in this test"
    );
}
