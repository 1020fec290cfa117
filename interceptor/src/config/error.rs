//! Why a parsed configuration is refused.

/// Why parsed values are refused; the text names the keys, and
/// `ConfigError::Invalid` adds the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// One key's value is out of range, malformed or empty.
    #[error("{0}")]
    Invalid(String),
    /// Keys that contradict each other, or one that needs another.
    #[error("{0}")]
    Conflict(String),
}
