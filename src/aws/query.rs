//! The Query protocol's requests: `Action=...&Attribute.1.Name=...` form parameters turned into the same JSON
//! object an AWS JSON 1.0 request carries, so each action is written once. Dotted keys become nested members;
//! numbered members become lists (`AttributeName.1` -> `AttributeNames`) or maps
//! (`Attribute.1.Name`/`Attribute.1.Value` -> `Attributes`), as each service's [`QueryShapes`] names them.
//! Values stay strings (the actions accept numbers either way).

use serde_json::{Map, Value};

use super::error::AwsError;

/// How one service names its numbered Query members in JSON.
#[derive(Debug, Clone, Copy)]
pub struct QueryShapes {
    /// `(Query member, JSON field)` for lists.
    pub lists: &'static [(&'static str, &'static str)],
    /// `(Query member, JSON field, key member, value member)` for maps.
    pub maps: &'static [(&'static str, &'static str, &'static str, &'static str)],
}

/// A parameter tree: dotted keys split at each dot.
#[derive(Debug, Default)]
struct Node {
    value: Option<String>,
    children: Vec<(String, Node)>,
}

impl Node {
    fn insert(&mut self, path: &[&str], value: String) {
        let Some((first, rest)) = path.split_first() else {
            self.value = Some(value);
            return;
        };
        let child = match self.children.iter().position(|(k, _)| k == first) {
            Some(i) => &mut self.children[i].1,
            None => {
                self.children.push(((*first).to_owned(), Node::default()));
                let last = self.children.len() - 1;
                &mut self.children[last].1
            }
        };
        child.insert(rest, value);
    }

    /// Numbered members in order of their number.
    fn numbered(&self) -> Result<Vec<&Node>, AwsError> {
        let mut items = Vec::with_capacity(self.children.len());
        for (k, node) in &self.children {
            let n: u32 = k
                .parse()
                .map_err(|_| AwsError::malformed_query(&format!("'{k}' is not a member number")))?;
            items.push((n, node));
        }
        items.sort_by_key(|(n, _)| *n);
        Ok(items.into_iter().map(|(_, node)| node).collect())
    }
}

/// The JSON input of a Query request (`Action` and `Version` left out).
pub fn to_json(shapes: &QueryShapes, params: &[(String, String)]) -> Result<Value, AwsError> {
    let mut root = Node::default();
    for (key, value) in params {
        if key == "Action" || key == "Version" || key.starts_with("X-Amz-") {
            continue;
        }
        let path: Vec<&str> = key.split('.').collect();
        root.insert(&path, value.clone());
    }
    convert(shapes, &root)
}

fn convert(shapes: &QueryShapes, node: &Node) -> Result<Value, AwsError> {
    if node.children.is_empty() {
        return Ok(node.value.clone().map_or(Value::Null, Value::String));
    }
    let mut out = Map::new();
    for (name, child) in &node.children {
        if let Some((_, field)) = shapes.lists.iter().find(|l| l.0 == name) {
            let items = child
                .numbered()?
                .into_iter()
                .map(|n| convert(shapes, n))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert((*field).to_owned(), Value::Array(items));
        } else if let Some(&(_, field, key, value)) = shapes.maps.iter().find(|m| m.0 == name) {
            out.insert(field.to_owned(), map_of(shapes, child, key, value)?);
        } else {
            out.insert(name.clone(), convert(shapes, child)?);
        }
    }
    Ok(Value::Object(out))
}

fn map_of(shapes: &QueryShapes, node: &Node, key: &str, value: &str) -> Result<Value, AwsError> {
    let mut out = Map::new();
    for entry in node.numbered()? {
        let member = |name: &str| {
            entry
                .children
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, n)| n)
        };
        let k = member(key)
            .and_then(|n| n.value.clone())
            .ok_or_else(|| AwsError::missing_parameter(key))?;
        let v = match member(value) {
            Some(n) => convert(shapes, n)?,
            None => Value::Null,
        };
        out.insert(k, v);
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPES: QueryShapes = QueryShapes {
        lists: &[("AttributeName", "AttributeNames"), ("Entry", "Entries")],
        maps: &[
            ("Attribute", "Attributes", "Name", "Value"),
            ("MessageAttribute", "MessageAttributes", "Name", "Value"),
        ],
    };

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn numbered_members_become_lists_and_maps() {
        let json = to_json(
            &SHAPES,
            &params(&[
                ("Action", "X"),
                ("QueueName", "q"),
                ("AttributeName.2", "B"),
                ("AttributeName.1", "A"),
                ("Attribute.1.Name", "DelaySeconds"),
                ("Attribute.1.Value", "5"),
                ("Entry.1.Id", "e1"),
                ("Entry.1.MessageAttribute.1.Name", "n"),
                ("Entry.1.MessageAttribute.1.Value.DataType", "String"),
                ("Entry.1.MessageAttribute.1.Value.StringValue", "v"),
            ]),
        )
        .expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "QueueName": "q",
                "AttributeNames": ["A", "B"],
                "Attributes": {"DelaySeconds": "5"},
                "Entries": [{"Id": "e1", "MessageAttributes": {"n": {"DataType": "String", "StringValue": "v"}}}],
            })
        );
    }

    #[test]
    fn a_member_number_that_is_not_a_number_is_malformed() {
        let err = to_json(&SHAPES, &params(&[("AttributeName.x", "A")])).expect_err("malformed");
        assert_eq!(err.code, "MalformedQueryString");
    }
}
