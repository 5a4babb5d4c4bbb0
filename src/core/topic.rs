//! Topic matching: a trie over dot-separated words with `*` (exactly one word) and `#` (zero or more words),
//! shared by AMQP topic exchanges and, later, MQTT subscriptions, STOMP `/topic` and SNS subject routing.
//! Matching walks only the branches a key can take, so cost grows with the key's length and the number of
//! wildcard branches, not with the number of bindings (fast at 100k bindings; docs/ARCHITECTURE.md §3).

use std::collections::{HashMap, HashSet};

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

    /// Call `found` for every value whose pattern matches `key`, once per matching pattern.
    ///
    /// The trie is run as an automaton over the key's words: the set of nodes a prefix of the key can reach
    /// is advanced one word at a time, each node at most once per position. A `#` node stays in the set
    /// while it swallows words, so `#.#.#.#.z` costs what `#.z` costs: at most (key words x trie nodes)
    /// steps, never one walk per way of splitting the key among the `#`s (which grows exponentially with
    /// the number of `#`: 5.6 s for one publish with five of them before this).
    pub fn route<'a>(&'a self, key: &str, found: &mut impl FnMut(&'a T)) {
        let mut current = Frontier::default();
        current.enter(&self.root, Via::Word);
        let mut next = Frontier::default();
        for word in words_of(key) {
            for &(node, via) in &current.nodes {
                if via == Via::Hash {
                    next.enter(node, Via::Hash);
                }
                if let Some(child) = node.words.get(word) {
                    next.enter(child, Via::Word);
                }
                if let Some(star) = &node.star {
                    next.enter(star, Via::Word);
                }
            }
            if next.nodes.is_empty() {
                return;
            }
            std::mem::swap(&mut current, &mut next);
            next.clear();
        }
        for (node, _) in current.nodes {
            node.values.iter().for_each(&mut *found);
        }
    }
}

/// How the walk reached a node: a `#` node keeps matching further words, any other node needs the next word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Word,
    Hash,
}

/// The trie nodes one prefix of a key reaches, each once.
#[derive(Debug)]
struct Frontier<'a, T> {
    nodes: Vec<(&'a Node<T>, Via)>,
    /// Addresses of `nodes`, kept only once there are too many for a linear scan.
    index: HashSet<*const Node<T>>,
}

impl<T> Default for Frontier<'_, T> {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            index: HashSet::new(),
        }
    }
}

impl<'a, T> Frontier<'a, T> {
    /// Below this many nodes, membership is a scan of `nodes` (no hashing on the common, short walks).
    const SCAN_LIMIT: usize = 16;

    /// Add `node` and, since `#` may match zero words, the `#` nodes below it (adjacent `#`s chain).
    fn enter(&mut self, node: &'a Node<T>, via: Via) {
        let mut node = node;
        let mut via = via;
        while self.insert(node, via) {
            let Some(hash) = &node.hash else {
                return;
            };
            node = hash;
            via = Via::Hash;
        }
    }

    /// Add one node; false when it is there already.
    fn insert(&mut self, node: &'a Node<T>, via: Via) -> bool {
        let address = node as *const Node<T>;
        if self.nodes.len() < Self::SCAN_LIMIT {
            if self.nodes.iter().any(|(n, _)| std::ptr::eq(*n, node)) {
                return false;
            }
        } else {
            if self.index.is_empty() {
                self.index
                    .extend(self.nodes.iter().map(|(n, _)| *n as *const Node<T>));
            }
            if !self.index.insert(address) {
                return false;
            }
        }
        self.nodes.push((node, via));
        true
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.index.clear();
    }
}

/// The words of a key or pattern; as in RabbitMQ, the empty string has no words at all.
fn words_of(s: &str) -> impl Iterator<Item = &str> {
    s.split('.').filter(move |_| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// The denial-of-service binding: seven `#` and a 127-word key used to take minutes (one walk per way of
    /// splitting the key among the `#`s). Correctness only; the cost is measured in benches/topic_match.rs.
    #[test]
    fn many_hashes_and_a_long_key_match_correctly() {
        let mut trie = TopicTrie::default();
        trie.insert("#.#.#.#.#.#.#.z", 1);
        trie.insert("#.a.#.a.#.a.#", 2);
        trie.insert("#.#.#", 3);
        let route = |key: &str| {
            let mut hits = vec![];
            trie.route(key, &mut |v| hits.push(*v));
            hits.sort_unstable();
            hits
        };
        let words = vec!["a"; 126];
        let no_z = [words.as_slice(), &["a"]].concat().join(".");
        let ends_in_z = [words.as_slice(), &["z"]].concat().join(".");
        assert_eq!(route(&no_z), vec![2, 3]);
        assert_eq!(route(&ends_in_z), vec![1, 2, 3]);
        assert_eq!(route("z"), vec![1, 3]);
        assert_eq!(route(""), vec![3]);
    }

    /// The reference: RabbitMQ's semantics written as the obvious recursion (exponential, fine for tests).
    fn naive_match(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| naive_match(rest, &key[skip..])),
            Some((&"*", rest)) => !key.is_empty() && naive_match(rest, &key[1..]),
            Some((word, rest)) => key.first() == Some(word) && naive_match(rest, &key[1..]),
        }
    }

    fn dotted(words: Vec<&'static str>) -> String {
        words.join(".")
    }

    proptest! {
        #[test]
        fn route_agrees_with_the_naive_matcher(
            patterns in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec!["a", "b", "", "*", "#"]), 0..7)
                    .prop_map(dotted),
                0..10,
            ),
            removed in proptest::collection::vec(proptest::bool::ANY, 10),
            key in proptest::collection::vec(proptest::sample::select(vec!["a", "b", ""]), 0..9)
                .prop_map(dotted),
        ) {
            let mut trie = TopicTrie::default();
            for (i, pattern) in patterns.iter().enumerate() {
                trie.insert(pattern, i);
            }
            for (i, pattern) in patterns.iter().enumerate() {
                if removed[i] {
                    trie.remove(pattern, &i);
                }
            }
            let mut hits = vec![];
            trie.route(&key, &mut |v| hits.push(*v));
            hits.sort_unstable();
            let key_words: Vec<&str> = words_of(&key).collect();
            let expected: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    !removed[*i] && naive_match(&words_of(p).collect::<Vec<_>>(), &key_words)
                })
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(hits, expected);
        }
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
