//! How long one topic route takes with many `#` in a binding (exponential matching was a denial of service): the binding `#.#.....#.z` with
//! 3 to 8 `#` against a 127-word key that does not end in `z` (the worst case: nothing matches, so every
//! way of reaching the end is explored). Run with `cargo bench --bench topic_match`; it prints one line per
//! binding with the mean time of one route.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferrymq::core::TopicTrie;

/// Each case runs for about this long (at least one route).
const BUDGET: Duration = Duration::from_millis(500);

fn main() {
    let key = vec!["a"; 127].join(".");
    for hashes in 3..=8 {
        let pattern = format!("{}z", "#.".repeat(hashes));
        let mut trie = TopicTrie::default();
        trie.insert(&pattern, 1u32);
        let started = Instant::now();
        let mut routes = 0u32;
        while routes == 0 || started.elapsed() < BUDGET {
            let mut hits = 0;
            trie.route(black_box(&key), &mut |_| hits += 1);
            black_box(hits);
            routes += 1;
        }
        let per_route = started.elapsed() / routes;
        println!("{pattern:<20} 127-word key: {per_route:>12.3?} per route ({routes} routes)");
    }
}
