//! Which announcements are posted one by one and which are counted into
//! a summary. A fixed window: at most `max_posts` posts per window (the
//! summary of the previous window included) and `max_posts_per_caller`
//! per caller, so one caller's flood neither spams the channel nor uses
//! up the posts another caller's request needs. Nothing is dropped: what
//! is not posted is counted per caller and summarized when the window ends.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use tokio::time::Instant;

/// Who asked: subject and issuer ("alice" of one issuer is not "alice"
/// of another).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Asker {
    /// The caller's subject.
    pub subject: String,
    /// The caller's issuer ("" for anonymous).
    pub issuer: String,
}

/// What to do with one announcement.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Post it now.
    Post,
    /// Counted for the summary; when `Some`, the caller schedules the
    /// flush at that instant (no flush was pending).
    Counted(Option<Instant>),
}

/// The requests of one window not announced one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Requests counted in the window.
    pub total: u64,
    /// Per caller, most requests first.
    pub by_caller: Vec<(Asker, u64)>,
    /// The window's length.
    pub interval_seconds: u64,
}

/// The post budget of the current window and what it did not cover.
pub struct Limiter {
    interval: Duration,
    max_posts: u32,
    per_caller: u32,
    window_start: Instant,
    posts: u32,
    posted: HashMap<Asker, u32>,
    counted: BTreeMap<Asker, u64>,
    flush_pending: bool,
}

impl Limiter {
    /// An empty window starting at `now`.
    pub fn new(interval: Duration, max_posts: u32, per_caller: u32, now: Instant) -> Self {
        Self {
            interval,
            max_posts,
            per_caller,
            window_start: now,
            posts: 0,
            posted: HashMap::new(),
            counted: BTreeMap::new(),
            flush_pending: false,
        }
    }

    /// Decides for one new request of `who`.
    pub fn admit(&mut self, who: &Asker, now: Instant) -> Admit {
        // While a flush is pending the window it closes is still open, so
        // what comes in meanwhile lands in that summary, not in a gap.
        if !self.flush_pending && now >= self.window_start + self.interval {
            self.roll(now);
        }
        let mine = self.posted.get(who).copied().unwrap_or(0);
        if self.posts < self.max_posts && mine < self.per_caller {
            self.posts += 1;
            self.posted.insert(who.clone(), mine + 1);
            return Admit::Post;
        }
        *self.counted.entry(who.clone()).or_insert(0) += 1;
        if self.flush_pending {
            return Admit::Counted(None);
        }
        self.flush_pending = true;
        Admit::Counted(Some(self.window_start + self.interval))
    }

    /// Closes the window: what was counted, if anything, to be posted as
    /// the first post of the next window.
    pub fn flush(&mut self, now: Instant) -> Option<Summary> {
        self.flush_pending = false;
        self.roll(now);
        if self.counted.is_empty() {
            return None;
        }
        self.posts = 1;
        let mut by_caller: Vec<(Asker, u64)> =
            std::mem::take(&mut self.counted).into_iter().collect();
        by_caller.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Some(Summary {
            total: by_caller.iter().map(|(_, n)| n).sum(),
            by_caller,
            interval_seconds: self.interval.as_secs(),
        })
    }

    fn roll(&mut self, now: Instant) {
        self.window_start = now;
        self.posts = 0;
        self.posted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(s: &str) -> Asker {
        Asker {
            subject: s.into(),
            issuer: "https://idp".into(),
        }
    }

    #[test]
    fn a_flood_is_counted_and_another_caller_still_gets_through() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Duration::from_secs(10), 5, 2, t0);
        let admits: Vec<Admit> = (0..300).map(|_| l.admit(&who("alice"), t0)).collect();
        assert_eq!(admits.iter().filter(|a| **a == Admit::Post).count(), 2);
        assert_eq!(
            admits[2],
            Admit::Counted(Some(t0 + Duration::from_secs(10)))
        );
        assert_eq!(admits[3], Admit::Counted(None));
        // Alice's flood used two posts of five: bob is announced.
        assert_eq!(l.admit(&who("bob"), t0), Admit::Post);
        assert_eq!(l.admit(&who("bob"), t0), Admit::Post);
        assert_eq!(l.admit(&who("bob"), t0), Admit::Counted(None));
        let s = l.flush(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(s.total, 299);
        assert_eq!(s.by_caller, vec![(who("alice"), 298), (who("bob"), 1)]);
        // The next window: the summary took one post.
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(l.admit(&who("bob"), t1), Admit::Post);
        assert_eq!(l.admit(&who("bob"), t1), Admit::Post);
        assert_eq!(l.admit(&who("carol"), t1), Admit::Post);
        assert_eq!(l.admit(&who("dave"), t1), Admit::Post);
        assert_eq!(
            l.admit(&who("erin"), t1),
            Admit::Counted(Some(t0 + Duration::from_secs(20)))
        );
        assert_eq!(l.flush(t0 + Duration::from_secs(20)).unwrap().total, 1);
        assert_eq!(l.flush(t0 + Duration::from_secs(30)), None);
    }
}
