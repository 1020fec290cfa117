//! What the status rules share: a status from the rows a rule judges, and
//! the gap that names the rows that fall short.

use super::nist::{Gap, Sample, Status, of, samples};
use crate::audit::schema::AuditRow;

/// The status of a rule over `judged` rows of which `short` fall short:
/// met when none does, not met when all do, partial in between, and not
/// assessed when there is nothing to judge.
pub(super) fn by_rows(judged: usize, short: usize) -> Status {
    match (judged, short) {
        (0, _) => Status::NotAssessed,
        (_, 0) => Status::Met,
        (j, s) if s >= j => Status::NotMet,
        _ => Status::Partial,
    }
}

/// The worse of two statuses.
pub(super) fn worse(a: Status, b: Status) -> Status {
    a.max(b)
}

/// A rule's outcome over rows: how many it judged, which fell short.
pub(super) struct Tally<'a> {
    /// The rows the rule judges.
    pub judged: usize,
    /// Those that fall short of it.
    pub short: Vec<&'a AuditRow>,
}

impl<'a> Tally<'a> {
    /// Judges `rows` by `holds`.
    pub fn of(rows: impl Iterator<Item = &'a AuditRow>, holds: impl Fn(&AuditRow) -> bool) -> Self {
        let mut t = Tally {
            judged: 0,
            short: Vec::new(),
        };
        for r in rows {
            t.judged += 1;
            if !holds(r) {
                t.short.push(r);
            }
        }
        t
    }

    /// The status [`by_rows`] gives.
    pub fn status(&self) -> Status {
        by_rows(self.judged, self.short.len())
    }

    /// "n of m `what`": how many of the judged rows hold, for a verdict.
    pub fn held(&self, what: &str) -> String {
        format!(
            "{} of {} {what}",
            self.judged - self.short.len(),
            self.judged
        )
    }

    /// "n of m (p%)" of the rows that fall short.
    pub fn share(&self) -> String {
        of(self.short.len(), self.judged)
    }

    /// The gap these rows make, if any: `what` says what is wrong with
    /// them ("are anonymous"), `which` selects them, `fix` mends it.
    pub fn gap(&self, noun: &str, what: &str, which: &str, fix: &str) -> Option<Gap> {
        (!self.short.is_empty()).then(|| Gap {
            cause: format!("{} {noun} {what}", self.share()),
            which: which.to_string(),
            fix: fix.to_string(),
            rows: samples(self.short.iter().copied()),
        })
    }
}

/// A gap that is a setting, not rows.
pub(super) fn setting_gap(cause: impl Into<String>, which: &str, fix: &str) -> Gap {
    Gap {
        cause: cause.into(),
        which: which.to_string(),
        fix: fix.to_string(),
        rows: Vec::<Sample>::new(),
    }
}
