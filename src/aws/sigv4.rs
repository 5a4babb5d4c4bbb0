//! AWS Signature Version 4 verification (AWS General Reference, "Signature Version 4 signing process"): the
//! `Authorization` header form and the presigned query form, the canonical request (method, URI, sorted query,
//! signed headers, payload hash: `x-amz-content-sha256` as sent, `UNSIGNED-PAYLOAD` included, or the body's
//! SHA-256), the string to sign, the derived signing key, the clock skew of `X-Amz-Date` and the expiry of a
//! presigned URL. Which key signs comes from [`Keys`]: the configured ones, or (with none configured) any key
//! from a loopback client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::AwsError;

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded (SigV4's UriEncode).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// As [`UNRESERVED`], keeping `/` (the canonical URI).
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The keys the AWS endpoint accepts.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Access key id to secret. Empty: local-development mode.
    secrets: HashMap<String, String>,
    /// Largest allowed distance between `X-Amz-Date` and the clock, in seconds.
    skew_secs: u64,
}

/// Who signed a request, and for which region and service (from the credential scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub access_key: String,
    pub region: String,
    pub service: String,
}

/// What verification needs of a request.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The raw query string (without `?`).
    pub query: &'a str,
    /// Header names in lower case with their values.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub peer: IpAddr,
}

/// The parts of a signature, from the header or the query.
struct Parts {
    access_key: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    /// Presigned: seconds the URL is valid for.
    expires: Option<u64>,
}

impl Keys {
    /// Keys from the configuration (`(access key id, secret)` pairs).
    pub fn new(keys: impl IntoIterator<Item = (String, String)>, skew_secs: u64) -> Self {
        Self {
            secrets: keys.into_iter().collect(),
            skew_secs,
        }
    }

    /// Verifies the request's signature. `Ok(None)`: unsigned, allowed in local-development mode.
    pub fn verify(&self, req: &SignedRequest<'_>) -> Result<Option<Signer>, AwsError> {
        let local = self.secrets.is_empty();
        if local && !req.peer.is_loopback() {
            return Err(AwsError::invalid_token(
                "no AWS keys are configured: only loopback clients are accepted",
            ));
        }
        let Some(parts) = parts_of(req)? else {
            return if local {
                Ok(None)
            } else {
                Err(AwsError::missing_token())
            };
        };
        let signer = Signer {
            access_key: parts.access_key.clone(),
            region: parts.region.clone(),
            service: parts.service.clone(),
        };
        if local {
            return Ok(Some(signer)); // any key, any signature: like guest on loopback
        }
        let Some(secret) = self.secrets.get(&parts.access_key) else {
            return Err(AwsError::invalid_token(
                "The security token included in the request is invalid.",
            ));
        };
        self.check_time(&parts)?;
        let payload_hashes = payload_hashes(req, parts.expires.is_some());
        let good = payload_hashes.iter().any(|hash| {
            signature_of(req, &parts, secret, hash)
                .as_bytes()
                .ct_eq(parts.signature.as_bytes())
                .into()
        });
        if good {
            Ok(Some(signer))
        } else {
            Err(AwsError::signature_mismatch(
                "The request signature we calculated does not match the signature you provided. Check your \
                 AWS Secret Access Key and signing method. Consult the service documentation for details.",
            ))
        }
    }

    /// The request is within the clock skew (header form) or before its expiry (presigned form).
    fn check_time(&self, parts: &Parts) -> Result<(), AwsError> {
        let signed_at = parse_amz_date(&parts.amz_date)
            .ok_or_else(|| AwsError::incomplete_signature("X-Amz-Date is not a valid date"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let late = match parts.expires {
            Some(expires) => now > signed_at.saturating_add(expires),
            None => now.abs_diff(signed_at) > self.skew_secs,
        };
        let early = parts.expires.is_some() && signed_at > now.saturating_add(self.skew_secs);
        if late || early {
            return Err(AwsError::signature_mismatch(&format!(
                "Signature expired: {} is now earlier than {} ({} - {} min.)",
                parts.amz_date,
                format_amz_date(now.saturating_sub(self.skew_secs)),
                format_amz_date(now),
                self.skew_secs / 60
            )));
        }
        Ok(())
    }
}

/// The signature parts from the `Authorization` header, or from the query of a presigned URL.
fn parts_of(req: &SignedRequest<'_>) -> Result<Option<Parts>, AwsError> {
    if let Some(auth) = header(req.headers, "authorization") {
        return header_parts(req, auth).map(Some);
    }
    let query = query_pairs(req.query);
    if query.iter().any(|(k, _)| k == "X-Amz-Signature") {
        return query_parts(&query).map(Some);
    }
    Ok(None)
}

fn header_parts(req: &SignedRequest<'_>, auth: &str) -> Result<Parts, AwsError> {
    let rest = auth.strip_prefix(ALGORITHM).ok_or_else(|| {
        AwsError::incomplete_signature("Authorization header is not AWS4-HMAC-SHA256")
    })?;
    let mut fields = HashMap::new();
    for field in rest.split(',') {
        if let Some((k, v)) = field.trim().split_once('=') {
            fields.insert(k.trim(), v.trim());
        }
    }
    let get = |name: &str| {
        fields.get(name).copied().ok_or_else(|| {
            AwsError::incomplete_signature(&format!(
                "Authorization header requires '{name}' parameter."
            ))
        })
    };
    let amz_date = header(req.headers, "x-amz-date")
        .ok_or_else(|| {
            AwsError::incomplete_signature(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        })?
        .to_owned();
    build_parts(
        get("Credential")?,
        get("SignedHeaders")?,
        get("Signature")?,
        amz_date,
        None,
    )
}

fn query_parts(query: &[(String, String)]) -> Result<Parts, AwsError> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                AwsError::incomplete_signature(&format!(
                    "presigned URL requires '{name}' parameter."
                ))
            })
    };
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(AwsError::incomplete_signature(
            "X-Amz-Algorithm is not AWS4-HMAC-SHA256",
        ));
    }
    let expires = get("X-Amz-Expires")?
        .parse()
        .map_err(|_| AwsError::incomplete_signature("X-Amz-Expires is not a number"))?;
    build_parts(
        get("X-Amz-Credential")?,
        get("X-Amz-SignedHeaders")?,
        get("X-Amz-Signature")?,
        get("X-Amz-Date")?.to_owned(),
        Some(expires),
    )
}

