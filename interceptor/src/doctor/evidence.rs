//! Doctor warnings for the controls the configuration cannot produce
//! evidence for (`config::evidence`): warnings, not failures, since the
//! agent runs; `report nist` would show them short of met.

use super::{Check, warn};
use crate::config::{Config, evidence};

/// One `evidence` warning per control, with its fix.
pub fn checks(cfg: &Config) -> Vec<Check> {
    evidence::gaps(cfg)
        .into_iter()
        .map(|g| warn("evidence", format!("{}: {}", g.control, g.problem), g.fix))
        .collect()
}
