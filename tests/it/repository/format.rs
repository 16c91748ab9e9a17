//! The repository format, `init`, `validate`, `render`, `log`.

use crate::support::{Scaffold, run_in, stderr, stdout};

#[test]
fn fresh_scaffold_validates() {
    let s = Scaffold::new();
    let o = s.run(&["validate"]);
    assert!(o.status.success(), "validate failed:\n{}", stderr(&o));
    assert!(stdout(&o).contains("is valid"), "{}", stdout(&o));
    // The committed state is valid too, and nothing is left uncommitted.
    let o = s.run(&["validate", "--ref", "HEAD"]);
    assert!(
        o.status.success(),
        "validate --ref HEAD failed:\n{}",
        stderr(&o)
    );
    let git = git2::Repository::open(s.root()).unwrap();
    let statuses = git.statuses(None).unwrap();
    let dirty: Vec<_> = statuses
        .iter()
        .filter_map(|e| e.path().ok().map(str::to_string))
        .collect();
    assert!(dirty.is_empty(), "init left uncommitted files: {dirty:?}");
}

#[test]
fn scaffold_has_the_promised_files() {
    let s = Scaffold::new();
    for f in [
        "promptgate.yaml",
        "rollout.yaml",
        "prompts/capital.yaml",
        "datasets/capitals/rows.jsonl",
        "datasets/capitals/dataset.yaml",
        "evals/capitals.yaml",
        ".github/workflows/promptgate.yml",
        ".gitignore",
    ] {
        assert!(s.path(f).is_file(), "missing {f}");
    }
    assert!(
        s.read(".gitignore")
            .lines()
            .any(|l| l.trim() == ".promptgate/")
    );
    assert!(s.read("promptgate.yaml").contains("kind: ollama"));
    assert!(s.read("promptgate.yaml").contains("http://127.0.0.1:11434"));
    assert!(s.read("rollout.yaml").contains("stable: refs/heads/main"));
    for f in [
        "promptgate.yaml",
        "rollout.yaml",
        "prompts/capital.yaml",
        "evals/capitals.yaml",
        "datasets/capitals/dataset.yaml",
    ] {
        let first = s.read(f).lines().next().unwrap_or_default().to_string();
        assert!(
            first.starts_with("# yaml-language-server: $schema="),
            "{f}: {first}"
        );
        // The schema the comment points at exists, relative to the file.
        let rel = first.trim_start_matches("# yaml-language-server: $schema=");
        let schema = s.path(f).parent().unwrap().join(rel);
        assert!(schema.is_file(), "{f}: schema {} missing", schema.display());
    }
    let git = git2::Repository::open(s.root()).unwrap();
    assert_eq!(git.head().unwrap().shorthand().unwrap(), "main");
}

