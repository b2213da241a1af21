//! The Lambda event-source-mapping API end to end: the real esmd binary with `[lambda_api]`,
//! moto for the sources, a test-owned function, driven by aws-cli and by `aws-sdk-lambda`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The `[lambda_api]` section on a free port, and the port.
fn api_section() -> (String, u16) {
    let port = free_port();
    (
        format!("[lambda_api]\nlisten = \"127.0.0.1:{port}\"\n"),
        port,
    )
}

/// Runs `aws lambda <args> --endpoint-url <esmd>`; (exit code, stdout as JSON or Null, stderr).
fn aws_cli(port: u16, args: &[&str]) -> (i32, Value, String) {
    assert!(
        wait_listening(port, Duration::from_secs(30)),
        "the Lambda API is not listening on {port}"
    );
    let aws = std::env::var("AWS_CLI").unwrap_or_else(|_| "aws".into());
    let out = Command::new(&aws)
        .arg("lambda")
        .args(args)
        .args([
            "--endpoint-url",
            &format!("http://127.0.0.1:{port}"),
            "--output",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{aws}` (aws-cli; scripts/test.sh installs it with pip): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(port: u16, args: &[&str]) -> Value {
    let (code, json, stderr) = aws_cli(port, args);
    assert_eq!(code, 0, "aws lambda {args:?}: {stderr}");
    json
}

fn state_of(port: u16, uuid: &str) -> String {
    cli_ok(port, &["get-event-source-mapping", "--uuid", uuid])["State"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_state(esmd: &Esmd, port: u16, uuid: &str, want: &str) {
    esmd.wait_for(Duration::from_secs(30), &format!("state {want}"), || {
        state_of(port, uuid) == want
    });
}

fn bodies_from(function: &FunctionServer, queue: &Queue) -> Vec<String> {
    function
        .calls()
        .iter()
        .flat_map(|c| {
            c.records()
                .iter()
                .filter(|r| r["eventSourceARN"] == queue.arn.as_str())
                .map(|r| r["body"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_creates_updates_disables_enables_and_deletes_an_sqs_mapping() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "api-orders", &[("VisibilityTimeout", "30")]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let (api, port) = api_section();
    let esmd = Esmd::start(&moto, &function, &api);
    let pid = esmd.pid();

    let created = cli_ok(
        port,
        &[
            "create-event-source-mapping",
            "--function-name",
            "api-fn",
            "--event-source-arn",
            &queue.arn,
            "--batch-size",
            "2",
        ],
    );
    assert_eq!(created["State"], "Creating");
    assert_eq!(created["BatchSize"], 2);
    let uuid = created["UUID"].as_str().unwrap().to_string();
    wait_state(&esmd, port, &uuid, "Enabled");

    for i in 0..4 {
        queue.send(&format!("a{i}")).await;
    }
    esmd.wait_for(Duration::from_secs(30), "4 messages", || {
        bodies_from(&function, &queue).len() >= 4
    });
    assert!(function.calls().iter().all(|c| c.records().len() <= 2));

    // BatchSize 10 with a 1 s window: ten messages sent together arrive in larger batches,
    // without a restart.
    let updated = cli_ok(
        port,
        &[
            "update-event-source-mapping",
            "--uuid",
            &uuid,
            "--batch-size",
            "10",
            "--maximum-batching-window-in-seconds",
            "1",
        ],
    );
    assert_eq!(updated["State"], "Updating");
    wait_state(&esmd, port, &uuid, "Enabled");
    let before = function.calls().len();
    for i in 0..10 {
        queue.send(&format!("b{i}")).await;
    }
    esmd.wait_for(Duration::from_secs(30), "the b messages", || {
        bodies_from(&function, &queue).len() >= 14
    });
    let largest = function.calls()[before..]
        .iter()
        .map(|c| c.records().len())
        .max()
        .unwrap();
    assert!(
        largest > 2,
        "the new BatchSize applies live (largest batch {largest})"
    );
    assert_eq!(esmd.pid(), pid, "no restart");

    // Disabled: delivery stops and the messages stay in the queue.
    let disabled = cli_ok(
        port,
        &[
            "update-event-source-mapping",
            "--uuid",
            &uuid,
            "--no-enabled",
        ],
    );
    assert_eq!(disabled["State"], "Disabling");
    wait_state(&esmd, port, &uuid, "Disabled");
    let delivered = bodies_from(&function, &queue).len();
    for i in 0..3 {
        queue.send(&format!("c{i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        bodies_from(&function, &queue).len(),
        delivered,
        "nothing delivered while disabled"
    );
    assert_eq!(queue.counts().await.0, 3, "the messages wait in the queue");

    let enabled = cli_ok(
        port,
        &["update-event-source-mapping", "--uuid", &uuid, "--enabled"],
    );
    assert_eq!(enabled["State"], "Enabling");
    wait_state(&esmd, port, &uuid, "Enabled");
    esmd.wait_for(Duration::from_secs(30), "the c messages", || {
        bodies_from(&function, &queue).len() >= delivered + 3
    });

    let listed = cli_ok(
        port,
        &[
            "list-event-source-mappings",
            "--event-source-arn",
            &queue.arn,
        ],
    );
    assert_eq!(listed["EventSourceMappings"].as_array().unwrap().len(), 1);

    let deleted = cli_ok(port, &["delete-event-source-mapping", "--uuid", &uuid]);
    assert_eq!(deleted["State"], "Deleting");
    esmd.wait_for(Duration::from_secs(30), "the mapping to go", || {
        aws_cli(port, &["get-event-source-mapping", "--uuid", &uuid]).0 != 0
    });
    let (code, _, stderr) = aws_cli(port, &["get-event-source-mapping", "--uuid", &uuid]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");
    let after = bodies_from(&function, &queue).len();
    queue.send("after-delete").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bodies_from(&function, &queue).len(), after);

    let (code, _, stderr) = aws_cli(
        port,
        &[
            "create-event-source-mapping",
            "--function-name",
            "api-fn",
            "--event-source-arn",
            &queue.arn,
            "--batch-size",
            "20",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("InvalidParameterValueException")
            && stderr.contains("MaximumBatchingWindowInSeconds"),
        "{stderr}"
    );
}

async fn lambda_client(port: u16) -> aws_sdk_lambda::Client {
    assert!(
        wait_listening(port, Duration::from_secs(30)),
        "the Lambda API is not listening on {port}"
    );
    let config = sdk_config(&format!("http://127.0.0.1:{port}")).await;
    aws_sdk_lambda::Client::new(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_kinesis_mapping_survives_a_restart_and_resumes_from_its_checkpoint() {
    let moto = Moto::start();
    let kinesis = kinesis(&moto.endpoint).await;
    create_stream(&kinesis, "api-clicks", 1).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let (api, port) = api_section();
    let file_mapping = "[[mapping]]\nuuid = \"9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a\"\n\
        event_source_arn = \"arn:aws:sqs:us-east-1:123456789012:file-queue\"\nfunction_name = \"file-fn\"\n";
    let mut esmd = Esmd::start(&moto, &function, &format!("{api}{file_mapping}"));
    let lambda = lambda_client(port).await;

    let created = lambda
        .create_event_source_mapping()
        .event_source_arn(stream_arn("api-clicks"))
        .function_name("clicks-fn")
        .starting_position(aws_sdk_lambda::types::EventSourcePosition::TrimHorizon)
        .batch_size(10)
        .send()
        .await
        .unwrap();
    let uuid = created.uuid().unwrap().to_string();
    for i in 0..5 {
        put(&kinesis, "api-clicks", "k", &format!("r{i}")).await;
    }
    let data = |f: &FunctionServer| -> Vec<String> {
        f.calls()
            .iter()
            .flat_map(|c| {
                c.records()
                    .iter()
                    .map(|r| {
                        r["kinesis"]["data"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    esmd.wait_for(Duration::from_secs(30), "5 records", || {
        data(&function).len() >= 5
    });
    esmd.wait_until_idle(Duration::from_secs(30));

    // The file's mapping is listed, and refused to the API.
    let all = lambda.list_event_source_mappings().send().await.unwrap();
    assert_eq!(all.event_source_mappings().len(), 2);
    let refused = lambda
        .delete_event_source_mapping()
        .uuid("9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a")
        .send()
        .await
        .unwrap_err();
    let message = format!("{:?}", refused.as_service_error().unwrap());
    assert!(
        message.contains("config file") && message.contains("SIGHUP"),
        "{message}"
    );

    let status = esmd.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    esmd.restart();
    let lambda = lambda_client(port).await;
    let got = lambda
        .get_event_source_mapping()
        .uuid(&uuid)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:clicks-fn")
    );
    assert_eq!(got.batch_size(), Some(10));
    for i in 5..8 {
        put(&kinesis, "api-clicks", "k", &format!("r{i}")).await;
    }
    esmd.wait_for(Duration::from_secs(30), "8 records", || {
        data(&function).len() >= 8
    });
    esmd.wait_until_idle(Duration::from_secs(30));
    let expected: Vec<String> = (0..8)
        .map(|i| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("r{i}"))
        })
        .collect();
    assert_eq!(
        data(&function),
        expected,
        "resumed from the checkpoint: nothing twice, nothing lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoke_sent_to_esmd_reaches_the_function_host() {
    let moto = Moto::start();
    let function = FunctionServer::start(|_, _| Reply::ok(r#"{"answer":42}"#));
    let (api, port) = api_section();
    let _esmd = Esmd::start(&moto, &function, &api);
    let lambda = lambda_client(port).await;
    let out = lambda
        .invoke()
        .function_name("proxied")
        .invocation_type(aws_sdk_lambda::types::InvocationType::RequestResponse)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            r#"{"Records":[{"body":"hello"}]}"#,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(out.payload().unwrap().as_ref(), br#"{"answer":42}"#);
    let calls = function.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function, "proxied");
    assert_eq!(calls[0].bodies(), vec!["hello"]);
}
