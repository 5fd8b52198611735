//! The subscription index: which subscriptions want a message published to a subject.
//!
//! Like nats-server's sublist: a trie with one level per subject token, where each level has literal children, a
//! `*` child and a `>` child. A lookup walks one path per matching wildcard, so its cost depends on the subject's
//! length and the wildcards on its way, not on the number of subscriptions. Results are cached per literal subject
//! (up to [`CACHE_MAX`] subjects); inserting or removing a subscription evicts exactly the cached subjects that its
//! pattern matches, and bumps a [generation](Sublist::generation) so that per-connection caches layered on top
//! know to drop theirs.
//!
//! Queue subscriptions are grouped by queue name across all matching patterns, so a message reaches one member
//! of each group however many of the group's patterns match.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};

use super::subject::{self, SubjectError};

/// How many literal subjects the match cache holds before it evicts some.
pub const CACHE_MAX: usize = 1024;

/// What the index needs to know about a subscription.
pub trait Interest: Send + Sync + 'static {
    /// Unique among all subscriptions in the index.
    fn id(&self) -> u64;
    /// The subscribed subject (may contain wildcards).
    fn subject(&self) -> &[u8];
    /// The queue group, if any.
    fn queue(&self) -> Option<&[u8]>;
}

/// One queue group in a match result: a message goes to one of its members.
#[derive(Debug)]
pub struct QueueGroup<S> {
    /// The group's name.
    pub name: Box<[u8]>,
    /// Every member whose pattern matched.
    pub members: Vec<Arc<S>>,
}

/// The subscriptions matching one subject.
#[derive(Debug)]
pub struct Matches<S> {
    /// Subscriptions without a queue group: each gets the message.
    pub plain: Vec<Arc<S>>,
    /// Queue groups: each group gets the message once.
    pub groups: Vec<QueueGroup<S>>,
}

impl<S> Matches<S> {
    fn empty() -> Self {
        Matches {
            plain: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Whether nothing matched.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }

    fn add_node(&mut self, node: &Node<S>) {
        self.plain.extend(node.plain.values().cloned());
        for (name, members) in &node.queues {
            match self.groups.iter_mut().find(|g| g.name == *name) {
                Some(group) => group.members.extend(members.values().cloned()),
                None => self.groups.push(QueueGroup {
                    name: name.clone(),
                    members: members.values().cloned().collect(),
                }),
            }
        }
    }
}

/// A node: the subscriptions whose pattern ends here, and the level below.
struct Node<S> {
    /// The next token's level, if any pattern continues past this one.
    next: Option<Box<Level<S>>>,
    /// Plain subscriptions ending here, by id.
    plain: HashMap<u64, Arc<S>>,
    /// Queue subscriptions ending here, by queue name then id.
    queues: HashMap<Box<[u8]>, HashMap<u64, Arc<S>>>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node {
            next: None,
            plain: HashMap::new(),
            queues: HashMap::new(),
        }
    }
}

impl<S> Node<S> {
    fn is_empty(&self) -> bool {
        self.next.is_none() && self.plain.is_empty() && self.queues.is_empty()
    }
}

/// One token position: literal children, and the `*` and `>` children.
struct Level<S> {
    /// Children for literal tokens.
    literals: HashMap<Box<[u8]>, Node<S>>,
    /// The `*` child.
    star: Option<Box<Node<S>>>,
    /// The `>` child (a leaf: `>` is always the last token).
    full: Option<Box<Node<S>>>,
}

impl<S> Default for Level<S> {
    fn default() -> Self {
        Level {
            literals: HashMap::new(),
            star: None,
            full: None,
        }
    }
}

impl<S> Level<S> {
    fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.star.is_none() && self.full.is_none()
    }
}

/// Cached match results by literal subject.
type MatchCache<S> = HashMap<Box<[u8]>, Arc<Matches<S>>>;

