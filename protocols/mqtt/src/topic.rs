//! Topic names and filters (spec §4.7): validity of a filter's wildcards, `$share/{group}/{filter}` shared
//! subscriptions (§4.8.2), and matching a name against a filter with the `$`-topic rule [MQTT-4.7.2-1]. The
//! broker routes through its own topic trie; this is the reference the codec's users and tests check against.

/// True when `filter` is a valid topic filter: not empty, `#` only as the last level and alone in it, `+`
/// alone in its level [MQTT-4.7.1-1, MQTT-4.7.1-2, MQTT-4.7.3-1].
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

/// True when `name` is a valid topic name: not empty and without wildcards [MQTT-4.7.3-1, MQTT-3.3.2-2].
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['+', '#'])
}

/// A `$share/{group}/{filter}` subscription split into group and filter; `None` for a plain filter, and
/// `Some(Err(()))` for a malformed share (empty group, a wildcard in the group, no filter) [MQTT-4.8.2-1, -2].
pub fn shared(filter: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Some(Err(()));
    };
    if group.is_empty() || group.contains(['+', '#']) || !valid_filter(inner) {
        return Some(Err(()));
    }
    Some(Ok((group, inner)))
}

/// True when `name` matches `filter`; a leading wildcard does not match a `$` topic [MQTT-4.7.2-1].
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        match (level, names.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (l, Some(n)) if l == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}
