//! What the SQS and AWS tests share beside `tests/common`: an aws-sdk-sqs client pointed at a test broker
//! (static credentials, `endpoint_url`, behavior version latest, plain HTTP), and a raw HTTP/1.1 POST for the
//! requests SDKs never send (Query forms, malformed bodies, bad signatures).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The key pair tests configure when they want signatures checked.
pub const KEY_ID: &str = "AKIAFERRYMQTEST";
pub const SECRET: &str = "test-secret-key";

/// An SQS client for the broker's AWS listener, signing with `key` / `secret`.
pub fn sqs_client(addr: SocketAddr, key: &str, secret: &str) -> Client {
    sqs_client_in(addr, key, secret, "us-east-1")
}

/// As [`sqs_client`], signing for `region`.
pub fn sqs_client_in(addr: SocketAddr, key: &str, secret: &str, region: &'static str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{addr}"))
        .region(Region::new(region))
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

/// A client with any key (the broker has none configured: loopback accepts any).
pub fn any_client(addr: SocketAddr) -> Client {
    sqs_client(addr, "AKIDANY", "anything")
}

/// Creates queue `name` with `attrs` and returns its URL.
pub async fn create_queue(
    client: &Client,
    name: &str,
    attrs: &[(aws_sdk_sqs::types::QueueAttributeName, &str)],
) -> String {
    let mut req = client.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), *v);
    }
    req.send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url")
}

/// A plain ReceiveMessage (one message at most, no wait).
pub async fn receive(
    client: &Client,
    url: &str,
) -> aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput {
    client
        .receive_message()
        .queue_url(url)
        .send()
        .await
        .expect("receive")
}

/// A reply: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `POST path` with `headers` and `body` over a fresh connection.
pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawReply {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the AWS listener");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send head");
    // A peer that refuses early may close before the whole body is written.
    let _ = stream.write_all(body).await;
    read_reply(&mut stream).await
}

/// A Query-protocol form post (`Action=...`).
pub async fn query(addr: SocketAddr, form: &str) -> RawReply {
    post(
        addr,
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await
}

/// An AWS JSON 1.0 post with `X-Amz-Target: AmazonSQS.<action>`.
pub async fn json(addr: SocketAddr, action: &str, body: &str) -> RawReply {
    let target = format!("AmazonSQS.{action}");
    post(
        addr,
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.0"),
            ("X-Amz-Target", &target),
        ],
        body.as_bytes(),
    )
    .await
}

async fn read_reply(stream: &mut tokio::net::TcpStream) -> RawReply {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("HTTP reply in time")
        .expect("read reply");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP reply has a head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawReply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// SigV4 by hand, for what the SDK will not send (a skewed clock, a presigned URL): the headers of a signed
/// AWS JSON 1.0 POST to `/` with `body`, signed at `amz_date` (`20150830T123600Z`).
pub fn signed_json_headers(
    addr: SocketAddr,
    secret: &str,
    key: &str,
    target: &str,
    body: &[u8],
    amz_date: &str,
) -> Vec<(String, String)> {
    let host = addr.to_string();
    let payload = hex::encode(sha2::Sha256::digest(body));
    let signed = "host;x-amz-date;x-amz-target";
    let canonical = format!(
        "POST\n/\n\nhost:{host}\nx-amz-date:{amz_date}\nx-amz-target:{target}\n\n{signed}\n{payload}"
    );
    let (scope, signature) = signature(secret, amz_date, &canonical);
    vec![
        ("X-Amz-Date".into(), amz_date.into()),
        ("X-Amz-Target".into(), target.into()),
        (
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={signature}"
            ),
        ),
    ]
}

/// A presigned GET path for Query `params` (already URL-encoded `k=v` pairs, sorted by key, none of them
/// `X-Amz-*`), signed at `amz_date`, valid for `expires` seconds.
pub fn presigned_path(
    addr: SocketAddr,
    secret: &str,
    key: &str,
    params: &str,
    amz_date: &str,
    expires: u64,
) -> String {
    let date = &amz_date[..8];
    let credential = format!("{key}%2F{date}%2Fus-east-1%2Fsqs%2Faws4_request");
    let mut pairs: Vec<String> = params.split('&').map(str::to_owned).collect();
    pairs.extend([
        "X-Amz-Algorithm=AWS4-HMAC-SHA256".to_owned(),
        format!("X-Amz-Credential={credential}"),
        format!("X-Amz-Date={amz_date}"),
        format!("X-Amz-Expires={expires}"),
        "X-Amz-SignedHeaders=host".to_owned(),
    ]);
    pairs.sort();
    let query = pairs.join("&");
    let canonical = format!("GET\n/\n{query}\nhost:{addr}\n\nhost\nUNSIGNED-PAYLOAD");
    let (_, signature) = signature(secret, amz_date, &canonical);
    format!("/?{query}&X-Amz-Signature={signature}")
}

/// The credential scope and hex signature of `canonical` (us-east-1, sqs).
fn signature(secret: &str, amz_date: &str, canonical: &str) -> (String, String) {
    use hmac::Mac;
    use sha2::Digest;
    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    let date = &amz_date[..8];
    let scope = format!("{date}/us-east-1/sqs/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(sha2::Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in ["us-east-1", "sqs", "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    (scope, hex::encode(hmac(&k, to_sign.as_bytes())))
}

/// `GET path` over a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> RawReply {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the AWS listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    read_reply(&mut stream).await
}
