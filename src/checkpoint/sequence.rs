//! Stream sequence numbers, compared as the decimal numbers they are.
//!
//! Kinesis sequence numbers run to 56 digits (past `u128`), DynamoDB's to about 40, and
//! emulators hand out short ones (`"7"`). Comparing them as strings would put `"10"` before
//! `"9"`; [`SequenceNumber`] orders by value.

use std::cmp::Ordering;
use std::fmt;

/// A shard-local sequence number: a non-empty string of ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub(crate) struct SequenceNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a sequence number (expected decimal digits)")]
pub(crate) struct InvalidSequenceNumber(pub String);

impl SequenceNumber {
    pub(crate) fn parse(text: impl Into<String>) -> Result<Self, InvalidSequenceNumber> {
        let text = text.into();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidSequenceNumber(text));
        }
        Ok(SequenceNumber(text))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    fn significant(&self) -> &str {
        let trimmed = self.0.trim_start_matches('0');
        if trimmed.is_empty() {
            "0"
        } else {
            trimmed
        }
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(x: &str) -> SequenceNumber {
        SequenceNumber::parse(x).unwrap()
    }

    #[test]
    fn compares_numerically() {
        assert!(s("10") > s("9"));
        assert!(s("0009") < s("10"));
        assert_eq!(s("007").cmp(&s("7")), Ordering::Equal);
        assert!(
            s("49590338271490256608559692538361571095921575989136588898")
                > s("49590338271490256608559692538361571095921575989136588897")
        );
        assert!(SequenceNumber::parse("").is_err());
        assert!(SequenceNumber::parse("12a").is_err());
    }

    proptest! {
        #[test]
        fn order_matches_u128(a in any::<u64>(), b in any::<u64>(), pad in 0usize..3) {
            let sa = SequenceNumber::parse(format!("{}{}", "0".repeat(pad), a)).unwrap();
            let sb = SequenceNumber::parse(b.to_string()).unwrap();
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
        }
    }
}
