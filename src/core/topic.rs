//! Topic matching: a trie over dot-separated words with `*` (exactly one word) and `#` (zero or more words),
//! shared by AMQP topic exchanges and, later, MQTT subscriptions, STOMP `/topic` and SNS subject routing.
//! Matching walks only the branches a key can take, so cost grows with the key's length and the number of
//! wildcard branches, not with the number of bindings (ARCHITECTURE.md §2: fast at 100k bindings).

use std::collections::HashMap;

/// A set of `(pattern, value)` bindings; `route` yields every value whose pattern matches a routing key.
#[derive(Debug)]
pub struct TopicTrie<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    words: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            words: HashMap::new(),
            star: None,
            hash: None,
            values: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T: PartialEq> TopicTrie<T> {
    /// Add a binding; a duplicate `(pattern, value)` is kept once. Returns whether it was new.
    pub fn insert(&mut self, pattern: &str, value: T) -> bool {
        let mut node = &mut self.root;
        for word in words_of(pattern) {
            node = match word {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                _ => node.words.entry(word.into()).or_default(),
            };
        }
        if node.values.contains(&value) {
            return false;
        }
        node.values.push(value);
        self.len += 1;
        true
    }

    /// Remove a binding; returns whether it existed. Empty branches are pruned.
    pub fn remove(&mut self, pattern: &str, value: &T) -> bool {
        let words: Vec<&str> = words_of(pattern).collect();
        let removed = Self::remove_at(&mut self.root, &words, value);
        if removed {
            self.len -= 1;
        }
        removed
    }

    fn remove_at(node: &mut Node<T>, words: &[&str], value: &T) -> bool {
        let Some((first, rest)) = words.split_first() else {
            let before = node.values.len();
            node.values.retain(|v| v != value);
            return node.values.len() != before;
        };
        match *first {
            "*" => Self::remove_boxed(&mut node.star, rest, value),
            "#" => Self::remove_boxed(&mut node.hash, rest, value),
            word => match node.words.get_mut(word) {
                Some(child) => {
                    let removed = Self::remove_at(child, rest, value);
                    if child.is_empty() {
                        node.words.remove(word);
                    }
                    removed
                }
                None => false,
            },
        }
    }

    fn remove_boxed(slot: &mut Option<Box<Node<T>>>, rest: &[&str], value: &T) -> bool {
        let Some(child) = slot.as_mut() else {
            return false;
        };
        let removed = Self::remove_at(child, rest, value);
        if child.is_empty() {
            *slot = None;
        }
        removed
    }
}

impl<T> TopicTrie<T> {
    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Call `found` for every value whose pattern matches `key`. A value bound by two matching patterns is
    /// reported twice; callers deduplicate destinations.
    pub fn route<'a>(&'a self, key: &str, found: &mut impl FnMut(&'a T)) {
        let words: Vec<&str> = words_of(key).collect();
        Self::walk(&self.root, &words, found);
    }

    fn walk<'a>(node: &'a Node<T>, words: &[&str], found: &mut impl FnMut(&'a T)) {
        if let Some(hash) = &node.hash {
            // `#` swallows zero or more words: try every suffix.
            for skip in 0..=words.len() {
                Self::walk(hash, &words[skip..], found);
            }
        }
        let Some((first, rest)) = words.split_first() else {
            node.values.iter().for_each(&mut *found);
            return;
        };
        if let Some(child) = node.words.get(*first) {
            Self::walk(child, rest, found);
        }
        if let Some(star) = &node.star {
            Self::walk(star, rest, found);
        }
    }
}

/// The words of a key or pattern; as in RabbitMQ, the empty string has no words at all.
fn words_of(s: &str) -> impl Iterator<Item = &str> {
    s.split('.').filter(move |_| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        let mut trie = TopicTrie::default();
        trie.insert(pattern, 1);
        let mut hit = false;
        trie.route(key, &mut |_| hit = true);
        hit
    }

    #[test]
    fn star_matches_exactly_one_word() {
        assert!(matches("a.*.c", "a.b.c"));
        assert!(!matches("a.*.c", "a.c"));
        assert!(!matches("a.*.c", "a.b.b.c"));
        assert!(matches("*", "a"));
        assert!(!matches("*", "a.b"));
    }

    #[test]
    fn hash_matches_zero_or_more_words() {
        assert!(matches("a.#", "a"));
        assert!(matches("a.#", "a.b.c"));
        assert!(matches("#", ""));
        assert!(matches("#", "x.y"));
        assert!(matches("a.#.z", "a.z"));
        assert!(matches("a.#.z", "a.b.c.z"));
        assert!(!matches("a.#.z", "a.b.c"));
        assert!(matches("#.b.#", "b"));
        assert!(matches("*.#", "a"));
        assert!(!matches("*.#", ""));
    }

    #[test]
    fn literal_words_and_empty_words() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.bb"));
        assert!(matches("", ""));
        assert!(matches("a..b", "a..b"));
        assert!(matches("a.*.b", "a..b"));
    }

    #[test]
    fn remove_prunes_and_keeps_other_bindings() {
        let mut trie = TopicTrie::default();
        assert!(trie.insert("a.*", 1));
        assert!(!trie.insert("a.*", 1));
        assert!(trie.insert("a.#", 2));
        assert!(trie.remove("a.*", &1));
        assert!(!trie.remove("a.*", &1));
        let mut hits = vec![];
        trie.route("a.b", &mut |v| hits.push(*v));
        assert_eq!(hits, vec![2]);
        assert!(trie.remove("a.#", &2));
        assert!(trie.root.is_empty());
        assert!(trie.is_empty());
    }

    #[test]
    fn many_bindings_route_only_matching_values() {
        let mut trie = TopicTrie::default();
        for i in 0..100_000u32 {
            trie.insert(&format!("sensors.room{i}.temp"), i);
        }
        trie.insert("sensors.*.temp", u32::MAX);
        let mut hits = vec![];
        trie.route("sensors.room42.temp", &mut |v| hits.push(*v));
        hits.sort_unstable();
        assert_eq!(hits, vec![42, u32::MAX]);
    }
}
