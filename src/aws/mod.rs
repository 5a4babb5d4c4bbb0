//! The AWS-compatible APIs on one HTTP endpoint (port 9324): SQS and `sts:GetCallerIdentity` today (SNS and
//! CloudWatch join here). This module owns the shared plumbing: the axum router, the request body bounded
//! before it is read, the choice of protocol (AWS JSON 1.0 when `X-Amz-Target` is present, Query when an
//! `Action` parameter is), SigV4 verification (`sigv4`), the dispatch to a service (by target prefix, by the
//! signature's service name, or by action name), request ids, and the replies and error envelopes of both
//! protocols (`error`, `query`, `xml`). The services live in `sqs` and `sts`; each action is written once
//! against a JSON input and output, whichever protocol carried it. Facts that decide compatibility: the shared
//! design document §6.

pub mod error;
pub mod query;
pub mod sigv4;
pub mod sqs;
mod sts;
pub mod xml;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tracing::debug;

use crate::admin::Peer;
use crate::config::AwsConfig;
use crate::core::Broker;
use error::AwsError;
use sigv4::{Keys, SignedRequest, Signer};

/// The content type of AWS JSON 1.0.
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// What every AWS request handler shares.
#[derive(Debug)]
pub struct AwsContext {
    pub broker: Broker,
    keys: Keys,
    pub account_id: String,
    region: String,
    max_request_bytes: u64,
    pub sqs: sqs::Sqs,
}

impl AwsContext {
    pub fn new(broker: Broker, config: &AwsConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .map(|k| (k.access_key_id.clone(), k.secret_access_key.clone()));
        Self {
            sqs: sqs::Sqs::new(&broker),
            broker,
            keys: Keys::new(keys, config.clock_skew_secs),
            account_id: config.account_id.clone(),
            region: config.region.clone(),
            max_request_bytes: config.max_request_bytes,
        }
    }
}

/// The router of the AWS listener: every path and method goes to one handler.
pub fn router(ctx: AwsContext) -> Router {
    Router::new().fallback(handle).with_state(Arc::new(ctx))
}

/// Which wire protocol a request came in (and its reply goes out) in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Json,
    Query,
}

/// One decoded request, whatever its protocol.
#[derive(Debug)]
pub struct Call {
    pub protocol: Protocol,
    pub action: String,
    pub input: Value,
    /// The `Host` header (queue URLs are built from it).
    pub host: String,
    pub region: String,
    pub signer: Option<Signer>,
    pub request_id: String,
    /// The request path (`/<account>/<queue>` when the queue URL is the endpoint).
    pub path: String,
}

/// The services behind the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Sqs,
    Sts,
}

async fn handle(
    State(ctx): State<Arc<AwsContext>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
) -> Response {
    let request_id = request_id();
    let (parts, body) = request.into_parts();
    let protocol = if parts.headers.contains_key("x-amz-target") {
        Protocol::Json
    } else {
        Protocol::Query
    };
    let service = service_of(&parts.headers);
    let result = async {
        let body = read_body(&ctx, &parts.headers, body).await?;
        let call_parts = RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
            peer,
        };
        let (service, call) = decode(&ctx, &call_parts, protocol, request_id.clone())?;
        let output = dispatch(&ctx, service, &call).await?;
        reply(service, &call, &output)
    }
    .await;
    result.unwrap_or_else(|e| {
        debug!(code = e.code, status = e.status, message = %e.message, "aws request refused");
        error_reply(protocol, service, &e, &request_id)
    })
}

/// What decoding a request reads of it.
struct RequestParts<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
    peer: SocketAddr,
}

/// Reads the body, refusing one larger than the limit before reading it (by `Content-Length`) or as soon as it
/// grows past it (chunked).
async fn read_body(ctx: &AwsContext, headers: &HeaderMap, body: Body) -> Result<Bytes, AwsError> {
    let limit = ctx.max_request_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(AwsError::too_large(limit));
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize)
        .await
        .map_err(|_| AwsError::too_large(limit))
}

/// Verifies the signature and decodes the request in its protocol.
fn decode(
    ctx: &AwsContext,
    req: &RequestParts<'_>,
    protocol: Protocol,
    request_id: String,
) -> Result<(Service, Call), AwsError> {
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let signer = ctx.keys.verify(&SignedRequest {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: &headers,
        body: req.body,
        peer: req.peer.ip(),
    })?;
    let (service, action, input) = match protocol {
        Protocol::Json => json_call(req)?,
        Protocol::Query => query_call(req, signer.as_ref())?,
    };
    let host = header_str(req.headers, "host")
        .unwrap_or("localhost")
        .to_owned();
    let region = signer
        .as_ref()
        .map_or_else(|| ctx.region.clone(), |s| s.region.clone());
    let call = Call {
        protocol,
        action,
        input,
        host,
        region,
        signer,
        request_id,
        path: req.path.to_owned(),
    };
    Ok((service, call))
}