fn build_parts(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz_date: String,
    expires: Option<u64>,
) -> Result<Parts, AwsError> {
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(AwsError::incomplete_signature(&format!(
            "Credential should be scoped to a valid region, not '{credential}'."
        )));
    };
    Ok(Parts {
        access_key: access_key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed_headers
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect(),
        signature: signature.to_ascii_lowercase(),
        amz_date,
        expires,
    })
}

/// The payload hashes the signer may have used: the one it declared, else the body's (and, presigned,
/// `UNSIGNED-PAYLOAD`).
fn payload_hashes(req: &SignedRequest<'_>, presigned: bool) -> Vec<String> {
    if let Some(declared) = header(req.headers, "x-amz-content-sha256") {
        return vec![declared.to_owned()];
    }
    let body = hex::encode(Sha256::digest(req.body));
    if presigned {
        vec![UNSIGNED_PAYLOAD.to_owned(), body]
    } else {
        vec![body]
    }
}

/// The hex signature of `req` as `parts` describe it, with `secret` and `payload_hash`.
fn signature_of(
    req: &SignedRequest<'_>,
    parts: &Parts,
    secret: &str,
    payload_hash: &str,
) -> String {
    let canonical = canonical_request(req, parts, payload_hash);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        parts.date, parts.region, parts.service
    );
    let to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        parts.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), parts.date.as_bytes());
    for part in [
        parts.region.as_str(),
        parts.service.as_str(),
        "aws4_request",
    ] {
        key = hmac(&key, part.as_bytes());
    }
    hex::encode(hmac(&key, to_sign.as_bytes()))
}

fn canonical_request(req: &SignedRequest<'_>, parts: &Parts, payload_hash: &str) -> String {
    let path = if req.path.is_empty() { "/" } else { req.path };
    let uri = utf8_percent_encode(path, PATH).to_string();
    let mut query: Vec<(String, String)> = query_pairs(req.query)
        .into_iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (encode(&k), encode(&v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let headers: String = parts
        .signed_headers
        .iter()
        .map(|name| format!("{name}:{}\n", canonical_header_value(req.headers, name)))
        .collect();
    format!(
        "{}\n{uri}\n{query}\n{headers}\n{}\n{payload_hash}",
        req.method,
        parts.signed_headers.join(";")
    )
}

/// Every value of header `name`, trimmed, inner runs of spaces collapsed, joined with commas.
fn canonical_header_value(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(",")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A query string's pairs, percent-decoded (`+` is a space, as in forms).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The ISO 8601 basic date-time SigV4 uses (`20150830T123600Z`).
const AMZ_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// Seconds since the epoch of an ISO 8601 basic date-time (`20150830T123600Z`).
fn parse_amz_date(s: &str) -> Option<u64> {
    let at = time::PrimitiveDateTime::parse(s, AMZ_DATE).ok()?;
    u64::try_from(at.assume_utc().unix_timestamp()).ok()
}

/// The ISO 8601 basic form of `secs` since the epoch.
pub fn format_amz_date(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(AMZ_DATE).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the AWS General Reference ("Examples of the complete Signature Version 4 signing
    /// process", IAM ListUsers): its canonical request and signature.
    #[test]
    fn the_aws_documentation_example_verifies() {
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
            ("host".to_owned(), "iam.amazonaws.com".to_owned()),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            body: b"",
            peer: IpAddr::from([10, 0, 0, 1]),
        };
        let parts = build_parts(
            "AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request",
            "content-type;host;x-amz-date",
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            "20150830T123600Z".to_owned(),
            None,
        )
        .expect("parts");
        let body_hash = hex::encode(Sha256::digest(b""));
        let sig = signature_of(
            &req,
            &parts,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &body_hash,
        );
        assert_eq!(sig, parts.signature);
    }

    #[test]
    fn amz_dates_round_trip() {
        let secs = parse_amz_date("20150830T123600Z").expect("date");
        assert_eq!(secs, 1_440_938_160);
        assert_eq!(format_amz_date(secs), "20150830T123600Z");
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }

    #[test]
    fn any_key_is_accepted_from_loopback_only_when_none_are_configured() {
        let keys = Keys::new([], 900);
        let req = |peer: IpAddr| SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &[],
            body: b"",
            peer,
        };
        assert_eq!(
            keys.verify(&req(IpAddr::from([127, 0, 0, 1]))).ok(),
            Some(None)
        );
        let refused = keys
            .verify(&req(IpAddr::from([10, 0, 0, 1])))
            .expect_err("refused");
        assert_eq!(refused.code, "InvalidClientTokenId");
    }
}
