//! Nothing but the test in tests/replay.rs (see Cargo.toml).
