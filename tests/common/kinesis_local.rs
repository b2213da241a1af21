//! kinesis-local (npm `kinesis-local`, the Kinesis engine LocalStack uses), started on free
//! loopback ports: unlike moto it ends closed shards with `ChildShards`, routes records to
//! children after a split, and implements enhanced fan-out (RegisterStreamConsumer,
//! SubscribeToShard). `scripts/test.sh` installs it under `.ci/node`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

pub struct KinesisLocal {
    child: Child,
    pub endpoint: String,
}

impl Drop for KinesisLocal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kinesis_local_dir() -> PathBuf {
    std::env::var_os("KINESIS_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/node/node_modules/kinesis-local")
        })
}

impl KinesisLocal {
    pub fn start() -> KinesisLocal {
        let dir = kinesis_local_dir();
        assert!(
            dir.join("main.js").exists(),
            "kinesis-local is not installed at {}; run ./scripts/test.sh (it installs it with npm)",
            dir.display()
        );
        let port = free_port();
        let tls = free_port();
        let mut child = Command::new("node")
            .arg("main.js")
            .current_dir(&dir)
            .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
            .env("SHARD_LIMIT", "50")
            .env("CREATE_STREAM_DURATION", "100ms")
            .env("UPDATE_SHARD_COUNT_DURATION", "100ms")
            .env("SPLIT_SHARD_DURATION", "100ms")
            .env("MERGE_SHARDS_DURATION", "100ms")
            .env("REGISTER_STREAM_CONSUMER_DURATION", "100ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kinesis-local (node)");
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..150 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return KinesisLocal { child, endpoint };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("kinesis-local did not start");
    }
}

pub async fn wait_active(client: &aws_sdk_kinesis::Client, name: &str) -> String {
    for _ in 0..100 {
        let d = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap();
        let s = d.stream_description_summary().unwrap();
        if s.stream_status().as_str() == "ACTIVE" {
            return s.stream_arn().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream not active");
}
