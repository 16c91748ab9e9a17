//! Issue 12, section 2: one binding of inputs to a prompt. A prompt with an
//! optional input `tone`, used as `{% if tone %}...{% endif %}`, renders
//! the same messages through `render`, `eval` (a dataset without a `tone`
//! column), `check` and `serve` (real HTTP, the upstream a `mock-llm`: a
//! mock, not a model). Before, `render` and `eval` failed with "undefined
//! variable `tone`" while `serve` rendered.

use std::path::Path;

use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::serve::{Proxy, log_rows, post};
use crate::support::{Scaffold, stderr, stdout};

const REPLY_PROMPT: &str = "id: reply
model: small
inputs:
  input: {type: string}
  tone: {type: string, required: false}
messages:
  - role: system
    content: \"You answer in one sentence.{% if tone %} Use a {{ tone }} tone.{% endif %}\"
  - role: user
    content: \"{{ input }}\"
";

const QUESTIONS_DATASET: &str = "description: Questions without a tone column.
key: id
columns:
  id: {type: string}
  input: {type: string}
";

const QUESTIONS_ROWS: &str = "{\"id\": \"q1\", \"input\": \"Why is the sky blue?\"}
{\"id\": \"q2\", \"input\": \"What is rain?\"}
";

const REPLY_SUITE: &str = "prompt: reply
dataset: questions@v1
assertions:
  - type: min_length
    min: 1
";

/// The scaffold pointed at `mock` (committed: the base), then the `reply`
/// prompt, its dataset snapshot and suite committed on top (the head).
fn repo(mock: &MockServer) -> (Scaffold, String) {
    let s = Scaffold::new();
    s.edit("promptgate.yaml", "http://127.0.0.1:11434", &mock.url());
    let base = s.commit("Point the provider at mock-llm");
    s.write("prompts/reply.yaml", REPLY_PROMPT);
    s.write("datasets/questions/dataset.yaml", QUESTIONS_DATASET);
    s.write("datasets/questions/rows.jsonl", QUESTIONS_ROWS);
    let o = s.run(&["dataset", "snapshot", "questions"]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.write("evals/reply.yaml", REPLY_SUITE);
    let o = s.run(&["validate"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    s.commit("A reply prompt with an optional tone");
    (s, base)
}

fn json_out(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

/// The `messages` of one row of an eval results Parquet file.
fn result_messages(file: &Path, row_key: &str) -> Value {
    use arrow_array::{Array, StringArray};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (keys, messages, errors) = (col("row_key"), col("messages"), col("error"));
        for i in 0..batch.num_rows() {
            if keys.value(i) == row_key {
                assert!(errors.is_null(i), "row {row_key}: {}", errors.value(i));
                return serde_json::from_str(messages.value(i)).unwrap();
            }
        }
    }
    panic!("no row {row_key} in {}", file.display())
}

fn render(s: &Scaffold, vars: &[&str]) -> Value {
    let mut args = vec!["render", "reply", "--json"];
    for v in vars {
        args.extend(["--var", v]);
    }
    let o = s.run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    json_out(&o)["messages"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_input_renders_the_same_messages_in_every_command() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let (s, base) = repo(&mock);
    let question = "Why is the sky blue?";
    let expected = json!([
        {"role": "system", "content": "You answer in one sentence."},
        {"role": "user", "content": question},
    ]);

    // render, without and with the optional input.
    let rendered = render(&s, &[&format!("input={question}")]);
    assert_eq!(rendered, expected);
    let with_tone = render(&s, &[&format!("input={question}"), "tone=dry"]);
    assert_eq!(
        with_tone[0]["content"],
        "You answer in one sentence. Use a dry tone."
    );

    // eval: the dataset has no `tone` column.
    let o = s.run(&["eval", "reply", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let summary = json_out(&o);
    assert_eq!(summary["errors"], 0, "{summary:#}");
    let file = summary["results_file"].as_str().unwrap();
    assert_eq!(result_messages(Path::new(file), "q1"), expected);

    // check: the prompt is new at head, so head's side runs it.
    let o = s.run(&[
        "check", "--base", &base, "--head", "HEAD", "--suite", "reply", "--json",
    ]);
    let report = json_out(&o);
    assert_eq!(o.status.code(), Some(0), "{report:#}\n{}", stderr(&o));
    let head = &report["suites"][0]["head"];
    assert_eq!(head["errors"], 0, "{report:#}");
    let file = head["results_file"].as_str().unwrap();
    assert_eq!(result_messages(Path::new(file), "q1"), expected);

    // serve: the last user message fills `input`; `tone` is not sent, then
    // sent in `variables`. The log row holds what the upstream was sent.
    let mut proxy = Proxy::start(&s.root());
    let url = format!("{}/v1/chat/completions", proxy.url);
    let (status, _, body) = post(
        &url,
        &json!({"model": "prompt:reply", "messages": [{"role": "user", "content": question}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = post(
        &url,
        &json!({
            "model": "prompt:reply",
            "messages": [{"role": "user", "content": question}],
            "variables": {"tone": "dry"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.terminate(), Some(0), "{}", proxy.stderr());
    let rows = log_rows(&s.root());
    assert_eq!(rows.len(), 2, "{}", proxy.stderr());
    let sent = |i: usize| serde_json::from_str::<Value>(&rows[i].messages).unwrap();
    assert_eq!(sent(0), expected);
    assert_eq!(sent(1), with_tone);
    let variables: Value = serde_json::from_str(&rows[0].variables).unwrap();
    assert_eq!(variables, json!({"input": question, "tone": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_errors_name_the_input_and_the_dataset_row_and_column() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let s = Scaffold::new();
    s.edit("promptgate.yaml", "http://127.0.0.1:11434", &mock.url());
    s.write("prompts/reply.yaml", REPLY_PROMPT);
    s.write(
        "datasets/questions/dataset.yaml",
        &QUESTIONS_DATASET.replace(
            "input: {type: string}",
            "input: {type: string, required: false}",
        ),
    );
    // q2 has no question: the prompt's required input is empty.
    s.write(
        "datasets/questions/rows.jsonl",
        "{\"id\": \"q1\", \"input\": \"Hi?\"}\n{\"id\": \"q2\"}\n",
    );
    let o = s.run(&["dataset", "snapshot", "questions"]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.write("evals/reply.yaml", REPLY_SUITE);
    s.commit("reply");

    let o = s.run(&["render", "reply", "--var", "tone=dry"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("required input `input` of prompt `reply` is missing"),
        "{}",
        stderr(&o)
    );

    // q2 fails before any call, q1 is answered.
    let o = s.run(&["eval", "reply", "--json"]);
    let summary = json_out(&o);
    assert_eq!(summary["errors"], 1, "{summary:#}");
    let results = summary["results_file"].as_str().unwrap().to_string();
    use arrow_array::{Array, StringArray};
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&results).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    let col = |n: &str| {
        batch
            .column_by_name(n)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone()
    };
    let (keys, errors) = (col("row_key"), col("error"));
    let i = (0..batch.num_rows())
        .find(|&i| keys.value(i) == "q2")
        .unwrap();
    assert!(!errors.is_null(i));
    assert!(
        errors
            .value(i)
            .contains("dataset row `q2`: column `input` is empty or absent"),
        "{}",
        errors.value(i)
    );
}
