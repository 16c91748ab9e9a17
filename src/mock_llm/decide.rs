//! What the mock answers: a pure function of its configuration and the
//! request ([`decide`]), with every random draw derived from a hash of the
//! request ([`Draws`]), so the answer does not depend on timing or order.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

use super::MockConfig;

/// Answers that replace a rule answer when `quality` says so.
const WRONG_ANSWERS: &[&str] = &[
    "I am not sure.",
    "Unknown.",
    "That cannot be answered.",
    "No idea, sorry.",
];

/// FNV-1a, then splitmix64 per draw: stable across platforms and versions.
/// Public so simulations (benches/canary_sim.rs) draw pass/fail exactly as
/// the mock decides it, without a server.
pub struct Draws(u64);

/// The salt of the draw that decides whether a rule answer is kept
/// (`unit(QUALITY_SALT) < quality`).
pub const QUALITY_SALT: u64 = 2;

impl Draws {
    pub fn new(seed: u64) -> Self {
        let mut d = Draws(0xcbf2_9ce4_8422_2325);
        d.feed(&seed.to_le_bytes());
        d
    }
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
    pub fn u64(&self, salt: u64) -> u64 {
        let mut z = self.0 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&self, salt: u64) -> f64 {
        (self.u64(salt) >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub(super) enum Answer {
    Error,
    Text(String),
    Tool { name: String, arguments: Value },
}

pub(super) struct Outcome {
    pub(super) answer: Answer,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    /// A hash of the request, for response and tool-call ids.
    pub(super) id: u64,
}

static CALL_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?is)\bcall\s+([A-Za-z_][A-Za-z0-9_.\-]*)\s*(\{.*\})?").ok());

fn tool_names(tools: &[Value]) -> impl Iterator<Item = &str> {
    tools.iter().filter_map(|t| {
        t.pointer("/function/name")
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
    })
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Whether the request asks for JSON (Ollama `format`, OpenAI `response_format`).
pub(super) fn json_mode(format: Option<&Value>, response_format: Option<&Value>) -> bool {
    let ollama = match format {
        Some(Value::String(s)) => s == "json",
        Some(Value::Object(_)) => true,
        _ => false,
    };
    let openai = response_format
        .and_then(|rf| rf.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_object" || t == "json_schema");
    ollama || openai
}

/// The text of a message's content; for content parts the first text part
/// is enough for matching.
pub(super) fn text_of(content: &Value) -> &str {
    match content {
        Value::String(s) => s,
        Value::Array(parts) => parts
            .iter()
            .find_map(|p| p.get("text").and_then(Value::as_str))
            .unwrap_or(""),
        _ => "",
    }
}

/// The last user message's text (else the last message's).
pub(super) fn last_user<'a>(contents: &[(&str, &'a str)]) -> &'a str {
    contents
        .iter()
        .rev()
        .find(|(r, _)| *r == "user")
        .or(contents.last())
        .map_or("", |(_, t)| t)
}

/// The answer to a request of `model` with messages `contents` (role, text).
pub(super) fn decide(
    cfg: &MockConfig,
    model: &str,
    sampling_seed: Option<i64>,
    contents: &[(&str, &str)],
    last_user: &str,
    tools: &[Value],
    json: bool,
) -> Outcome {
    let mut draws = Draws::new(cfg.seed);
    draws.feed(model.as_bytes());
    if let Some(s) = sampling_seed {
        draws.feed(&s.to_le_bytes());
    }
    let mut input_tokens = 0;
    for (role, text) in contents {
        draws.feed(role.as_bytes());
        draws.feed(text.as_bytes());
        input_tokens += words(text);
    }
    let id = draws.u64(0);
    let out = |answer: Answer, output_tokens| Outcome {
        answer,
        input_tokens,
        output_tokens,
        id,
    };
    if cfg.error_rate > 0.0 && draws.unit(1) < cfg.error_rate {
        return out(Answer::Error, 0);
    }
    if !tools.is_empty()
        && let Some(caps) = CALL_RE.as_ref().and_then(|re| re.captures(last_user))
    {
        let name = caps.get(1).map_or("", |m| m.as_str());
        if tool_names(tools).any(|t| t == name) {
            let arguments = caps
                .get(2)
                .and_then(|m| serde_json::from_str::<Value>(m.as_str()).ok())
                .unwrap_or_else(|| json!({}));
            let n = words(&arguments.to_string()).max(1);
            return out(
                Answer::Tool {
                    name: name.to_string(),
                    arguments,
                },
                n,
            );
        }
    }
    let mut text = None;
    for rule in &cfg.rules {
        if let Some(caps) = rule.pattern.captures(last_user) {
            let mut s = String::with_capacity(rule.answer.len() + 16);
            caps.expand(&rule.answer, &mut s);
            if cfg.quality < 1.0 && draws.unit(QUALITY_SALT) >= cfg.quality {
                s = WRONG_ANSWERS[(draws.u64(3) % WRONG_ANSWERS.len() as u64) as usize].to_string();
            }
            text = Some(s);
            break;
        }
    }
    let mut text = text.unwrap_or_else(|| last_user.to_string());
    if json {
        text = json!({ "answer": text }).to_string();
    }
    let n = words(&text);
    out(Answer::Text(text), n)
}