/// The subscription index with its match cache. All methods take `&self`; it is shared between connections.
pub struct Sublist<S> {
    /// The trie. Lookups take it shared, changes exclusively.
    root: RwLock<Level<S>>,
    /// Match results by literal subject. Only written while `root` is held (shared or exclusive), so a result
    /// computed before a change can never be stored after that change's eviction.
    cache: Mutex<MatchCache<S>>,
    /// Bumped on every insert and removal.
    generation: AtomicU64,
    /// Number of subscriptions in the index.
    count: AtomicUsize,
}

impl<S: Interest> Default for Sublist<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> std::fmt::Debug for Sublist<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sublist")
            .field("count", &self.count.load(Ordering::Relaxed))
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish()
    }
}

impl<S: Interest> Sublist<S> {
    /// An empty index.
    pub fn new() -> Self {
        Sublist {
            root: RwLock::new(Level::default()),
            cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            count: AtomicUsize::new(0),
        }
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes whenever a subscription is inserted or removed. A cache of [`Sublist::matches`] results is valid
    /// as long as this has not changed since the results were fetched.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of subjects in the match cache.
    pub fn cached_subjects(&self) -> usize {
        self.cache.lock().len()
    }

    /// Adds a subscription. Its subject must have no empty tokens and `>` only last; anything else is a literal.
    pub fn insert(&self, sub: Arc<S>) -> Result<(), SubjectError> {
        subject::check_filter(sub.subject(), false)?;
        let mut root = self.root.write();
        let mut tokens = subject::tokens(sub.subject()).peekable();
        let mut level: &mut Level<S> = &mut root;
        while let Some(token) = tokens.next() {
            let node: &mut Node<S> = match token {
                b"*" => level.star.get_or_insert_with(Box::default),
                b">" => level.full.get_or_insert_with(Box::default),
                literal => level.literals.entry(literal.into()).or_default(),
            };
            if tokens.peek().is_none() {
                let added = match sub.queue() {
                    None => node.plain.insert(sub.id(), sub.clone()).is_none(),
                    Some(queue) => node
                        .queues
                        .entry(queue.into())
                        .or_default()
                        .insert(sub.id(), sub.clone())
                        .is_none(),
                };
                if added {
                    self.count.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            level = node.next.get_or_insert_with(Box::default);
        }
        self.evict(&[sub.subject()]);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Removes a subscription; returns whether it was there.
    pub fn remove(&self, sub: &S) -> bool {
        self.remove_many(std::iter::once(sub)) == 1
    }

    /// Removes many subscriptions under one lock (a closing connection); returns how many were there.
    pub fn remove_many<'a>(&self, subs: impl IntoIterator<Item = &'a S>) -> usize
    where
        S: 'a,
    {
        let mut root = self.root.write();
        let mut removed = 0;
        let mut patterns: Vec<&[u8]> = Vec::new();
        for sub in subs {
            let tokens: Vec<&[u8]> = subject::tokens(sub.subject()).collect();
            if remove_from(&mut root, &tokens, sub.id(), sub.queue()) {
                removed += 1;
                patterns.push(sub.subject());
            }
        }
        if removed > 0 {
            self.count.fetch_sub(removed, Ordering::Relaxed);
            self.evict(&patterns);
            self.generation.fetch_add(1, Ordering::Release);
        }
        drop(root);
        removed
    }

    /// Drops cached results for subjects that any of `patterns` matches. Called with `root` held exclusively.
    fn evict(&self, patterns: &[&[u8]]) {
        let mut cache = self.cache.lock();
        if cache.is_empty() {
            return;
        }
        if patterns.len() > 16 {
            cache.clear();
            return;
        }
        for pattern in patterns {
            if pattern.iter().any(|&b| b == b'*' || b == b'>') {
                cache.retain(|subject, _| !subject::matches(pattern, subject));
            } else {
                cache.remove(*pattern);
            }
        }
    }

    /// The subscriptions matching the literal `subject`. Wildcard characters in `subject` are taken literally,
    /// and a subject with an empty token matches nothing.
    pub fn matches(&self, subject: &[u8]) -> Arc<Matches<S>> {
        if let Some(hit) = self.cache.lock().get(subject) {
            return hit.clone();
        }
        let tokens: Vec<&[u8]> = subject::tokens(subject).collect();
        if subject.is_empty() || tokens.iter().any(|t| t.is_empty()) {
            return Arc::new(Matches::empty());
        }
        let root = self.root.read();
        let mut result = Matches::empty();
        collect(&root, &tokens, &mut result);
        let result = Arc::new(result);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            // Evict about a quarter, in the map's (arbitrary) order.
            let mut keep = CACHE_MAX * 3 / 4;
            cache.retain(|_, _| {
                keep = keep.saturating_sub(1);
                keep > 0
            });
        }
        cache.insert(subject.into(), result.clone());
        drop(cache);
        drop(root);
        result
    }

    /// Every subscription in the index (for shutdown and diagnostics).
    pub fn all(&self) -> Vec<Arc<S>> {
        fn walk<S>(level: &Level<S>, out: &mut Vec<Arc<S>>) {
            let nodes = level
                .literals
                .values()
                .chain(level.star.as_deref())
                .chain(level.full.as_deref());
            for node in nodes {
                out.extend(node.plain.values().cloned());
                for members in node.queues.values() {
                    out.extend(members.values().cloned());
                }
                if let Some(next) = &node.next {
                    walk(next, out);
                }
            }
        }
        let mut out = Vec::with_capacity(self.len());
        walk(&self.root.read(), &mut out);
        out
    }
}

/// Adds every subscription matching `tokens` below `level` to `out` (nats-server's `matchLevel`).
fn collect<S>(level: &Level<S>, tokens: &[&[u8]], out: &mut Matches<S>) {
    let mut level = level;
    let last = tokens.len().saturating_sub(1);
    for (i, token) in tokens.iter().enumerate() {
        if let Some(full) = &level.full {
            out.add_node(full);
        }
        if let Some(star) = &level.star {
            if i == last {
                out.add_node(star);
            } else if let (Some(next), Some(rest)) = (&star.next, tokens.get(i + 1..)) {
                collect(next, rest, out);
            }
        }
        match level.literals.get(*token) {
            Some(node) if i == last => out.add_node(node),
            Some(node) => match &node.next {
                Some(next) => level = next,
                None => return,
            },
            None => return,
        }
    }
}

/// Removes subscription `id` at the end of `tokens`, pruning nodes left empty. Returns whether it was found.
fn remove_from<S>(level: &mut Level<S>, tokens: &[&[u8]], id: u64, queue: Option<&[u8]>) -> bool {
    let Some((token, rest)) = tokens.split_first() else {
        return false;
    };
    let node = match *token {
        b"*" => level.star.as_deref_mut(),
        b">" => level.full.as_deref_mut(),
        literal => level.literals.get_mut(literal),
    };
    let Some(node) = node else {
        return false;
    };
    let found = if rest.is_empty() {
        match queue {
            None => node.plain.remove(&id).is_some(),
            Some(queue) => match node.queues.get_mut(queue) {
                Some(members) => {
                    let found = members.remove(&id).is_some();
                    if members.is_empty() {
                        node.queues.remove(queue);
                    }
                    found
                }
                None => false,
            },
        }
    } else {
        match node.next.as_deref_mut() {
            Some(next) => {
                let found = remove_from(next, rest, id, queue);
                if next.is_empty() {
                    node.next = None;
                }
                found
            }
            None => false,
        }
    };
    if node.is_empty() {
        match *token {
            b"*" => level.star = None,
            b">" => level.full = None,
            literal => {
                level.literals.remove(literal);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug)]
    struct Sub {
        id: u64,
        subject: Vec<u8>,
        queue: Option<Vec<u8>>,
    }

    impl Interest for Sub {
        fn id(&self) -> u64 {
            self.id
        }
        fn subject(&self) -> &[u8] {
            &self.subject
        }
        fn queue(&self) -> Option<&[u8]> {
            self.queue.as_deref()
        }
    }

    fn sub(id: u64, subject: &str, queue: Option<&str>) -> Arc<Sub> {
        Arc::new(Sub {
            id,
            subject: subject.as_bytes().to_vec(),
            queue: queue.map(|q| q.as_bytes().to_vec()),
        })
    }

    fn plain_ids(m: &Matches<Sub>) -> BTreeSet<u64> {
        m.plain.iter().map(|s| s.id).collect()
    }

    fn group_ids(m: &Matches<Sub>) -> BTreeMap<Vec<u8>, BTreeSet<u64>> {
        m.groups
            .iter()
            .map(|g| (g.name.to_vec(), g.members.iter().map(|s| s.id).collect()))
            .collect()
    }

    #[test]
    fn literal_and_wildcards() {
        let list = Sublist::new();
        list.insert(sub(1, "foo.bar", None)).unwrap();
        list.insert(sub(2, "foo.*", None)).unwrap();
        list.insert(sub(3, "foo.>", None)).unwrap();
        list.insert(sub(4, ">", None)).unwrap();
        list.insert(sub(5, "*.bar", None)).unwrap();
        list.insert(sub(6, "foo", None)).unwrap();
        list.insert(sub(7, "*", None)).unwrap();
        assert_eq!(list.len(), 7);
        let ids = |s: &str| plain_ids(&list.matches(s.as_bytes()));
        assert_eq!(ids("foo.bar"), BTreeSet::from([1, 2, 3, 4, 5]));
        assert_eq!(ids("foo.baz"), BTreeSet::from([2, 3, 4]));
        assert_eq!(ids("foo.bar.baz"), BTreeSet::from([3, 4]));
        assert_eq!(ids("foo"), BTreeSet::from([4, 6, 7]));
        assert_eq!(ids("x.bar"), BTreeSet::from([4, 5]));
        assert_eq!(ids("x"), BTreeSet::from([4, 7]));
        assert_eq!(ids("foo..bar"), BTreeSet::new());
        assert_eq!(ids(""), BTreeSet::new());
    }

    #[test]
    fn invalid_subjects_are_refused() {
        let list = Sublist::new();
        assert_eq!(
            list.insert(sub(1, "a..b", None)),
            Err(SubjectError::EmptyToken)
        );
        assert_eq!(
            list.insert(sub(1, "a.>.b", None)),
            Err(SubjectError::FullWildcardNotLast)
        );
        assert_eq!(list.insert(sub(1, "", None)), Err(SubjectError::Empty));
        assert!(list.is_empty());
    }

    #[test]
    fn queue_groups_merge_across_patterns() {
        let list = Sublist::new();
        list.insert(sub(1, "a.b", Some("g"))).unwrap();
        list.insert(sub(2, "a.*", Some("g"))).unwrap();
        list.insert(sub(3, "a.>", Some("h"))).unwrap();
        list.insert(sub(4, "a.b", None)).unwrap();
        let m = list.matches(b"a.b");
        assert_eq!(plain_ids(&m), BTreeSet::from([4]));
        assert_eq!(
            group_ids(&m),
            BTreeMap::from([
                (b"g".to_vec(), BTreeSet::from([1, 2])),
                (b"h".to_vec(), BTreeSet::from([3]))
            ])
        );
    }

    #[test]
    fn cache_is_invalidated_by_changes() {
        let list = Sublist::new();
        let a = sub(1, "a.b", None);
        list.insert(a.clone()).unwrap();
        assert_eq!(plain_ids(&list.matches(b"a.b")), BTreeSet::from([1]));
        assert_eq!(plain_ids(&list.matches(b"a.c")), BTreeSet::new());
        assert_eq!(list.cached_subjects(), 2);
        let generation = list.generation();
        let w = sub(2, "a.*", None);
        list.insert(w.clone()).unwrap();
        assert_ne!(list.generation(), generation);
        assert_eq!(plain_ids(&list.matches(b"a.b")), BTreeSet::from([1, 2]));
        assert_eq!(plain_ids(&list.matches(b"a.c")), BTreeSet::from([2]));
        // Unrelated subjects stay cached.
        list.matches(b"x.y");
        list.insert(sub(3, "a.c", None)).unwrap();
        assert!(list.cache.lock().contains_key(&b"x.y"[..]));
        assert!(list.remove(&w));
        assert!(!list.remove(&w));
        assert_eq!(plain_ids(&list.matches(b"a.b")), BTreeSet::from([1]));
        assert_eq!(plain_ids(&list.matches(b"a.c")), BTreeSet::from([3]));
        assert!(list.remove(&a));
        assert_eq!(plain_ids(&list.matches(b"a.b")), BTreeSet::new());
    }

    #[test]
    fn removal_prunes_the_trie() {
        let list = Sublist::new();
        let subs: Vec<_> = ["a.b.c", "a.*.c", "a.>", "*", ">", "x.y"]
            .iter()
            .enumerate()
            .map(|(i, s)| sub(i as u64, s, if i % 2 == 0 { None } else { Some("q") }))
            .collect();
        for s in &subs {
            list.insert(s.clone()).unwrap();
        }
        assert_eq!(list.all().len(), subs.len());
        assert_eq!(
            list.remove_many(subs.iter().map(|s| s.as_ref())),
            subs.len()
        );
        assert!(list.is_empty());
        assert!(list.root.read().is_empty());
    }

    #[test]
    fn cache_stays_bounded() {
        let list = Sublist::new();
        list.insert(sub(1, ">", None)).unwrap();
        for i in 0..(CACHE_MAX * 3) {
            assert_eq!(list.matches(format!("s.{i}").as_bytes()).plain.len(), 1);
        }
        assert!(list.cached_subjects() <= CACHE_MAX);
    }

    fn naive(
        subs: &BTreeMap<u64, Arc<Sub>>,
        subject: &[u8],
    ) -> (BTreeSet<u64>, BTreeMap<Vec<u8>, BTreeSet<u64>>) {
        let mut plain = BTreeSet::new();
        let mut groups: BTreeMap<Vec<u8>, BTreeSet<u64>> = BTreeMap::new();
        for s in subs.values() {
            if subject::matches(&s.subject, subject) {
                match &s.queue {
                    None => {
                        plain.insert(s.id);
                    }
                    Some(q) => {
                        groups.entry(q.clone()).or_default().insert(s.id);
                    }
                }
            }
        }
        (plain, groups)
    }

    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "c", "*", ">"])
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..5).prop_map(|tokens| {
            // `>` only as the last token.
            let mut out: Vec<&str> = Vec::new();
            for t in tokens {
                out.push(t);
                if t == ">" {
                    break;
                }
            }
            out.join(".")
        })
    }

    fn literal() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 1..5)
            .prop_map(|t| t.join("."))
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(String, Option<&'static str>),
        Remove(usize),
        Match(String),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (pattern(), prop::option::of(prop::sample::select(vec!["q1", "q2"])))
                .prop_map(|(p, q)| Step::Insert(p, q)),
            1 => any::<usize>().prop_map(Step::Remove),
            4 => literal().prop_map(Step::Match),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_a_naive_matcher(steps in prop::collection::vec(step(), 1..120)) {
            let list = Sublist::new();
            let mut live: BTreeMap<u64, Arc<Sub>> = BTreeMap::new();
            let mut next_id = 0u64;
            for step in steps {
                match step {
                    Step::Insert(p, q) => {
                        next_id += 1;
                        let s = sub(next_id, &p, q);
                        list.insert(s.clone()).unwrap();
                        live.insert(next_id, s);
                    }
                    Step::Remove(i) => {
                        if !live.is_empty() {
                            let key = *live.keys().nth(i % live.len()).unwrap();
                            let s = live.remove(&key).unwrap();
                            prop_assert!(list.remove(&s));
                        }
                    }
                    Step::Match(subject) => {
                        let m = list.matches(subject.as_bytes());
                        let (plain, groups) = naive(&live, subject.as_bytes());
                        prop_assert_eq!(plain_ids(&m), plain);
                        prop_assert_eq!(group_ids(&m), groups);
                    }
                }
                prop_assert_eq!(list.len(), live.len());
            }
        }
    }
}
