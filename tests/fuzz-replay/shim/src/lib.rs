//! Stands in for `libfuzzer_sys` when a fuzz target is compiled as a
//! module of the stable corpus replay: the target's body becomes
//! `pub fn fuzz_one(data: &[u8])`, called once per corpus file.

/// `fuzz_target!(|data: &[u8]| { ... })` as `pub fn fuzz_one(data: &[u8])`.
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        /// One input, as libFuzzer would hand it over.
        pub fn fuzz_one($data: &[u8]) $body
    };
}
