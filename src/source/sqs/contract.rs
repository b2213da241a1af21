//! The SQS contract: what the source relies on from an [`SqsApi`], run against the in-memory
//! twin and, on a moto server, against the SDK client and the lean client
//! (`[aws] client = "lean"`). On moto the two clients must also read the same message
//! (system and message attributes, string and binary) into the same [`SqsMessage`].

use std::sync::Arc;
use std::time::Duration;

use super::client::{ReceiptRef, SqsApi, SqsError};
use super::twin::MemorySqs;
use crate::payload::sqs::SqsMessage;

/// Sends `bodies` to the queue the contract runs on.
type Send = Box<dyn Fn(Vec<String>) -> futures::future::BoxFuture<'static, ()>>;

/// Sends three messages and receives them, each once, with its attributes and MD5.
async fn receive_three(api: &dyn SqsApi, url: &str, send: Send) -> Vec<SqsMessage> {
    send(vec!["a".into(), "b \"quoted\" ü".into(), "c".into()]).await;
    let mut got: Vec<SqsMessage> = Vec::new();
    for _ in 0..5 {
        got.extend(
            api.receive(url, 10 - got.len(), Duration::from_secs(1))
                .await
                .unwrap(),
        );
        if got.len() == 3 {
            break;
        }
    }
    let mut bodies: Vec<&str> = got.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["a", "b \"quoted\" ü", "c"]);
    for m in &got {
        assert!(
            !m.message_id.is_empty() && !m.receipt_handle.is_empty(),
            "{m:?}"
        );
        assert_eq!(m.attribute("ApproximateReceiveCount"), Some("1"), "{m:?}");
        assert!(m.attribute("SentTimestamp").is_some(), "{m:?}");
        let md5 = format!("{:x}", <md5::Md5 as md5::Digest>::digest(m.body.as_bytes()));
        assert_eq!(m.md5_of_body.as_deref(), Some(md5.as_str()));
    }
    got
}

async fn contract(api: Arc<dyn SqsApi>, name: &str, send: Send) {
    let url = api.queue_url(name, "").await.unwrap();
    let missing = api.queue_url("no-such-queue", "").await.unwrap_err();
    assert!(matches!(missing, SqsError::QueueMissing(_)), "{missing:?}");

    let empty = api.receive(&url, 10, Duration::ZERO).await.unwrap();
    assert!(empty.is_empty(), "{empty:?}");

    let got = receive_three(api.as_ref(), &url, send).await;
    // In flight: nothing more to receive.
    assert!(api
        .receive(&url, 10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());

    // The last entry's receipt is stale; its failure keeps its position.
    let entries = [
        ReceiptRef {
            receipt_handle: &got[0].receipt_handle,
        },
        ReceiptRef {
            receipt_handle: &got[1].receipt_handle,
        },
        ReceiptRef {
            receipt_handle: "stale-receipt",
        },
    ];
    let failed = api.delete(&url, &entries).await.unwrap();
    assert_eq!(
        failed.iter().map(|f| f.index).collect::<Vec<_>>(),
        [2],
        "{failed:?}"
    );
    assert!(!failed[0].code.is_empty());

    // Released at once, the third message comes back, received a second time.
    let third = [(
        ReceiptRef {
            receipt_handle: &got[2].receipt_handle,
        },
        Duration::ZERO,
    )];
    assert!(api
        .change_visibility(&url, &third)
        .await
        .unwrap()
        .is_empty());
    let again = api.receive(&url, 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].message_id, got[2].message_id);
    assert_eq!(again[0].attribute("ApproximateReceiveCount"), Some("2"));

    let gone = format!("{}-deleted", url);
    let e = api.receive(&gone, 10, Duration::ZERO).await.unwrap_err();
    assert!(matches!(e, SqsError::QueueMissing(_)), "{e:?}");
}