/// `X-Amz-Target: AmazonSQS.SendMessage` with a JSON object body.
fn json_call(req: &RequestParts<'_>) -> Result<(Service, String, Value), AwsError> {
    let target = header_str(req.headers, "x-amz-target").unwrap_or("");
    let Some((prefix, action)) = target.split_once('.') else {
        return Err(AwsError::unknown_operation());
    };
    let service = match prefix {
        sqs::JSON_TARGET_PREFIX => Service::Sqs,
        _ => return Err(AwsError::unknown_operation()),
    };
    let input = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(req.body)
            .map_err(|e| AwsError::serialization(&format!("Request body is not valid JSON: {e}")))?
    };
    if !input.is_object() {
        return Err(AwsError::serialization(
            "Request body must be a JSON object",
        ));
    }
    Ok((service, action.to_owned(), input))
}

/// `Action=...` in the query string or a form body.
fn query_call(
    req: &RequestParts<'_>,
    signer: Option<&Signer>,
) -> Result<(Service, String, Value), AwsError> {
    let mut params = sigv4::query_pairs(req.query);
    if !req.body.is_empty() {
        let form = std::str::from_utf8(req.body)
            .map_err(|_| AwsError::malformed_query("The request body is not a valid form"))?;
        params.extend(sigv4::query_pairs(form));
    }
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| AwsError::missing_parameter("Action"))?;
    let service = match signer.map(|s| s.service.as_str()) {
        Some("sts") => Service::Sts,
        Some("sqs") => Service::Sqs,
        _ if action == sts::GET_CALLER_IDENTITY => Service::Sts,
        _ => Service::Sqs,
    };
    let shapes = match service {
        Service::Sqs => &sqs::QUERY_SHAPES,
        Service::Sts => &sts::QUERY_SHAPES,
    };
    let input = query::to_json(shapes, &params)?;
    Ok((service, action, input))
}

async fn dispatch(ctx: &AwsContext, service: Service, call: &Call) -> Result<Value, AwsError> {
    match service {
        Service::Sqs => ctx.sqs.call(ctx, call).await,
        Service::Sts => sts::call(ctx, call),
    }
}

/// The service a reply's envelope belongs to, as far as the headers tell (errors before decoding).
fn service_of(headers: &HeaderMap) -> Service {
    let auth = header_str(headers, "authorization").unwrap_or("");
    if auth.contains("/sts/aws4_request") {
        Service::Sts
    } else {
        Service::Sqs
    }
}

fn reply(service: Service, call: &Call, output: &Value) -> Result<Response, AwsError> {
    let (content_type, body) = match call.protocol {
        Protocol::Json => (
            JSON_CONTENT_TYPE,
            serde_json::to_vec(output).map_err(|e| AwsError::internal(&e.to_string()))?,
        ),
        Protocol::Query => (
            "text/xml",
            xml::response(shapes_of(service), &call.action, output, &call.request_id)?,
        ),
    };
    Ok(respond(
        StatusCode::OK,
        content_type,
        &call.request_id,
        body,
    ))
}

fn shapes_of(service: Service) -> &'static xml::Shapes {
    match service {
        Service::Sqs => &sqs::XML_SHAPES,
        Service::Sts => &sts::XML_SHAPES,
    }
}

/// The error envelope of `protocol`: JSON `{"__type", "message"}` with `x-amzn-query-error`, or Query
/// `<ErrorResponse>`.
fn error_reply(protocol: Protocol, service: Service, e: &AwsError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    match protocol {
        Protocol::Json => {
            let body = serde_json::json!({
                "__type": format!("{}#{}", e.namespace, e.code),
                "message": e.message,
            });
            let mut response = respond(
                status,
                JSON_CONTENT_TYPE,
                request_id,
                body.to_string().into_bytes(),
            );
            let fault = if e.sender { "Sender" } else { "Receiver" };
            if let Ok(v) = HeaderValue::from_str(&format!("{};{fault}", e.query_code)) {
                response.headers_mut().insert("x-amzn-query-error", v);
            }
            response
        }
        Protocol::Query => {
            let body = xml::error_response(shapes_of(service).namespace, e, request_id);
            respond(status, "text/xml", request_id, body)
        }
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    request_id: &str,
    body: Vec<u8>,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A request id in AWS's UUID form.
pub fn request_id() -> String {
    uuid_v4()
}

/// A random (version 4) UUID, hyphenated.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
