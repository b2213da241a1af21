//! The lean signer against `aws-sigv4` (the SDK's signer) with the SDK's default settings:
//! the same `x-amz-date` and `authorization` for any request the lean client can send.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use proptest::prelude::*;

use super::*;

struct Request<'a> {
    host: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

/// `aws-sigv4`'s signature of the request: (`x-amz-date`, `authorization`).
fn reference(
    credentials: &Credentials,
    time: SystemTime,
    region: &str,
    service: &str,
    request: &Request<'_>,
) -> (String, String) {
    let uri = format!("http://{}{}", request.host, request.path);
    let mut headers = vec![("host", request.host)];
    headers.extend_from_slice(request.headers);
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let header = |name: &str| {
        instructions
            .headers()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
            .unwrap()
    };
    (header("x-amz-date"), header("authorization"))
}

fn lean(
    signer: &Signer,
    credentials: &Credentials,
    time: SystemTime,
    r: &Request<'_>,
) -> (String, String) {
    let s = signer
        .sign(credentials, time, r.host, r.path, r.headers, r.body)
        .unwrap();
    (s.amz_date, s.authorization)
}

#[test]
fn the_reference_example_signs_alike() {
    // SQS's ReceiveMessage as the lean client sends it, with a session token.
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("token/with+chars=".into()),
        None,
        "test",
    );
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let body = br#"{"QueueUrl":"https://sqs.us-east-1.amazonaws.com/123456789012/q","MaxNumberOfMessages":10}"#;
    let length = body.len().to_string();
    let headers = [
        ("content-length", length.as_str()),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", "AmazonSQS.ReceiveMessage"),
    ];
    let request = Request {
        host: "sqs.us-east-1.amazonaws.com",
        path: "/",
        headers: &headers,
        body,
    };
    let signer = Signer::new("us-east-1", "sqs");
    let ours = lean(&signer, &credentials, time, &request);
    assert_eq!(ours.0, "20150830T123600Z");
    assert!(ours.1.starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sqs/aws4_request, \
         SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="
    ), "{}", ours.1);
    assert_eq!(
        ours,
        reference(&credentials, time, "us-east-1", "sqs", &request)
    );
}

#[test]
fn the_day_key_follows_the_day_and_the_secret() {
    let signer = Signer::new("eu-west-1", "lambda");
    let request = Request {
        host: "lambda.eu-west-1.amazonaws.com",
        path: "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Af/invocations",
        headers: &[("content-type", "application/octet-stream")],
        body: b"[]",
    };
    let day = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (secret, time) in [
        ("first", day),
        ("first", day + Duration::from_secs(60)),
        ("rotated", day + Duration::from_secs(120)),
        ("rotated", day + Duration::from_secs(86_400)),
        ("first", day + Duration::from_secs(86_400)),
    ] {
        let credentials = Credentials::new("AKID", secret, None, None, "test");
        assert_eq!(
            lean(&signer, &credentials, time, &request),
            reference(&credentials, time, "eu-west-1", "lambda", &request),
            "{secret} at {time:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any request of the lean client's shape: paths with encoded characters (signed encoded
    /// twice), header values with spaces to trim, any body, with and without a session token.
    #[test]
    fn any_request_signs_as_aws_sigv4_signs_it(
        key in "[A-Z0-9]{16,20}",
        secret in "[A-Za-z0-9/+]{40}",
        token in proptest::option::of("[A-Za-z0-9/+=]{1,300}"),
        seconds in 0u64..4_000_000_000,
        region in "(us-east-1|eu-west-3|ap-southeast-2|cn-north-1)",
        service in "(sqs|lambda|kinesis)",
        segments in proptest::collection::vec("([A-Za-z0-9._~$:-]|%[0-9A-F]{2}){1,24}", 0..4)
            .prop_filter("no dot segments", |s| s.iter().all(|x| x != "." && x != "..")),
        content_type in r"(application/x-amz-json-1\.0|application/x-amz-json-1\.1|application/octet-stream)",
        target in " {0,2}[A-Za-z_.]{1,30}( {1,3}[A-Za-z]{1,8}){0,2} {0,2}",
        body in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let credentials = Credentials::new(key, secret, token, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
        let path = format!("/{}", segments.join("/"));
        let length = body.len().to_string();
        let headers = [
            ("content-length", length.as_str()),
            ("content-type", content_type.as_str()),
            ("x-amz-target", target.as_str()),
        ];
        let request = Request { host: "127.0.0.1:4566", path: &path, headers: &headers, body: &body };
        let signer = Signer::new(&region, if service == "sqs" { "sqs" } else if service == "lambda" { "lambda" } else { "kinesis" });
        prop_assert_eq!(
            lean(&signer, &credentials, time, &request),
            reference(&credentials, time, &region, &service, &request)
        );
    }
}