#[tokio::test]
async fn the_twin_keeps_the_contract() {
    let twin = Arc::new(MemorySqs::default());
    twin.create_queue("orders", Duration::from_secs(30));
    let sender = Arc::clone(&twin);
    let send: Send = Box::new(move |bodies| {
        for b in bodies {
            sender.send("orders", &b, None);
        }
        Box::pin(async {})
    });
    contract(twin, "orders", send).await;
}

mod on_moto {
    use super::*;
    use crate::aws::moto::{context, moto};
    use crate::aws::Service;
    use crate::config::AwsClient;

    fn sender(sqs: aws_sdk_sqs::Client, url: String) -> Send {
        Box::new(move |bodies| {
            let (sqs, url) = (sqs.clone(), url.clone());
            Box::pin(async move {
                for b in bodies {
                    sqs.send_message()
                        .queue_url(&url)
                        .message_body(b)
                        .send()
                        .await
                        .unwrap();
                }
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_clients_keep_the_contract() {
        let moto = moto();
        let sdk = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
        for (name, client) in [
            ("sdk-client", AwsClient::Sdk),
            ("lean-client", AwsClient::Lean),
        ] {
            let url = sdk
                .create_queue()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let api = crate::source::sqs::sqs_api(&context(&moto.endpoint, client).await)
                .await
                .unwrap();
            contract(api, name, sender(sdk.clone(), url)).await;
        }
    }

    /// One message with every kind of attribute, received by each client in turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_clients_read_a_message_alike() {
        let moto = moto();
        let sdk = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
        let created = sdk.create_queue().queue_name("alike").send().await.unwrap();
        let url = created.queue_url.unwrap();
        use aws_sdk_sqs::types::MessageAttributeValue;
        let attribute = |t: &str| MessageAttributeValue::builder().data_type(t);
        sdk.send_message()
            .queue_url(&url)
            .message_body("{\"order\":1}")
            .message_attributes(
                "tenant",
                attribute("String").string_value("acme").build().unwrap(),
            )
            .message_attributes(
                "qty",
                attribute("Number").string_value("3").build().unwrap(),
            )
            .message_attributes(
                "sig",
                attribute("Binary")
                    .binary_value(aws_sdk_sqs::primitives::Blob::new(vec![
                        0xde, 0xad, 0, 0xff,
                    ]))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let mut read = Vec::new();
        for client in [AwsClient::Sdk, AwsClient::Lean] {
            let api = crate::source::sqs::sqs_api(&context(&moto.endpoint, client).await)
                .await
                .unwrap();
            let mut m = api.receive(&url, 10, Duration::from_secs(1)).await.unwrap();
            assert_eq!(m.len(), 1, "{client:?}: {m:?}");
            let mut m = m.remove(0);
            let release = [(
                ReceiptRef {
                    receipt_handle: &m.receipt_handle,
                },
                Duration::ZERO,
            )];
            api.change_visibility(&url, &release).await.unwrap();
            // What differs between two receives of one message.
            m.receipt_handle.clear();
            m.attributes.retain(|(k, _)| {
                k != "ApproximateReceiveCount" && k != "ApproximateFirstReceiveTimestamp"
            });
            m.message_attributes.sort_by(|a, b| a.0.cmp(&b.0));
            read.push(m);
        }
        assert_eq!(read[0].message_attributes.len(), 3, "{:?}", read[0]);
        assert!(read[0].md5_of_message_attributes.is_some());
        assert_eq!(read[0], read[1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lean_client_names_an_unreachable_endpoint_as_transient() {
        // A port nothing listens on: the call fails fast, and is retried by the source.
        let port = crate::aws::moto::free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let ctx = context(&endpoint, AwsClient::Lean).await;
        assert_eq!(
            ctx.endpoint(Service::Sqs).as_deref(),
            Some(endpoint.as_str())
        );
        let api = crate::source::sqs::sqs_api(&ctx).await.unwrap();
        let e = api
            .receive(&format!("{endpoint}/123456789012/q"), 10, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SqsError::Transient(m) if m.contains("ReceiveMessage")),
            "{e:?}"
        );
    }
}
