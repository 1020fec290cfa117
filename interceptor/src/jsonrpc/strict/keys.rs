//! The keys of every open object during `scan`, folded as Go's
//! case-insensitive match folds them, without a set or a `String` per
//! object or key: folded keys go into one arena (cut back when their
//! object closes), and each object keeps (hash, range) pairs, with a hash
//! set once it grows past a few keys so that a large object costs
//! linear time. Equal hashes are confirmed on the folded text, so a
//! collision never refuses a message.

use std::{
    collections::HashSet,
    hash::{BuildHasher, RandomState},
    ops::Range,
};

/// Past this many keys an object also keeps a set of its keys' hashes.
const LINEAR: usize = 16;

/// One open object's keys.
#[derive(Default)]
struct Object {
    /// Where its keys start in the arena.
    base: usize,
    keys: Vec<(u64, Range<usize>)>,
    hashes: HashSet<u64>,
}

/// The open objects (and arrays, which hold no keys) of one scan.
pub(super) struct Open {
    arena: String,
    /// Per open bracket: the object's index in `objects`, `None` for an array.
    stack: Vec<Option<usize>>,
    /// Objects by depth; kept when closed, so their buffers are reused.
    objects: Vec<Object>,
    depth: usize,
    hasher: RandomState,
}

impl Open {
    pub(super) fn new() -> Self {
        Self {
            arena: String::new(),
            stack: Vec::new(),
            objects: Vec::new(),
            depth: 0,
            hasher: RandomState::new(),
        }
    }

    pub(super) fn object(&mut self) {
        if self.objects.len() == self.depth {
            self.objects.push(Object::default());
        }
        let o = &mut self.objects[self.depth];
        o.base = self.arena.len();
        o.keys.clear();
        o.hashes.clear();
        self.stack.push(Some(self.depth));
        self.depth += 1;
    }

    pub(super) fn array(&mut self) {
        self.stack.push(None);
    }

    pub(super) fn close(&mut self) {
        if let Some(Some(d)) = self.stack.pop() {
            self.arena.truncate(self.objects[d].base);
            self.depth = d;
        }
    }

    /// Whether the innermost open bracket is an object.
    pub(super) fn in_object(&self) -> bool {
        matches!(self.stack.last(), Some(Some(_)))
    }

    /// Adds a key, its text given raw (between its quotes, escapes as
    /// sent); `decode` gives the decoded key when it has escapes or is
    /// not ASCII. Whether it was new in its object (by folded text).
    pub(super) fn insert<E>(
        &mut self,
        raw: &[u8],
        decode: impl FnOnce() -> Result<String, E>,
    ) -> Result<bool, E> {
        let Some(Some(d)) = self.stack.last().copied() else {
            return Ok(true);
        };
        let start = self.arena.len();
        if raw.is_ascii() && !raw.contains(&b'\\') {
            // ASCII folds as ASCII: `char::to_lowercase` of an ASCII
            // letter is its ASCII lower case, and no ASCII char maps to
            // another one.
            for &c in raw {
                self.arena.push(char::from(c.to_ascii_lowercase()));
            }
        } else {
            super::fold_into(&decode()?, &mut self.arena);
        }
        let h = self.hasher.hash_one(&self.arena[start..]);
        let o = &mut self.objects[d];
        let maybe_seen = if o.keys.len() < LINEAR {
            o.keys.iter().any(|(k, _)| *k == h)
        } else {
            if o.hashes.is_empty() {
                o.hashes.extend(o.keys.iter().map(|(k, _)| *k));
            }
            !o.hashes.insert(h)
        };
        let text = &self.arena[start..];
        if maybe_seen
            && o.keys
                .iter()
                .any(|(k, r)| *k == h && self.arena[r.clone()] == *text)
        {
            self.arena.truncate(start);
            return Ok(false);
        }
        o.keys.push((h, start..self.arena.len()));
        Ok(true)
    }
}