#[test]
fn init_refuses_a_non_empty_folder_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let o = run_in(dir.path(), &["init", "."]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert!(
        !dir.path().join("promptgate.yaml").exists(),
        "wrote files despite refusing"
    );
    let o = run_in(dir.path(), &["init", ".", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(dir.path().join("promptgate.yaml").is_file());
}

/// One broken repository: the edit that breaks it and what the diagnostic
/// must point at.
struct Broken {
    name: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    /// `file:line` that must appear in the output.
    at: &'static str,
    /// Field (or text) that must be named.
    field: &'static str,
}

const BROKEN: &[Broken] = &[
    Broken {
        name: "bad_yaml_syntax",
        file: "prompts/capital.yaml",
        from: "model: small",
        to: "model: [small",
        at: "prompts/capital.yaml:",
        field: "invalid YAML",
    },
    Broken {
        name: "unknown_field",
        file: "prompts/capital.yaml",
        from: "params:\n",
        to: "temprature: 0.2\nparams:\n",
        at: "prompts/capital.yaml:5:1",
        field: "field `temprature`",
    },
    Broken {
        name: "wrong_type",
        file: "promptgate.yaml",
        from: "max_retries: 2",
        to: "max_retries: two",
        at: "promptgate.yaml:13:18",
        field: "field `providers.local.max_retries`",
    },
    Broken {
        name: "unknown_model",
        file: "prompts/capital.yaml",
        from: "model: small",
        to: "model: large",
        at: "prompts/capital.yaml:4:8",
        field: "field `model`: unknown model `large`",
    },
    Broken {
        name: "missing_dataset_version",
        file: "evals/capitals.yaml",
        from: "capitals@v1",
        to: "capitals@v7",
        at: "evals/capitals.yaml:4:10",
        field: "field `dataset`: dataset `capitals` has no version v7",
    },
    Broken {
        name: "undefined_template_variable",
        file: "prompts/capital.yaml",
        from: "What is the capital of {{ country }}?",
        to: "What is the capital of {{ country }} in {{ year }}?",
        at: "prompts/capital.yaml:17:14",
        field: "field `messages[1].content`: template uses `year`",
    },
    Broken {
        name: "unresolvable_rollout_ref",
        file: "rollout.yaml",
        from: "stable: refs/heads/main",
        to: "stable: refs/heads/does-not-exist",
        at: "rollout.yaml:4:9",
        field: "field `stable`: ref `refs/heads/does-not-exist` does not resolve",
    },
    Broken {
        name: "prompt_id_with_dotdot",
        file: "prompts/capital.yaml",
        from: "id: capital",
        to: "id: ../../etc/capital",
        at: "prompts/capital.yaml:2:5",
        field: "field `id`",
    },
    Broken {
        name: "template_syntax_error",
        file: "prompts/capital.yaml",
        from: "{{ country }}?",
        to: "{{ country ?",
        at: "prompts/capital.yaml:17:14",
        field: "template does not compile",
    },
    Broken {
        name: "assertion_missing_field",
        file: "evals/capitals.yaml",
        from: "  - type: max_length\n    max: 60\n",
        to: "  - type: max_length\n",
        at: "evals/capitals.yaml:",
        field: "`max`",
    },
];

fn normalise(text: &str, root: &std::path::Path) -> String {
    text.replace(&root.display().to_string(), "[REPO]")
}

#[test]
fn broken_repositories_give_exit_1_and_point_at_file_line_field() {
    for case in BROKEN {
        let s = Scaffold::new();
        s.edit(case.file, case.from, case.to);
        let o = s.run(&["validate"]);
        let err = normalise(&stderr(&o), &s.root());
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}: expected exit 1, got {:?}\n{err}",
            case.name,
            o.status.code()
        );
        assert!(
            err.contains(case.at),
            "{}: expected `{}` in\n{err}",
            case.name,
            case.at
        );
        assert!(
            err.contains(case.field),
            "{}: expected `{}` in\n{err}",
            case.name,
            case.field
        );
        insta::with_settings!({ snapshot_suffix => case.name, prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("validate", err);
        });
    }
}

