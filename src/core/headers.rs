//! Headers-exchange matching (RabbitMQ semantics): a binding's arguments are compared with the message's
//! headers under `x-match` = `all` (default), `any`, `all-with-x` or `any-with-x`. Binding keys starting with
//! `x-` are ignored unless the mode ends in `-with-x`; a binding value of `void` matches any value of a present
//! header.

use crate::core::message::{Headers, Value};

use super::CoreError;

/// The `x-match` mode of a headers binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchMode {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

impl MatchMode {
    /// Read `x-match` from binding arguments; an unknown value is a precondition failure, as in RabbitMQ.
    pub fn from_arguments(args: &Headers) -> Result<Self, CoreError> {
        match args.get("x-match") {
            None => Ok(MatchMode::All),
            Some(v) => match v.as_str() {
                Some("all") => Ok(MatchMode::All),
                Some("any") => Ok(MatchMode::Any),
                Some("all-with-x") => Ok(MatchMode::AllWithX),
                Some("any-with-x") => Ok(MatchMode::AnyWithX),
                _ => Err(CoreError::PreconditionFailed(format!(
                    "Invalid x-match field value {v:?}; expected all, any, all-with-x, or any-with-x"
                ))),
            },
        }
    }
}

/// Whether a message with `headers` matches a binding with `args` under `mode`.
pub fn matches(mode: MatchMode, args: &Headers, headers: &Headers) -> bool {
    let with_x = matches!(mode, MatchMode::AllWithX | MatchMode::AnyWithX);
    let mut relevant = args
        .iter()
        .filter(|h| h.name != "x-match" && (with_x || !h.name.starts_with("x-")));
    let one = |h: &crate::core::message::Header| match headers.get(&h.name) {
        None => false,
        Some(_) if h.value == Value::Null => true,
        Some(have) => *have == h.value,
    };
    match mode {
        MatchMode::All | MatchMode::AllWithX => relevant.all(one),
        MatchMode::Any | MatchMode::AnyWithX => relevant.any(one),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn table(pairs: &[(&str, Value)]) -> Headers {
        let mut t = Headers::new();
        pairs.iter().for_each(|(k, v)| t.push(*k, v.clone()));
        t
    }
    fn s(v: &str) -> Value {
        Value::Text(Bytes::copy_from_slice(v.as_bytes()))
    }

    #[test]
    fn all_requires_every_non_x_key() {
        let args = table(&[("x-match", s("all")), ("a", s("1")), ("b", Value::I32(2))]);
        let mode = MatchMode::from_arguments(&args).unwrap();
        assert!(matches(
            mode,
            &args,
            &(table(&[("a", s("1")), ("b", Value::I32(2)), ("c", s("x"))]))
        ));
        assert!(!matches(mode, &args, &(table(&[("a", s("1"))]))));
        assert!(!matches(mode, &args, &Headers::new()));
    }

    #[test]
    fn any_requires_one_key() {
        let args = table(&[("x-match", s("any")), ("a", s("1")), ("b", s("2"))]);
        let mode = MatchMode::from_arguments(&args).unwrap();
        assert!(matches(mode, &args, &(table(&[("b", s("2"))]))));
        assert!(!matches(mode, &args, &(table(&[("b", s("3"))]))));
    }

    #[test]
    fn x_keys_ignored_unless_with_x() {
        let args = table(&[("x-match", s("all")), ("x-k", s("1"))]);
        assert!(
            matches(MatchMode::All, &args, &Headers::new()),
            "no relevant keys: all matches"
        );
        let args = table(&[("x-match", s("all-with-x")), ("x-k", s("1"))]);
        assert!(!matches(MatchMode::AllWithX, &args, &Headers::new()));
        assert!(matches(
            MatchMode::AllWithX,
            &args,
            &(table(&[("x-k", s("1"))]))
        ));
    }

    #[test]
    fn void_matches_presence() {
        let args = table(&[("a", Value::Null)]);
        assert!(matches(
            MatchMode::All,
            &args,
            &(table(&[("a", s("anything"))]))
        ));
        assert!(!matches(MatchMode::All, &args, &(table(&[("b", s("x"))]))));
    }

    #[test]
    fn unknown_x_match_is_rejected() {
        assert!(MatchMode::from_arguments(&table(&[("x-match", s("some"))])).is_err());
    }
}
