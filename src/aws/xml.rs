//! The Query protocol's XML replies (written with quick-xml): `<ActionResponse>` with its `<ActionResult>` and
//! `<ResponseMetadata>`, and `<ErrorResponse>`. An action's output is the same JSON object the JSON protocol
//! sends; [`write_value`] turns it into the Query shapes: maps become repeated `<Attribute><Name/><Value/>`
//! (or `<Tag><Key/><Value/>`) entries, lists are flattened into repeated elements named after their members.

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use serde_json::{Map, Value};

use super::error::AwsError;

type Xml = Writer<Vec<u8>>;

/// How one service names the members of its lists and maps in XML.
#[derive(Debug, Clone, Copy)]
pub struct Shapes {
    /// The XML namespace of the replies.
    pub namespace: &'static str,
    /// `(JSON field, XML element of one member)` for lists.
    pub lists: &'static [(&'static str, &'static str)],
    /// `(JSON field, XML element of one entry, key element, value element)` for maps.
    pub maps: &'static [(&'static str, &'static str, &'static str, &'static str)],
    /// Actions that answer no result element.
    pub void: &'static [&'static str],
}

/// The reply to `action` with `output` (a JSON object).
pub fn response(
    shapes: &Shapes,
    action: &str,
    output: &Value,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let mut w = Writer::new(Vec::new());
    let written = (|| -> io::Result<()> {
        w.write_event(Event::Decl(BytesDecl::new("1.0", None, None)))?;
        w.create_element(format!("{action}Response"))
            .with_attribute(("xmlns", shapes.namespace))
            .write_inner_content(|w| {
                if !shapes.void.contains(&action) {
                    let result = w.create_element(format!("{action}Result"));
                    match output {
                        Value::Object(fields) if !fields.is_empty() => {
                            result
                                .write_inner_content(|w| write_fields(w, shapes, action, fields))?;
                        }
                        _ => {
                            result.write_empty()?;
                        }
                    }
                }
                metadata(w, request_id)
            })?;
        Ok(())
    })();
    written.map_err(|e| AwsError::internal(&format!("cannot write the XML reply: {e}")))?;
    Ok(w.into_inner())
}

/// `<ErrorResponse>` for `error`.
pub fn error_response(namespace: &str, error: &AwsError, request_id: &str) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    let written = (|| -> io::Result<()> {
        w.write_event(Event::Decl(BytesDecl::new("1.0", None, None)))?;
        w.create_element("ErrorResponse")
            .with_attribute(("xmlns", namespace))
            .write_inner_content(|w| {
                w.create_element("Error").write_inner_content(|w| {
                    let kind = if error.sender { "Sender" } else { "Receiver" };
                    text(w, "Type", kind)?;
                    text(w, "Code", error.query_code)?;
                    text(w, "Message", &error.message)?;
                    w.create_element("Detail").write_empty()?;
                    Ok(())
                })?;
                text(w, "RequestId", request_id)
            })?;
        Ok(())
    })();
    match written {
        Ok(()) => w.into_inner(),
        // Writing to memory does not fail; if it ever did, the status and headers still tell the error.
        Err(_) => Vec::new(),
    }
}

fn metadata(w: &mut Xml, request_id: &str) -> io::Result<()> {
    w.create_element("ResponseMetadata")
        .write_inner_content(|w| text(w, "RequestId", request_id))?;
    Ok(())
}

fn text(w: &mut Xml, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn write_fields(
    w: &mut Xml,
    shapes: &Shapes,
    action: &str,
    fields: &Map<String, Value>,
) -> io::Result<()> {
    for (name, value) in fields {
        write_field(w, shapes, action, name, value)?;
    }
    Ok(())
}

fn write_field(
    w: &mut Xml,
    shapes: &Shapes,
    action: &str,
    name: &str,
    value: &Value,
) -> io::Result<()> {
    if let Some(&(_, entry, key, val)) = shapes.maps.iter().find(|m| m.0 == name)
        && let Value::Object(map) = value
    {
        for (k, v) in map {
            w.create_element(entry).write_inner_content(|w| {
                text(w, key, k)?;
                write_field(w, shapes, action, val, v)
            })?;
        }
        return Ok(());
    }
    if let Value::Array(items) = value {
        let member = list_member(shapes, action, name);
        for item in items {
            write_field(w, shapes, action, &member, item)?;
        }
        return Ok(());
    }
    write_value(w, shapes, action, name, value)
}

/// The element name of one member of list `name` (`Successful` of `SendMessageBatch` is
/// `SendMessageBatchResultEntry`).
fn list_member(shapes: &Shapes, action: &str, name: &str) -> String {
    match shapes.lists.iter().find(|l| l.0 == name) {
        Some((_, "{action}ResultEntry")) => format!("{action}ResultEntry"),
        Some((_, member)) => (*member).to_owned(),
        None => name.to_owned(),
    }
}

fn write_value(
    w: &mut Xml,
    shapes: &Shapes,
    action: &str,
    name: &str,
    value: &Value,
) -> io::Result<()> {
    match value {
        Value::Null => Ok(()),
        Value::Object(fields) => {
            w.create_element(name)
                .write_inner_content(|w| write_fields(w, shapes, action, fields))?;
            Ok(())
        }
        Value::String(s) => text(w, name, s),
        Value::Bool(b) => text(w, name, if *b { "true" } else { "false" }),
        Value::Number(n) => text(w, name, &n.to_string()),
        Value::Array(_) => write_field(w, shapes, action, name, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPES: Shapes = Shapes {
        namespace: "urn:test",
        lists: &[
            ("QueueUrls", "QueueUrl"),
            ("Successful", "{action}ResultEntry"),
        ],
        maps: &[("Attributes", "Attribute", "Name", "Value")],
        void: &["DeleteQueue"],
    };

    #[test]
    fn lists_are_flattened_and_maps_become_entries() {
        let out = serde_json::json!({
            "QueueUrls": ["a", "b&c"],
            "Attributes": {"K": "V"},
            "Successful": [{"Id": "1"}],
        });
        let xml = response(&SHAPES, "X", &out, "rid").expect("xml");
        let xml = String::from_utf8(xml).expect("utf-8");
        assert!(
            xml.contains("<XResponse xmlns=\"urn:test\"><XResult>"),
            "{xml}"
        );
        assert!(
            xml.contains("<QueueUrl>a</QueueUrl><QueueUrl>b&amp;c</QueueUrl>"),
            "{xml}"
        );
        assert!(
            xml.contains("<Attribute><Name>K</Name><Value>V</Value></Attribute>"),
            "{xml}"
        );
        assert!(
            xml.contains("<XResultEntry><Id>1</Id></XResultEntry>"),
            "{xml}"
        );
        assert!(
            xml.contains("<ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata>"),
            "{xml}"
        );
    }

    #[test]
    fn void_actions_have_no_result_element() {
        let xml = response(&SHAPES, "DeleteQueue", &serde_json::json!({}), "rid").expect("xml");
        let xml = String::from_utf8(xml).expect("utf-8");
        assert!(!xml.contains("DeleteQueueResult"), "{xml}");
    }
}