/// Splits an answer into word chunks, each word with the whitespace before it,
/// so that concatenating the chunks gives the answer back exactly.
pub(super) fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_ws = true;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        // A whitespace run after a word starts the next chunk.
        if ws && !prev_ws && !text[start..i].trim().is_empty() {
            out.push(&text[start..i]);
            start = i;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        match out.last_mut() {
            // Trailing whitespace joins the last word.
            Some(last) if text[start..].trim().is_empty() => {
                let from = text.len() - last.len() - (text.len() - start);
                *last = &text[from..];
            }
            _ => out.push(&text[start..]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse_rules;
    use super::*;

    #[test]
    fn chunks_concatenate_to_the_answer() {
        for text in ["", "one", "Hello  big\nworld ", "  lead", "é ü x"] {
            assert_eq!(chunks(text).concat(), text);
        }
        assert_eq!(chunks("a bc d"), vec!["a", " bc", " d"]);
        assert_eq!(chunks("a b "), vec!["a", " b "]);
    }

    #[test]
    fn rules_expand_captures_first_match_wins() {
        let rules = parse_rules(
            "- pattern: 'capital of (?P<c>\\w+)'\n  answer: 'The capital of ${c} is X.'\n- pattern: 'capital'\n  answer: never\n",
        )
        .unwrap();
        let cfg = MockConfig {
            rules,
            ..MockConfig::default()
        };
        let o = decide(
            &cfg,
            "m",
            None,
            &[("user", "capital of France?")],
            "capital of France?",
            &[],
            false,
        );
        match o.answer {
            Answer::Text(t) => assert_eq!(t, "The capital of France is X."),
            _ => panic!("expected text"),
        }
        assert_eq!(o.input_tokens, 3);
        assert_eq!(o.output_tokens, 6);
    }

    #[test]
    fn quality_zero_always_wrong_and_deterministic() {
        let cfg = MockConfig {
            rules: parse_rules("- pattern: '.*'\n  answer: right\n").unwrap(),
            quality: 0.0,
            seed: 7,
            ..MockConfig::default()
        };
        let a = |q: &str| match decide(&cfg, "m", None, &[("user", q)], q, &[], false).answer {
            Answer::Text(t) => t,
            _ => panic!(),
        };
        for q in ["a", "b", "c"] {
            assert!(WRONG_ANSWERS.contains(&a(q).as_str()));
            assert_eq!(a(q), a(q));
        }
    }

    #[test]
    fn the_sampling_seed_makes_independent_draws() {
        let cfg = MockConfig {
            rules: parse_rules("- pattern: '.*'\n  answer: right\n").unwrap(),
            quality: 0.5,
            ..MockConfig::default()
        };
        let right =
            |seed: Option<i64>| match decide(&cfg, "m", seed, &[("user", "q")], "q", &[], false)
                .answer
            {
                Answer::Text(t) => t == "right",
                _ => panic!(),
            };
        // Same request, same answer; over 64 seeds both answers occur.
        assert_eq!(right(Some(3)), right(Some(3)));
        let rights = (0..64).filter(|s| right(Some(*s))).count();
        assert!(
            (8..=56).contains(&rights),
            "{rights}/64 right at quality 0.5"
        );
    }
}
