//! SigV4 signing of the bench's AWS JSON 1.0 requests (AWS General Reference, "Signature Version 4 signing
//! process"): POST to `/` with no query, signed headers `content-type;host;x-amz-date;x-amz-target`, payload
//! SHA-256. The signing key is derived once per day.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const SERVICE: &str = "sqs";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// Signs requests with one key for one region.
pub struct Signer {
    access_key: String,
    secret: String,
    region: String,
}

impl Signer {
    pub fn new(access_key: &str, secret: &str, region: &str) -> Self {
        Self {
            access_key: access_key.to_owned(),
            secret: secret.to_owned(),
            region: region.to_owned(),
        }
    }

    /// The headers of a signed POST to `host` with `X-Amz-Target: target` and `body`.
    pub fn headers(&self, host: &str, target: &str, body: &[u8]) -> Vec<(String, String)> {
        let amz_date = amz_date_now();
        let date = &amz_date[..8];
        let payload = hex::encode(Sha256::digest(body));
        let signed = "content-type;host;x-amz-date;x-amz-target";
        let canonical = format!(
            "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{host}\nx-amz-date:{amz_date}\nx-amz-target:{target}\n\n{signed}\n{payload}"
        );
        let scope = format!("{date}/{}/{SERVICE}/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret).as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), SERVICE, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        vec![
            ("Host".into(), host.into()),
            ("Content-Type".into(), CONTENT_TYPE.into()),
            ("X-Amz-Date".into(), amz_date.clone()),
            ("X-Amz-Target".into(), target.into()),
            (
                "Authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                    self.access_key
                ),
            ),
        ]
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Now as ISO 8601 basic (`20150830T123600Z`).
fn amz_date_now() -> String {
    const AMZ_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(AMZ_DATE)
        .unwrap_or_default()
}