#[test]
fn every_error_is_reported_in_one_run() {
    let s = Scaffold::new();
    s.edit("prompts/capital.yaml", "model: small", "model: large");
    s.edit("evals/capitals.yaml", "capitals@v1", "capitals@v7");
    s.edit(
        "rollout.yaml",
        "min_requests: 200",
        "min_requests: many\n  retries: 3",
    );
    let o = s.run(&["validate", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<&str> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["file"].as_str().unwrap())
        .collect();
    assert_eq!(v["errors"], 4, "{v:#}");
    for f in [
        "rollout.yaml",
        "prompts/capital.yaml",
        "evals/capitals.yaml",
    ] {
        assert!(files.contains(&f), "{f} not reported: {v:#}");
    }
}

#[test]
fn unused_input_is_a_warning_not_an_error() {
    let s = Scaffold::new();
    s.edit(
        "prompts/capital.yaml",
        "    description: Country name in English.\n",
        "    description: Country name in English.\n  tone:\n    type: string\n    required: false\n",
    );
    let o = s.run(&["validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: prompts/capital.yaml:13:3: field `inputs.tone`: input `tone` is declared but no message uses it"), "{}", stderr(&o));
}

#[test]
fn validate_at_a_ref_ignores_the_working_tree() {
    let s = Scaffold::new();
    s.edit("prompts/capital.yaml", "model: small", "model: large");
    assert_eq!(s.run(&["validate"]).status.code(), Some(1));
    let o = s.run(&["validate", "--ref", "HEAD"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn render_at_a_ref_reads_the_committed_version() {
    let s = Scaffold::new();
    s.edit(
        "prompts/capital.yaml",
        "What is the capital of",
        "Name the capital city of",
    );
    // v2 exists only in the working tree: HEAD still renders v1.
    let o = s.run(&[
        "render",
        "capital",
        "--var",
        "country=Chile",
        "--ref",
        "HEAD",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("What is the capital of Chile?"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("Name the capital city"));
    // Once committed, HEAD renders v2 and HEAD~1 still renders v1.
    s.commit("Reword the capital prompt");
    let o = s.run(&["render", "capital", "--var", "country=Chile"]);
    assert!(
        stdout(&o).contains("Name the capital city of Chile?"),
        "{}",
        stdout(&o)
    );
    let o = s.run(&[
        "render",
        "capital",
        "--var",
        "country=Chile",
        "--ref",
        "HEAD~1",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"][1]["content"], "What is the capital of Chile?");
    assert_eq!(v["messages"][1]["role"], "user");
}

#[test]
fn render_keeps_template_syntax_in_values_verbatim() {
    let s = Scaffold::new();
    let o = s.run(&["render", "capital", "--var", "country={{ 7*7 }}", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["messages"][1]["content"],
        "What is the capital of {{ 7*7 }}?"
    );
}

#[test]
fn render_names_a_missing_or_unknown_variable() {
    let s = Scaffold::new();
    let o = s.run(&["render", "capital"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "required input `country` of prompt `capital` is missing: pass --var country="
        ),
        "{}",
        stderr(&o)
    );
    let o = s.run(&[
        "render",
        "capital",
        "--var",
        "country=Chile",
        "--var",
        "city=x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--var `city`: prompt `capital` declares no input `city`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn log_lists_every_version_of_a_prompt() {
    let s = Scaffold::new();
    s.edit(
        "prompts/capital.yaml",
        "What is the capital of",
        "Name the capital of",
    );
    let v2 = s.commit("Reword the capital prompt");
    s.edit("rollout.yaml", "min_requests: 200", "min_requests: 300");
    s.commit("Unrelated change");
    let o = s.run(&["log", "capital", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let versions: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(versions.len(), 2, "{versions:#?}");
    assert_eq!(versions[0]["commit"], v2);
    assert_eq!(versions[0]["subject"], "Reword the capital prompt");
    assert_ne!(versions[0]["blob"], versions[1]["blob"]);
    let text = stdout(&s.run(&["log", "capital"]));
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().next().unwrap().starts_with(&v2[..12]));
    let o = s.run(&["log", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn validate_reports_a_snapshot_whose_bytes_changed_at_its_lock_line() {
    let s = Scaffold::new();
    let snap = s.path("datasets/capitals/snapshots/v1.parquet");
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&snap, bytes).unwrap();
    let o = s.run(&["validate"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let lock = s.read("datasets/capitals/dataset.lock");
    let line = lock
        .lines()
        .position(|l| l.contains("file_sha256"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "error: datasets/capitals/dataset.lock:{line}:1: field `versions[v1].file_sha256`"
        )),
        "{err}"
    );
    // The committed snapshot is intact, so the ref still validates.
    assert!(s.run(&["validate", "--ref", "HEAD"]).status.success());
}
