use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// One parsed sample line: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of text format 0.0.4, written independently of the
/// renderer: HELP/TYPE comments, `name{k="v",...} value` samples, label
/// escapes `\\`, `\"`, `\n`. Returns the samples and the TYPE of each family,
/// and fails on anything malformed (including a sample before its TYPE or a
/// family declared twice).
fn parse(text: &str) -> Result<(Vec<Line>, HashMap<String, String>), String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut current: Option<String> = None;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("output must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or_else(|| err("HELP"))?;
            if helps.insert(name.into(), help.into()).is_some() {
                return Err(err("second HELP"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("TYPE"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err("bad type"));
            }
            if types.insert(name.into(), kind.into()).is_some() {
                return Err(err("second TYPE"));
            }
            current = Some(name.into());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(err("unexpected comment or blank line"));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(err("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let consumed: usize;
            loop {
                // label name
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == '=' {
                        break;
                    }
                    if c == '}' && key.is_empty() {
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        return Err(err("bad label name"));
                    }
                    key.push(c);
                    chars.next();
                }
                if let Some(&(i, '}')) = chars.peek() {
                    consumed = i + 1;
                    break;
                }
                if chars.next().map(|x| x.1) != Some('=') || chars.next().map(|x| x.1) != Some('"')
                {
                    return Err(err("expected =\""));
                }
                let mut val = String::new();
                loop {
                    match chars.next() {
                        None => return Err(err("unterminated label value")),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next().map(|x| x.1) {
                            Some('\\') => val.push('\\'),
                            Some('"') => val.push('"'),
                            Some('n') => val.push('\n'),
                            _ => return Err(err("bad escape")),
                        },
                        Some((_, '\n')) => return Err(err("raw newline")),
                        Some((_, c)) => val.push(c),
                    }
                }
                if labels.insert(key, val).is_some() {
                    return Err(err("duplicate label"));
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        consumed = i + 1;
                        break;
                    }
                    _ => return Err(err("expected , or }")),
                }
            }
            rest = &r[consumed..];
        }
        let value = rest.strip_prefix(' ').ok_or_else(|| err("no space"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse::<f64>().map_err(|_| err("bad value"))?,
        };
        let family = current
            .as_deref()
            .ok_or_else(|| err("sample before TYPE"))?;
        let base_ok = name == family
            || (types.get(family).map(String::as_str) == Some("histogram")
                && [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .iter()
                .any(|s| s == name));
        if !base_ok {
            return Err(err("sample outside its family"));
        }
        samples.push(Line {
            name: name.into(),
            labels,
            value,
        });
    }
    Ok((samples, types))
}

fn find<'a>(lines: &'a [Line], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| {
            l.name == name
                && labels
                    .iter()
                    .all(|(k, v)| l.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn one(lines: &[Line], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(lines, name, labels);
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

fn sample<'a>(
    prompt: &'a str,
    variant: &'a str,
    status: &'a str,
    latency_ms: f64,
) -> RequestSample<'a> {
    RequestSample {
        prompt,
        variant,
        status,
        latency_ms,
        ttft_ms: Some(latency_ms / 2.0),
        input_tokens: 10,
        output_tokens: 5,
        cost: 0.001,
    }
}

#[test]
fn empty_registry_renders_headers_and_reload_counters() {
    let m = Metrics::new();
    let text = m.render(&[]);
    let (lines, types) = parse(&text).unwrap();
    assert_eq!(types["promptgate_requests_total"], "counter");
    assert_eq!(types["promptgate_request_latency_seconds"], "histogram");
    assert_eq!(types["promptgate_ttft_seconds"], "histogram");
    assert_eq!(
        one(&lines, "promptgate_reloads_total", &[("result", "ok")]),
        0.0
    );
    assert_eq!(
        one(&lines, "promptgate_reloads_total", &[("result", "failed")]),
        0.0
    );
}

#[test]
fn requests_are_counted_by_prompt_variant_status_with_histograms() {
    let m = Metrics::new();
    m.record_request(&sample("greet", "stable", "ok", 3.0));
    m.record_request(&sample("greet", "stable", "ok", 700.0));
    m.record_request(&sample("greet", "canary", "error", 40.0));
    m.record_request(&RequestSample {
        ttft_ms: None,
        ..sample("greet", "stable", "timeout", 400_000.0)
    });
    let (lines, _) = parse(&m.render(&[])).unwrap();
    let req = "promptgate_requests_total";
    assert_eq!(
        one(
            &lines,
            req,
            &[("prompt", "greet"), ("variant", "stable"), ("status", "ok")]
        ),
        2.0
    );
    assert_eq!(
        one(&lines, req, &[("variant", "stable"), ("status", "timeout")]),
        1.0
    );
    assert_eq!(
        one(&lines, req, &[("variant", "canary"), ("status", "error")]),
        1.0
    );

    let lat = [("prompt", "greet"), ("variant", "stable")];
    let b = |le: &str| {
        let mut l = lat.to_vec();
        l.push(("le", le));
        one(&lines, "promptgate_request_latency_seconds_bucket", &l)
    };
    assert_eq!(b("0.005"), 1.0); // 3 ms
    assert_eq!(b("0.5"), 1.0);
    assert_eq!(b("1"), 2.0); // 700 ms
    assert_eq!(b("300"), 2.0); // 400 s is above every bound
    assert_eq!(b("+Inf"), 3.0);
    assert_eq!(
        one(&lines, "promptgate_request_latency_seconds_count", &lat),
        3.0
    );
    let sum = one(&lines, "promptgate_request_latency_seconds_sum", &lat);
    assert!((sum - 400.703).abs() < 1e-9, "{sum}");
    // The timeout had no first token: TTFT counts only the two others.
    assert_eq!(one(&lines, "promptgate_ttft_seconds_count", &lat), 2.0);
    assert_eq!(one(&lines, "promptgate_input_tokens_total", &lat), 30.0);
    assert_eq!(one(&lines, "promptgate_output_tokens_total", &lat), 15.0);
    let cost = one(&lines, "promptgate_cost_total", &lat);
    assert!((cost - 0.003).abs() < 1e-12);
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    let nasty = "a\"b\\c\nd{e}=,f é";
    m.record_request(&sample(nasty, "stable", "ok", 1.0));
    m.record_upstream_error("up\"1", "timeout\n");
    let text = m.render(&[]);
    assert!(text.contains(r#"prompt="a\"b\\c\nd{e}=,f é""#), "{text}");
    let (lines, _) = parse(&text).unwrap();
    assert_eq!(
        one(&lines, "promptgate_requests_total", &[("prompt", nasty)]),
        1.0
    );
    assert_eq!(
        one(
            &lines,
            "promptgate_upstream_errors_total",
            &[("upstream", "up\"1"), ("kind", "timeout\n")]
        ),
        1.0
    );
}

#[test]
fn upstream_errors_and_reloads_are_counted() {
    let m = Metrics::new();
    m.record_upstream_error("ollama", "timeout");
    m.record_upstream_error("ollama", "timeout");
    m.record_upstream_error("ollama", "connect");
    m.record_upstream_error("openai", "timeout");
    m.record_reload(true);
    m.record_reload(true);
    m.record_reload(false);
    let (lines, _) = parse(&m.render(&[])).unwrap();
    let e = "promptgate_upstream_errors_total";
    assert_eq!(
        one(&lines, e, &[("upstream", "ollama"), ("kind", "timeout")]),
        2.0
    );
    assert_eq!(
        one(&lines, e, &[("upstream", "ollama"), ("kind", "connect")]),
        1.0
    );
    assert_eq!(
        one(&lines, e, &[("upstream", "openai"), ("kind", "timeout")]),
        1.0
    );
    assert_eq!(
        one(&lines, "promptgate_reloads_total", &[("result", "ok")]),
        2.0
    );
    assert_eq!(
        one(&lines, "promptgate_reloads_total", &[("result", "failed")]),
        1.0
    );
}

#[test]
fn gauges_with_one_name_share_one_header_even_when_interleaved() {
    let m = Metrics::new();
    let g = |name, labels: Vec<(&'static str, String)>, value| GaugeSample {
        name,
        help: "help \\ text\nline",
        labels,
        value,
    };
    let gauges = vec![
        g(
            "promptgate_breaker_state",
            vec![("upstream", "a".into())],
            0.0,
        ),
        g("promptgate_log_queue_depth", vec![], 17.0),
        g(
            "promptgate_breaker_state",
            vec![("upstream", "b".into())],
            2.0,
        ),
        g("promptgate_log_weird", vec![], f64::INFINITY),
    ];
    let text = m.render(&gauges);
    assert_eq!(
        text.matches("# TYPE promptgate_breaker_state gauge")
            .count(),
        1
    );
    assert!(text.contains("# HELP promptgate_log_queue_depth help \\\\ text\\nline\n"));
    let (lines, types) = parse(&text).unwrap();
    assert_eq!(types["promptgate_log_queue_depth"], "gauge");
    assert_eq!(one(&lines, "promptgate_log_queue_depth", &[]), 17.0);
    assert_eq!(
        one(&lines, "promptgate_breaker_state", &[("upstream", "b")]),
        2.0
    );
    assert_eq!(one(&lines, "promptgate_log_weird", &[]), f64::INFINITY);
}

#[test]
fn nan_and_negative_observations_are_clamped_not_poisoning() {
    let m = Metrics::new();
    m.record_request(&RequestSample {
        ttft_ms: Some(f64::NAN),
        cost: f64::NAN,
        ..sample("p", "stable", "ok", -5.0)
    });
    let (lines, _) = parse(&m.render(&[])).unwrap();
    let l = [("prompt", "p"), ("variant", "stable")];
    assert_eq!(
        one(&lines, "promptgate_request_latency_seconds_sum", &l),
        0.0
    );
    assert_eq!(one(&lines, "promptgate_ttft_seconds_sum", &l), 0.0);
    assert_eq!(one(&lines, "promptgate_ttft_seconds_count", &l), 1.0);
    assert_eq!(one(&lines, "promptgate_cost_total", &l), 0.0);
}

#[test]
fn series_beyond_the_cap_fold_into_overflow() {
    let m = Metrics::new();
    let names: Vec<String> = (0..MAX_SERIES + 10).map(|i| format!("p{i}")).collect();
    for n in &names {
        m.record_request(&sample(n, "stable", "ok", 1.0));
    }
    // An already known pair keeps counting on its own series.
    m.record_request(&sample("p0", "stable", "ok", 1.0));
    let (lines, _) = parse(&m.render(&[])).unwrap();
    let req = find(&lines, "promptgate_requests_total", &[]);
    assert_eq!(req.len(), MAX_SERIES + 1);
    assert_eq!(
        one(
            &lines,
            "promptgate_requests_total",
            &[("prompt", OVERFLOW_PROMPT)]
        ),
        10.0
    );
    assert_eq!(
        one(&lines, "promptgate_requests_total", &[("prompt", "p0")]),
        2.0
    );
    let total: f64 = req.iter().map(|l| l.value).sum();
    assert_eq!(total, (MAX_SERIES + 11) as f64);
}

#[test]
fn concurrent_recording_loses_nothing() {
    let m = Arc::new(Metrics::new());
    let threads = 4;
    let per = 5000;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let prompt = format!("p{}", i % 7);
                    let status = if (i + t) % 3 == 0 { "error" } else { "ok" };
                    m.record_request(&sample(&prompt, "stable", status, 10.0));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (lines, _) = parse(&m.render(&[])).unwrap();
    let total: f64 = find(&lines, "promptgate_requests_total", &[])
        .iter()
        .map(|l| l.value)
        .sum();
    assert_eq!(total, (threads * per) as f64);
    let counts: f64 = find(&lines, "promptgate_request_latency_seconds_count", &[])
        .iter()
        .map(|l| l.value)
        .sum();
    assert_eq!(counts, (threads * per) as f64);
    let input: f64 = find(&lines, "promptgate_input_tokens_total", &[])
        .iter()
        .map(|l| l.value)
        .sum();
    assert_eq!(input, (threads * per * 10) as f64);
}

#[test]
fn parser_rejects_malformed_text() {
    for bad in [
        "x 1\n",                                // sample before TYPE
        "# TYPE x counter\nx{a=\"1} 1\n",       // unterminated value
        "# TYPE x counter\nx{a=\"\\q\"} 1\n",   // bad escape
        "# TYPE x counter\nx 1",                // no final newline
        "# TYPE x counter\ny 1\n",              // outside family
        "# TYPE x counter\n# TYPE x counter\n", // declared twice
        "# TYPE x counter\nx abc\n",            // bad value
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

fn label_text() -> impl Strategy<Value = String> {
    // Few distinct values so series repeat, with the characters that need
    // escaping and some that do not.
    prop_oneof![
        Just("a".to_string()),
        Just("b\"q".to_string()),
        Just("c\\d".to_string()),
        Just("line\nbreak".to_string()),
        Just("ünï {x=1,y}".to_string()),
        "[a-z]{1,3}",
    ]
}

#[derive(Debug, Clone)]
struct Rec {
    prompt: String,
    variant: String,
    status: String,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    input_tokens: u64,
    output_tokens: u64,
    cost: f64,
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        label_text(),
        prop_oneof![Just("stable".to_string()), Just("canary".to_string())],
        prop_oneof![
            Just("ok".to_string()),
            Just("error".to_string()),
            label_text()
        ],
        0.0f64..400_000.0,
        proptest::option::of(0.0f64..100_000.0),
        0u64..100_000,
        0u64..100_000,
        0.0f64..1.0,
    )
        .prop_map(
            |(prompt, variant, status, latency_ms, ttft_ms, input_tokens, output_tokens, cost)| {
                Rec {
                    prompt,
                    variant,
                    status,
                    latency_ms,
                    ttft_ms,
                    input_tokens,
                    output_tokens,
                    cost,
                }
            },
        )
}

proptest! {
    /// Parse `render()` line by line and check that every counter equals the
    /// recorded totals and every histogram is cumulative, ends in +Inf ==
    /// count, and has a sum equal to the recorded values.
    #[test]
    fn rendered_counters_equal_recorded_totals(
        recs in proptest::collection::vec(rec(), 0..80),
        errors in proptest::collection::vec((label_text(), label_text()), 0..20),
        reloads in proptest::collection::vec(any::<bool>(), 0..10),
    ) {
        let m = Metrics::new();
        type Key = (String, String);
        let mut by_status: HashMap<(String, String, String), u64> = HashMap::new();
        let mut lat: HashMap<Key, Vec<f64>> = HashMap::new();
        let mut ttft: HashMap<Key, Vec<f64>> = HashMap::new();
        let mut tokens: HashMap<Key, (u64, u64, f64)> = HashMap::new();
        for r in &recs {
            m.record_request(&RequestSample {
                prompt: &r.prompt,
                variant: &r.variant,
                status: &r.status,
                latency_ms: r.latency_ms,
                ttft_ms: r.ttft_ms,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cost: r.cost,
            });
            let k = (r.prompt.clone(), r.variant.clone());
            *by_status.entry((r.prompt.clone(), r.variant.clone(), r.status.clone())).or_default() += 1;
            lat.entry(k.clone()).or_default().push(r.latency_ms / 1000.0);
            let t = ttft.entry(k.clone()).or_default();
            if let Some(v) = r.ttft_ms {
                t.push(v / 1000.0);
            }
            let e = tokens.entry(k).or_default();
            e.0 += r.input_tokens;
            e.1 += r.output_tokens;
            e.2 += r.cost;
        }
        let mut err_counts: HashMap<(String, String), u64> = HashMap::new();
        for (u, k) in &errors {
            m.record_upstream_error(u, k);
            *err_counts.entry((u.clone(), k.clone())).or_default() += 1;
        }
        for ok in &reloads {
            m.record_reload(*ok);
        }

        let text = m.render(&[]);
        let (lines, _) = parse(&text).map_err(TestCaseError::fail)?;

        let req = find(&lines, "promptgate_requests_total", &[]);
        prop_assert_eq!(req.len(), by_status.len());
        for ((p, v, s), n) in &by_status {
            prop_assert_eq!(one(&lines, "promptgate_requests_total",
                &[("prompt", p), ("variant", v), ("status", s)]), *n as f64);
        }
        for (fam, data, bounds) in [
            ("promptgate_request_latency_seconds", &lat, LATENCY_BUCKETS),
            ("promptgate_ttft_seconds", &ttft, TTFT_BUCKETS),
        ] {
            prop_assert_eq!(find(&lines, &format!("{fam}_count"), &[]).len(), data.len());
            for ((p, v), values) in data {
                let l = [("prompt", p.as_str()), ("variant", v.as_str())];
                let buckets = find(&lines, &format!("{fam}_bucket"), &l);
                prop_assert_eq!(buckets.len(), bounds.len() + 1);
                let mut prev = 0.0;
                for (i, b) in buckets.iter().enumerate() {
                    let le = &b.labels["le"];
                    let bound = if i < bounds.len() {
                        prop_assert_eq!(le.parse::<f64>().unwrap(), bounds[i]);
                        bounds[i]
                    } else {
                        prop_assert_eq!(le.as_str(), "+Inf");
                        f64::INFINITY
                    };
                    let expect = values.iter().filter(|x| **x <= bound).count() as f64;
                    prop_assert_eq!(b.value, expect, "{} le={}", fam, le);
                    prop_assert!(b.value >= prev);
                    prev = b.value;
                }
                prop_assert_eq!(one(&lines, &format!("{fam}_count"), &l), values.len() as f64);
                let sum: f64 = values.iter().sum();
                let got = one(&lines, &format!("{fam}_sum"), &l);
                prop_assert!((got - sum).abs() <= 1e-9 * sum.max(1.0), "{} {} vs {}", fam, got, sum);
            }
        }
        for ((p, v), (i, o, c)) in &tokens {
            let l = [("prompt", p.as_str()), ("variant", v.as_str())];
            prop_assert_eq!(one(&lines, "promptgate_input_tokens_total", &l), *i as f64);
            prop_assert_eq!(one(&lines, "promptgate_output_tokens_total", &l), *o as f64);
            let got = one(&lines, "promptgate_cost_total", &l);
            prop_assert!((got - c).abs() <= 1e-9 * c.max(1.0));
        }
        for ((u, k), n) in &err_counts {
            prop_assert_eq!(one(&lines, "promptgate_upstream_errors_total",
                &[("upstream", u), ("kind", k)]), *n as f64);
        }
        let ok = reloads.iter().filter(|r| **r).count() as f64;
        prop_assert_eq!(one(&lines, "promptgate_reloads_total", &[("result", "ok")]), ok);
        prop_assert_eq!(one(&lines, "promptgate_reloads_total", &[("result", "failed")]),
            reloads.len() as f64 - ok);
    }
}
