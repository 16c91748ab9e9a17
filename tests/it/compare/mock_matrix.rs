//! A matrix over two `mock-llm`s (MOCK servers, not models): mock A keeps
//! every right answer (quality 1.0), mock B half of them (quality 0.5).
//! Three models with token prices: `large` (A, dear), `mid` (A, cheaper:
//! the best, since it ties `large` on quality and costs less) and `tiny`
//! (B, cheapest, worse). `large` is dominated by `mid`.

use promptgate::mock_llm::{MockConfig, MockServer, parse_rules};

use crate::support::{Scaffold, stderr, stdout};

const ROWS: usize = 200;

/// Rules answering "capital of CountryN?" with "CityN".
fn rules() -> String {
    "- pattern: \"capital of Country(\\\\d+)\\\\?\"\n  answer: \"City$1\"\n".to_string()
}

async fn mock(quality: f64) -> MockServer {
    MockServer::start(MockConfig {
        rules: parse_rules(&rules()).unwrap(),
        quality,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The scaffold with a 200-row synthetic dataset (v2), two providers and
/// three priced models, committed.
fn repo(a: &MockServer, b: &MockServer, compare_block: &str) -> Scaffold {
    let s = Scaffold::new();
    let rows: String = (0..ROWS)
        .map(|i| {
            format!(
                "{{\"id\": \"r{i}\", \"country\": \"Country{i}\", \"expected\": \"City{i}\"}}\n"
            )
        })
        .collect();
    s.write("datasets/capitals/rows.jsonl", &rows);
    let o = s.run(&["dataset", "snapshot", "capitals"]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.edit("evals/capitals.yaml", "capitals@v1", "capitals@v2");
    let suite = s.read("evals/capitals.yaml");
    s.write("evals/capitals.yaml", &format!("{suite}{compare_block}"));
    let model = |name: &str, provider: &str, price: f64| {
        format!(
            "  {name}:\n    provider: {provider}\n    name: {name}\n    params:\n      temperature: 0\n    price:\n      input_per_mtok: {price}\n      output_per_mtok: {}\n",
            price * 4.0
        )
    };
    s.write(
        "promptgate.yaml",
        &format!(
            "version: 1\nproviders:\n  a:\n    kind: ollama\n    base_url: {}\n  b:\n    kind: openai\n    base_url: {}\nmodels:\n{}{}{}",
            a.url(),
            b.url(),
            model("large", "a", 10.0),
            model("mid", "a", 2.0),
            model("tiny", "b", 0.1),
        ),
    );
    s.edit("prompts/capital.yaml", "model: small", "model: mid");
    s.commit("compare fixture");
    s
}

fn compare_json(s: &Scaffold, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["compare", "capitals", "--json"];
    all.extend_from_slice(args);
    let o = s.run(&all);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&o)))
}

fn candidate<'a>(r: &'a serde_json::Value, label: &str) -> &'a serde_json::Value {
    r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == label)
        .unwrap_or_else(|| panic!("no candidate {label}: {r:#}"))
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn dominated_candidate_is_off_the_frontier_and_the_pick_is_the_cheapest_as_good() {
    let (a, b) = (mock(1.0).await, mock(0.5).await);
    let s = repo(&a, &b, "");
    let dir = tempfile::tempdir().unwrap();
    let (md_path, html_path) = (dir.path().join("r.md"), dir.path().join("r.html"));
    let r = compare_json(
        &s,
        &[
            "--model",
            "large",
            "--model",
            "mid",
            "--model",
            "tiny",
            "--margin",
            "0.05",
            "--markdown",
            md_path.to_str().unwrap(),
            "--html",
            html_path.to_str().unwrap(),
        ],
    );
    let (large, mid, tiny) = (
        candidate(&r, "large"),
        candidate(&r, "mid"),
        candidate(&r, "tiny"),
    );
    assert_eq!(f(&large["pass_rate"]), 1.0);
    assert_eq!(f(&mid["pass_rate"]), 1.0);
    let tiny_rate = f(&tiny["pass_rate"]);
    assert!((0.35..0.65).contains(&tiny_rate), "{tiny_rate}");
    // Same answers, token for token: the cost ratio is the price ratio.
    let ratio = f(&large["cost_per_1k"]) / f(&mid["cost_per_1k"]);
    assert!((ratio - 5.0).abs() < 1e-9, "{ratio}");
    assert!(f(&tiny["cost_per_1k"]) < f(&mid["cost_per_1k"]));
    // The interval holds the rate.
    let iv = &tiny["pass_rate_interval"];
    assert!(f(&iv["low"]) < tiny_rate && tiny_rate < f(&iv["high"]));

    assert_eq!(large["on_frontier"], false, "{r:#}");
    assert_eq!(mid["on_frontier"], true);
    assert_eq!(tiny["on_frontier"], true);
    assert_eq!(r["frontier"], serde_json::json!(["tiny", "mid"]));
    assert_eq!(r["best"], "mid");
    // `large` is as good (shown) but dearer; `tiny` is cheaper but shown
    // worse: the cheapest candidate shown as good is the best itself.
    assert_eq!(large["versus_best"]["non_inferior"], true, "{r:#}");
    assert_eq!(tiny["versus_best"]["non_inferior"], false);
    assert_eq!(tiny["versus_best"]["worse"], true);
    assert_eq!(r["recommended"], "mid");
    let rec = r["recommendation"].as_str().unwrap();
    assert!(rec.contains("none of the cheaper candidates"), "{rec}");

    // The markdown says what the JSON says.
    let md = std::fs::read_to_string(&md_path).unwrap();
    for c in r["candidates"].as_array().unwrap() {
        let label = c["label"].as_str().unwrap();
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| `{label}` |")))
            .unwrap_or_else(|| panic!("no row for {label}:\n{md}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(
            cells[2],
            format!(
                "{:.1}% ({:.1}% … {:.1}%)",
                f(&c["pass_rate"]) * 100.0,
                f(&c["pass_rate_interval"]["low"]) * 100.0,
                f(&c["pass_rate_interval"]["high"]) * 100.0
            )
        );
        assert_eq!(cells[3], format!("{:.3}", f(&c["mean_score"])));
        let cost: f64 = cells[4].parse().unwrap();
        assert!(
            (cost - f(&c["cost_per_1k"])).abs() <= 5e-5 * cost.max(1.0),
            "{line}"
        );
        assert_eq!(
            cells[10].contains("frontier"),
            c["on_frontier"] == true,
            "{line}"
        );
        assert_eq!(cells[10].contains("recommended"), r["recommended"] == label);
    }
    assert!(md.contains(&format!("**Recommendation:** {rec}.")), "{md}");

    // The HTML parses, and its cost-quality SVG has one point per candidate.
    let html = std::fs::read_to_string(&html_path).unwrap();
    html_has_points(&html, 3);

    // A re-run is served from the cache, and finds the same.
    let again = compare_json(
        &s,
        &[
            "--model", "large", "--model", "mid", "--model", "tiny", "--margin", "0.05",
        ],
    );
    assert_eq!(again["model_calls"], 3 * ROWS);
    assert_eq!(again["cache_hits"], again["model_calls"]);
    assert_eq!(again["frontier"], r["frontier"]);
    assert_eq!(again["recommended"], r["recommended"]);
    for c in again["candidates"].as_array().unwrap() {
        assert_eq!(
            c["pass_rate"],
            candidate(&r, c["label"].as_str().unwrap())["pass_rate"]
        );
    }
}

/// Parses the HTML with Python's parser (tags balanced) and each SVG as
/// XML; the cost-quality chart must have `n` points.
fn html_has_points(html: &str, n: usize) {
    let py = std::env::var("PROMPTGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import sys, html.parser, xml.etree.ElementTree as ET
text = sys.stdin.read()
VOID = {"meta", "br", "img", "input", "link", "hr"}
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.stack = []
    def handle_starttag(self, tag, attrs):
        if tag not in VOID: self.stack.append(tag)
    def handle_startendtag(self, tag, attrs): pass
    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()
p = P(); p.feed(text); p.close()
assert not p.stack, p.stack
start = text.index('<figure id="cost-quality">') + len('<figure id="cost-quality">')
svg = text[start:text.index('</figure>', start)]
root = ET.fromstring(svg)
ns = '{http://www.w3.org/2000/svg}'
print(len(root.findall(f'.//{ns}circle')), len(root.findall(f'.//{ns}polyline')), len([l for l in root.iter(f'{ns}line') if l.get('class') == 'interval']))
"#;
    let mut child = std::process::Command::new(&py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {py}: {e}"));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(html.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "HTML does not parse: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("{n} 1 {n}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_suites_matrix_runs_without_flags_and_a_wide_margin_picks_the_cheap_one() {
    let (a, b) = (mock(1.0).await, mock(0.5).await);
    let block =
        "compare:\n  models: [mid, tiny]\n  params:\n    max_tokens: [16, 64]\n  margin: 0.7\n";
    let s = repo(&a, &b, block);
    let r = compare_json(&s, &[]);
    let labels: Vec<&str> = r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "mid · max_tokens=16",
            "mid · max_tokens=64",
            "tiny · max_tokens=16",
            "tiny · max_tokens=64"
        ]
    );
    assert_eq!(
        candidate(&r, "tiny · max_tokens=64")["params"]["max_tokens"],
        64
    );
    assert_eq!(r["margin"], 0.7);
    // Half the answers right is within 70 points of all of them.
    assert!(
        r["recommended"].as_str().unwrap().starts_with("tiny"),
        "{r:#}"
    );
    assert!(
        r["recommendation"]
            .as_str()
            .unwrap()
            .starts_with("use `tiny")
    );
    // A flag replaces the suite's dimension.
    let r = compare_json(&s, &["--model", "mid", "--param", "max_tokens=32"]);
    assert_eq!(r["candidates"].as_array().unwrap().len(), 1);
    assert_eq!(r["candidates"][0]["params"]["max_tokens"], 32);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_names_the_file_line_and_field() {
    let (a, b) = (mock(1.0).await, mock(0.5).await);
    let s = repo(&a, &b, "compare:\n  models: [mid, nosuch]\n");
    let o = s.run(&["compare", "capitals"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("evals/capitals.yaml"), "{err}");
    assert!(err.contains("unknown model `nosuch`"), "{err}");
    assert!(err.contains("compare.models"), "{err}");
    s.edit(
        "evals/capitals.yaml",
        "  models: [mid, nosuch]\n",
        "  modles: [mid]\n",
    );
    s.commit("typo");
    let err = stderr(&s.run(&["compare", "capitals"]));
    assert!(err.contains("unknown field `modles`"), "{err}");
    s.edit(
        "evals/capitals.yaml",
        "  modles: [mid]\n",
        "  models: [mid]\n",
    );
    s.commit("fixed");
    let o = s.run(&["compare", "capitals", "--param", "max_tokens"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("NAME=VALUE"), "{}", stderr(&o));
    let o = s.run(&["compare", "capitals", "--margin", "1.5"]);
    assert!(stderr(&o).contains("--margin 1.5"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_when_a_change_is_as_good_and_cheaper() {
    let (a, b) = (mock(1.0).await, mock(0.5).await);
    let s = repo(&a, &b, "");
    let base = s.head_commit();
    // The same model at 60% of the price: same answers, 40% cheaper.
    s.edit(
        "promptgate.yaml",
        "input_per_mtok: 2\n      output_per_mtok: 8\n",
        "input_per_mtok: 1.2\n      output_per_mtok: 4.8\n",
    );
    s.commit("mid got cheaper");
    let o = s.run(&["check", "--base", &base, "--head", "HEAD"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let md = stdout(&o);
    let line = md
        .lines()
        .find(|l| l.starts_with("**Cost vs quality:**"))
        .unwrap_or_else(|| panic!("no cost line:\n{md}"));
    assert!(
        line.contains("(-40%) · pass rate +0.0 pts: as good"),
        "{line}"
    );
    assert!(line.ends_with("and 40% cheaper"), "{line}");
}
