//! Masking throughput, in-process and single-threaded (one core): the
//! `standard` profile over a realistic tool-result corpus (customer
//! records, 5-10% sensitive). The headline is the agent's path for a tool
//! result as MCP servers send them, the records as JSON text in
//! `content[].text`: `mask_json` on the parsed message, which parses that
//! text, masks inside it and writes it back compact. Also: the records as
//! parsed JSON (`structuredContent`), as plain text (`mask_str`), and the
//! text with nothing to mask (the no-copy path).

use std::time::Instant;

use anyhow::Result;
use interceptor::{
    config::Mask,
    mask::{Counts, Masker},
};
use serde::Serialize;

use crate::corpus::corpus;

/// The target: at least this many MB/s per core.
pub const TARGET_MB_S: f64 = 200.0;

#[derive(Debug, Clone, Serialize)]
pub struct MaskRate {
    pub corpus_bytes: usize,
    pub rounds: usize,
    /// A tool result whose text is the corpus JSON, masked with
    /// `mask_json` (the agent's path: the embedded JSON is parsed, masked
    /// and written back).
    pub tool_result_mb_s: f64,
    /// The corpus as parsed JSON, walked and masked.
    pub json_mb_s: f64,
    /// The same text masked as one string.
    pub text_mb_s: f64,
    /// Text with no sensitive value: the prefilter-only path.
    pub clean_mb_s: f64,
    pub values_masked_per_round: u64,
    pub target_mb_s: f64,
    pub target_met: bool,
}

fn mb_s(bytes: usize, rounds: usize, secs: f64) -> f64 {
    (bytes * rounds) as f64 / secs / 1e6
}

pub fn measure(bytes: usize, rounds: usize) -> Result<MaskRate> {
    let masker = Masker::new(&Mask::default(), [7; 32])?;
    let profile = masker.profile(None);
    let text = corpus(42, bytes);
    let parsed: serde_json::Value = serde_json::from_str(&text)?;

    // Warm-up, and the count of values one round masks.
    let mut counts = Counts::new();
    let mut v = parsed.clone();
    profile.mask_json(&mut v, &mut counts);
    let values: u64 = counts.values().map(|c| u64::from(*c)).sum();
    anyhow::ensure!(
        values > 0,
        "the corpus has nothing to mask: the bench is broken"
    );

    // Clones are made outside the timed region: the agent masks the value
    // it parsed in place.
    let mut copies: Vec<serde_json::Value> = (0..rounds).map(|_| parsed.clone()).collect();
    let t = Instant::now();
    for v in &mut copies {
        let mut c = Counts::new();
        profile.mask_json(v, &mut c);
    }
    let json_mb_s = mb_s(text.len(), rounds, t.elapsed().as_secs_f64());
    drop(copies);

    let tool = serde_json::json!({"content": [{"type": "text", "text": text}]});
    let mut counts = Counts::new();
    let mut v = tool.clone();
    profile.mask_json(&mut v, &mut counts);
    let tool_values: u64 = counts.values().map(|c| u64::from(*c)).sum();
    anyhow::ensure!(
        tool_values == values,
        "the tool result masked {tool_values} values, the parsed corpus {values}"
    );
    let mut copies: Vec<serde_json::Value> = (0..rounds).map(|_| tool.clone()).collect();
    let t = Instant::now();
    for v in &mut copies {
        let mut c = Counts::new();
        profile.mask_json(v, &mut c);
    }
    let tool_result_mb_s = mb_s(text.len(), rounds, t.elapsed().as_secs_f64());
    drop(copies);

    let t = Instant::now();
    for _ in 0..rounds {
        let mut c = Counts::new();
        std::hint::black_box(profile.mask_str(&text, &mut c));
    }
    let text_mb_s = mb_s(text.len(), rounds, t.elapsed().as_secs_f64());

    // Digits, '@', separators and case removed: no detector can match
    // (token prefixes and `eyJ` need them), the structure stays.
    let clean: String = text
        .chars()
        .map(|c| match c {
            '0'..='9' => 'x',
            '@' | '+' | '-' | '_' => ' ',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let t = Instant::now();
    for _ in 0..rounds {
        let mut c = Counts::new();
        let out = profile.mask_str(&clean, &mut c);
        anyhow::ensure!(out.is_none(), "the clean corpus was changed");
    }
    let clean_mb_s = mb_s(clean.len(), rounds, t.elapsed().as_secs_f64());
    Ok(MaskRate {
        corpus_bytes: text.len(),
        rounds,
        tool_result_mb_s,
        json_mb_s,
        text_mb_s,
        clean_mb_s,
        values_masked_per_round: values,
        target_mb_s: TARGET_MB_S,
        target_met: tool_result_mb_s >= TARGET_MB_S,
    })
}

impl MaskRate {
    pub fn summary(&self) -> String {
        format!(
            "Masking (profile standard, one core, {:.1} MB tool-result corpus, {} values masked per pass, {} passes): {:.0} MB/s on a tool result carrying the records as JSON text (the agent's path: the text is parsed, masked and written back), {:.0} MB/s on the records as parsed JSON, {:.0} MB/s as plain text, {:.0} MB/s on text with nothing to mask; target >= {:.0} MB/s per core on the agent's path: {}.",
            self.corpus_bytes as f64 / 1e6,
            self.values_masked_per_round,
            self.rounds,
            self.tool_result_mb_s,
            self.json_mb_s,
            self.text_mb_s,
            self.clean_mb_s,
            self.target_mb_s,
            if self.target_met { "met" } else { "not met" }
        )
    }
}
