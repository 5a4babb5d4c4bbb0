//! STS on the AWS endpoint: `GetCallerIdentity` only (some tools call it first to check their credentials).
//! Query protocol, as STS speaks.

use serde_json::{Value, json};

use super::error::AwsError;
use super::query::QueryShapes;
use super::xml::Shapes;
use super::{AwsContext, Call};

pub const GET_CALLER_IDENTITY: &str = "GetCallerIdentity";

pub const QUERY_SHAPES: QueryShapes = QueryShapes {
    lists: &[],
    maps: &[],
};

pub const XML_SHAPES: Shapes = Shapes {
    namespace: "https://sts.amazonaws.com/doc/2011-06-15/",
    lists: &[],
    maps: &[],
    void: &[],
};

/// Answers an STS action.
pub fn call(ctx: &AwsContext, call: &Call) -> Result<Value, AwsError> {
    match call.action.as_str() {
        GET_CALLER_IDENTITY => {
            let user = call
                .signer
                .as_ref()
                .map_or("anonymous", |s| s.access_key.as_str());
            Ok(json!({
                "UserId": user,
                "Account": ctx.account_id,
                "Arn": format!("arn:aws:iam::{}:user/{user}", ctx.account_id),
            }))
        }
        other => Err(AwsError::invalid_action(other)),
    }
}
