//! SigV4 for the lean client's requests, the same signature `aws-sigv4` computes (the tests
//! below compare the two on random requests), without its per-request work that esmd does not
//! need: the day's signing key is derived once a day instead of by four HMACs per request,
//! and the canonical request and string to sign are written into one buffer instead of a
//! dozen strings. What is signed is what the SDK signs with its default settings for these
//! services: every header sent (host, content-length, content-type, the operation's
//! headers), `x-amz-date`, and `x-amz-security-token` with temporary credentials; the path
//! encoded a second time (`%` as `%25`); the payload's SHA-256.
//!
//! The paths signed are the lean client's own (`/`, Lambda's invocation path with its name
//! percent-encoded): they have no `.` or `..` segments, which SigV4 would normalise away.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use chrono::{DateTime, Datelike, Timelike, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// What the request carries besides its own headers: `x-amz-date`, and `authorization`.
pub(super) struct Signature {
    pub(super) amz_date: String,
    pub(super) authorization: String,
}

/// One service's signer in one region.
pub(super) struct Signer {
    region: String,
    service: &'static str,
    day_key: Mutex<Option<DayKey>>,
}

/// The signing key of one day for one secret (region and service are the signer's).
struct DayKey {
    date: [u8; 8],
    secret: String,
    key: [u8; 32],
}

impl Signer {
    pub(super) fn new(region: &str, service: &'static str) -> Self {
        Signer {
            region: region.to_string(),
            service,
            day_key: Mutex::new(None),
        }
    }

    /// Signs a `POST` of `body` to `path` (percent-encoded once) on `host`, with `headers`
    /// (lower-case names; `host`, `x-amz-date` and the session token are added here).
    pub(super) fn sign(
        &self,
        credentials: &Credentials,
        time: SystemTime,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Signature> {
        let amz_date = amz_date(DateTime::<Utc>::from(time));
        let date = &amz_date[..8];
        let mut signed: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 3);
        signed.extend_from_slice(headers);
        signed.push(("host", host));
        signed.push(("x-amz-date", &amz_date));
        if let Some(token) = credentials.session_token() {
            signed.push(("x-amz-security-token", token));
        }
        signed.sort_unstable_by(|a, b| a.0.cmp(b.0));

        let mut text = String::with_capacity(512);
        text.push_str("POST\n");
        encode_path(&mut text, path);
        text.push_str("\n\n");
        for (name, value) in &signed {
            text.push_str(name);
            text.push(':');
            push_trimmed(&mut text, value);
            text.push('\n');
        }
        text.push('\n');
        let names_at = text.len();
        for (i, (name, _)) in signed.iter().enumerate() {
            if i > 0 {
                text.push(';');
            }
            text.push_str(name);
        }
        let names_end = text.len();
        text.push('\n');
        push_hex(&mut text, &Sha256::digest(body));
        let request_hash = Sha256::digest(text.as_bytes());

        // The string to sign goes after the canonical request in the same buffer; the
        // signed header names are kept in it for the authorization header.
        let to_sign_at = text.len();
        let _ = write!(
            text,
            "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{}/{}/aws4_request\n",
            self.region, self.service
        );
        push_hex(&mut text, &request_hash);
        let key = self.day_key(date, credentials.secret_access_key())?;
        let signature = hmac(&key, &text.as_bytes()[to_sign_at..])?;

        let mut authorization = String::with_capacity(256);
        let _ = write!(
            authorization,
            "AWS4-HMAC-SHA256 Credential={}/{date}/{}/{}/aws4_request, SignedHeaders={}, Signature=",
            credentials.access_key_id(),
            self.region,
            self.service,
            &text[names_at..names_end],
        );
        push_hex(&mut authorization, &signature);
        Some(Signature {
            amz_date,
            authorization,
        })
    }

    /// The day's key, derived again only when the day or the secret changes.
    fn day_key(&self, date: &str, secret: &str) -> Option<[u8; 32]> {
        let mut cached = self.day_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = cached
            .as_ref()
            .filter(|k| k.date == date.as_bytes() && k.secret == secret)
        {
            return Some(k.key);
        }
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
        for part in [self.region.as_str(), self.service, "aws4_request"] {
            key = hmac(&key, part.as_bytes())?;
        }
        let mut day = [0u8; 8];
        day.copy_from_slice(&date.as_bytes()[..8]);
        *cached = Some(DayKey {
            date: day,
            secret: secret.to_string(),
            key,
        });
        Some(key)
    }
}

/// HMAC-SHA256 (it takes a key of any length: `None` does not happen).
fn hmac(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().into())
}

/// `20150830T123600Z`.
fn amz_date(t: DateTime<Utc>) -> String {
    let mut s = String::with_capacity(16);
    let _ = write!(
        s,
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    s
}

/// The path encoded again: everything but unreserved characters and `/` as `%XX`, so the `%`
/// of an encoded character becomes `%25`.
fn encode_path(out: &mut String, path: &str) {
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            push_hex_byte(out, b, b"0123456789ABCDEF", "%");
        }
    }
}

/// A header value without leading or trailing spaces, inner runs of spaces as one.
fn push_trimmed(out: &mut String, value: &str) {
    let mut space = false;
    for c in value.trim_matches(' ').chars() {
        if c == ' ' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        push_hex_byte(out, b, b"0123456789abcdef", "");
    }
}

fn push_hex_byte(out: &mut String, b: u8, digits: &[u8; 16], prefix: &str) {
    out.push_str(prefix);
    out.push(digits[usize::from(b >> 4)] as char);
    out.push(digits[usize::from(b & 0xf)] as char);
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
