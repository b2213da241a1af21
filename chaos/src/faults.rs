//! The faults the proxy injects, and how each service says "throttled" on the wire.

use serde::Serialize;

/// One backend esmd talks to; each gets its own proxy and its own throttling error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Service {
    Sqs,
    Kinesis,
    DynamoDbStreams,
    DynamoDb,
    Lambda,
}

impl Service {
    /// The suffix of `AWS_ENDPOINT_URL_<SERVICE>` that points esmd's SDK client at the proxy.
    pub fn env_suffix(self) -> &'static str {
        match self {
            Service::Sqs => "SQS",
            Service::Kinesis => "KINESIS",
            Service::DynamoDbStreams => "DYNAMODB_STREAMS",
            Service::DynamoDb => "DYNAMODB",
            Service::Lambda => "LAMBDA",
        }
    }

    /// The service's own throttling error: status, headers and body, as its protocol (botocore
    /// `sqs` and `dynamodb*` awsJson1_0, `kinesis` awsJson1_1, `lambda` restJson1) frames it.
    pub fn throttle(self) -> (u16, Vec<(&'static str, &'static str)>, &'static str) {
        match self {
            Service::Sqs => (
                400,
                vec![
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amzn-query-error", "RequestThrottled;Sender"),
                ],
                r#"{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Request is throttled."}"#,
            ),
            Service::Kinesis => (
                400,
                vec![("content-type", "application/x-amz-json-1.1")],
                r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard shardId-000000000000 in stream chaos under account 123456789012."}"#,
            ),
            Service::DynamoDbStreams => (
                400,
                vec![("content-type", "application/x-amz-json-1.0")],
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#LimitExceededException","message":"Rate exceeded"}"#,
            ),
            Service::DynamoDb => (
                400,
                vec![("content-type", "application/x-amz-json-1.0")],
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
            ),
            Service::Lambda => (
                429,
                vec![
                    ("content-type", "application/json"),
                    ("x-amzn-errortype", "TooManyRequestsException"),
                ],
                r#"{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}"#,
            ),
        }
    }

    /// A 5xx body in the service's framing.
    pub fn server_error(self, status: u16) -> String {
        let code = if status == 503 {
            "ServiceUnavailable"
        } else {
            "InternalFailure"
        };
        match self {
            Service::Lambda => format!(r#"{{"Type":"Service","message":"{code}"}}"#),
            _ => format!(r#"{{"__type":"{code}","message":"chaos: injected {status}"}}"#),
        }
    }
}

/// What the proxy does to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Fault {
    /// The connection is closed before the request reaches the backend.
    ResetBefore,
    /// The backend serves the request; the connection is closed before the answer is sent.
    ResetAfter,
    /// The backend serves the request; half of the answer's body is sent, then the connection
    /// is closed.
    CutBody,
    Status500,
    Status503,
    /// The service's own throttling error (see [`Service::throttle`]).
    Throttle,
    /// 50 to 500 ms before the request is forwarded.
    Latency,
    /// The request waits longer than the client's timeout, then the connection is closed.
    Stall,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::CutBody,
        Fault::Status500,
        Fault::Status503,
        Fault::Throttle,
        Fault::Latency,
        Fault::Stall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::ResetBefore => "reset_before_request",
            Fault::ResetAfter => "reset_after_request",
            Fault::CutBody => "response_cut_mid_body",
            Fault::Status500 => "http_500",
            Fault::Status503 => "http_503",
            Fault::Throttle => "throttle",
            Fault::Latency => "latency",
            Fault::Stall => "stall",
        }
    }

    /// Whether the backend has served the request when the client learns of the fault: its
    /// answer was lost, so a retry may repeat work (an Invoke that ran, a delete that happened).
    pub fn answer_lost(self) -> bool {
        matches!(self, Fault::ResetAfter | Fault::CutBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_throttle_body_is_json_with_a_code_esmd_classifies_as_throttling() {
        let known = [
            "RequestThrottled",
            "ProvisionedThroughputExceededException",
            "LimitExceededException",
            "ThrottlingException",
            "TooManyRequestsException",
        ];
        for s in [
            Service::Sqs,
            Service::Kinesis,
            Service::DynamoDbStreams,
            Service::DynamoDb,
            Service::Lambda,
        ] {
            let (status, headers, body) = s.throttle();
            assert!(status == 400 || status == 429, "{s:?}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            let code = v
                .get("__type")
                .and_then(|t| t.as_str())
                .map(|t| t.rsplit('#').next().unwrap().to_string())
                .or_else(|| {
                    headers
                        .iter()
                        .find(|(k, _)| *k == "x-amzn-errortype")
                        .map(|(_, v)| v.to_string())
                })
                .unwrap();
            assert!(known.contains(&code.as_str()), "{s:?}: {code}");
        }
    }

    #[test]
    fn only_faults_after_forwarding_lose_an_answer() {
        let lost: Vec<_> = Fault::ALL.into_iter().filter(|f| f.answer_lost()).collect();
        assert_eq!(lost, vec![Fault::ResetAfter, Fault::CutBody]);
    }
}
