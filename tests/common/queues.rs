//! SQS queues in moto.

use super::*;

/// A queue in moto.
pub struct Queue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub arn: String,
    pub name: String,
}

pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

impl Queue {
    /// Creates a queue with the given attributes (e.g. `VisibilityTimeout`).
    pub async fn create(moto: &Moto, name: &str, attributes: &[(&str, &str)]) -> Queue {
        use aws_sdk_sqs::types::QueueAttributeName;
        let client = sqs_client(moto).await;
        let mut req = client.create_queue().queue_name(name);
        for (k, v) in attributes {
            req = req.attributes(QueueAttributeName::from(*k), *v);
        }
        let url = req
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("url");
        Queue {
            client,
            url,
            arn: queue_arn(name),
            name: name.into(),
        }
    }

    /// Creates `name` with a DLQ `name-dlq` and a redrive policy.
    pub async fn with_dlq(
        moto: &Moto,
        name: &str,
        visibility: u32,
        max_receive: u32,
    ) -> (Queue, Queue) {
        let dlq = Queue::create(moto, &format!("{name}-dlq"), &[]).await;
        let policy = serde_json::json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max_receive.to_string()}).to_string();
        let q = Queue::create(
            moto,
            name,
            &[
                ("VisibilityTimeout", &visibility.to_string()),
                ("RedrivePolicy", &policy),
            ],
        )
        .await;
        (q, dlq)
    }

    pub async fn send(&self, body: &str) -> String {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .expect("send")
            .message_id
            .expect("id")
    }

    pub async fn send_fifo(&self, body: &str, group: &str, dedup: &str) {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .expect("send fifo");
    }

    /// (visible, in flight) counts.
    pub async fn counts(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes");
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: A| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible),
        )
    }

    pub async fn is_empty(&self) -> bool {
        self.counts().await == (0, 0)
    }

    /// Receives (without deleting) whatever is visible now.
    pub async fn peek_bodies(&self) -> Vec<String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive");
        out.messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.body)
            .collect()
    }
}

/// An SNS topic named `topic` with an SQS queue `<topic>-inbox` subscribed to it with raw
/// delivery, so that what is published reads back as the queue's message bodies.
pub async fn sns_inbox(moto: &Moto, topic: &str) -> (String, Queue) {
    let sns = aws_sdk_sns::Client::new(&sdk_config(&moto.endpoint).await);
    let created = sns
        .create_topic()
        .name(topic)
        .send()
        .await
        .expect("create topic");
    let topic_arn = created.topic_arn().expect("topic arn").to_string();
    let inbox = Queue::create(moto, &format!("{topic}-inbox"), &[]).await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&inbox.arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    (topic_arn, inbox)
}
