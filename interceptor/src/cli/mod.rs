//! The command line: the command tree and one file per command.

pub mod approvals;
pub mod policy;
pub mod report;
pub mod tools;
