//! Failure handling: what becomes of records the function did not confirm. [`sqs`] decides
//! which messages of a batch to delete; [`stream`] is the stream retry / bisect / give-up
//! machine; [`destination`] builds and sends AWS's on-failure records. The action enum is in
//! [`crate::action`], the retry pacing in [`crate::retry`].

pub(crate) mod destination;
pub(crate) mod sqs;
pub(crate) mod stream;
