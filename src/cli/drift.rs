//! `promptgate drift`: inputs, outputs, operations and feedback of a current
//! window of the request log against a reference window, per prompt (and
//! pass-through model), over one or several replicas' log roots. Prints the
//! table (or `--json`), writes the HTML report (`--html`); exit 1 when drift
//! is found, 2 when it could not run (including "not enough data").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;

use super::ExitStatus;
use crate::drift::{
    self, Extractor, GroupKind, GroupWindow, LogQuery, OutputSpec, StableState, Status,
    WindowFeatures, WindowSet,
};
use crate::project::{CONFIG_FILE, LoadOptions, Project, render_all};
use crate::repo::{FileSource, GitRepo};
use crate::spec::config::Config;
use crate::spec::drift::{DriftConfig, WindowSpec};
use crate::spec::prompt::OutputFormat;
use crate::spec::{FileKind, SourceFile};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Log roots to read (repeatable, one per replica; also partition
    /// folders or files); default: the repository's `logging.dir`.
    #[arg(long = "logs", value_name = "PATH", num_args = 1..)]
    pub logs: Vec<PathBuf>,
    /// Only this prompt id (or `model:<name>` for pass-through calls);
    /// repeatable. Default: `drift.prompts`, else every group with calls.
    #[arg(long = "prompt", value_name = "ID")]
    pub prompts: Vec<String>,
    /// Reference window: first:N (the stable version's first N calls),
    /// last:N, last:24h, A..B (dates or RFC 3339 times, end excluded),
    /// commit:SHA, dataset:NAME@vN or eval:SUITE (inputs only).
    /// Default: `drift.reference` (first:2000).
    #[arg(long, conflicts_with = "reference_commit")]
    pub reference: Option<WindowSpec>,
    /// The calls served from this commit are the reference.
    #[arg(long, value_name = "SHA")]
    pub reference_commit: Option<String>,
    /// Current window (same forms). Default: `drift.current` (last:2000).
    #[arg(long)]
    pub current: Option<WindowSpec>,
    /// Branch whose rollout.yaml names the stable ref; default:
    /// `server.control_ref` of promptgate.yaml.
    #[arg(long)]
    pub control_ref: Option<String>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write the HTML report (one self-contained file) here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also list constant features in the table.
    #[arg(long)]
    pub all: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let root = super::repo_root(args.repo.as_deref())?;
    let git = GitRepo::open(&root)?;
    let config = committed_config(&git)?;
    let mut settings: DriftConfig = config.drift.clone().unwrap_or_default();
    if let Some(r) = &args.reference {
        settings.reference = r.clone();
    }
    if let Some(c) = &args.reference_commit {
        settings.reference = format!("commit:{c}")
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--reference-commit: {e}"))?;
    }
    if let Some(c) = &args.current {
        settings.current = c.clone();
    }
    if settings.current.inputs_only() {
        bail!(
            "--current {}: a dataset has inputs only; the current window must be calls from the logs",
            settings.current
        );
    }
    let extractor = Extractor::new(&settings)
        .map_err(|e| anyhow::anyhow!("promptgate.yaml: drift.refusal_phrases: {e}"))?;
    let control_ref = args
        .control_ref
        .clone()
        .unwrap_or_else(|| config.server.control_ref.clone());
    let stable = stable_project(&git, &control_ref)?;
    let groups = if args.prompts.is_empty() {
        settings.prompts.clone()
    } else {
        args.prompts.clone()
    };
    let logs = if args.logs.is_empty() {
        crate::lake::source::default_sources(&config.logging, &root.join(&config.logging.dir))
    } else {
        args.logs.clone()
    };
    // Stores fetched into a temporary log root for the readers below.
    let view = crate::lake::source::LocalView::open(&logs, &config.logging.store_options, None)
        .context("reading the log lake")?;
    let logs = view.roots().to_vec();

    let now = Utc::now();
    let mut state = StableState::default();
    let mut outputs = BTreeMap::new();
    if let Some((commit, project)) = &stable {
        state.commit = Some(commit.clone());
        for (id, p) in &project.prompts {
            state.versions.insert(id.clone(), p.blob.clone());
            let schema = match &p.prompt.output.schema {
                Some(s) => Some(Arc::new(jsonschema::validator_for(s).map_err(|e| {
                    anyhow::anyhow!("{}: output.schema does not compile: {e}", p.path)
                })?)),
                None => None,
            };
            outputs.insert(
                id.clone(),
                OutputSpec {
                    json: Some(p.prompt.output.format == OutputFormat::Json),
                    schema,
                },
            );
        }
    }
    let dataset_reference = match &settings.reference {
        WindowSpec::Dataset(_) | WindowSpec::Eval(_) => Some(dataset_window(
            &git,
            &settings,
            &settings.reference,
            &groups,
        )?),
        _ => None,
    };
    let query = LogQuery {
        logs: logs.clone(),
        reference: drift::resolve(&settings.reference, now, &state)
            .map(|s| (settings.reference.to_string(), s)),
        current: (
            settings.current.to_string(),
            drift::resolve(&settings.current, now, &state)
                .context("the current window must be calls from the logs")?,
        ),
        groups: match &dataset_reference {
            Some(d) => d.groups.keys().cloned().collect(),
            None => groups,
        },
        outputs,
    };
    let bar = progress_bar(args.json);
    let windows = drift::read_windows(&settings, &extractor, &query, &|p| {
        if let Some(b) = &bar {
            b.set_length(p.files as u64);
            b.set_position(p.files_done as u64);
            b.set_message(if p.pass == 1 { "keys" } else { "features" });
        }
    })
    .context("reading the request logs")?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let reference = dataset_reference.unwrap_or(windows.reference);
    let started = std::time::Instant::now();
    let report = drift::analyze(&settings, &reference, &windows.current);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "drift: analysed"
    );

    if let Some(path) = &args.html {
        let html = crate::report::drift_html::render(
            &report,
            &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        let mut text = report.render(args.all);
        if let Some(path) = &args.html {
            text.push_str(&format!("HTML report: {}\n", path.display()));
        }
        super::out(&text)?;
    }
    Ok(match report.status {
        Status::Drift => ExitStatus::Failure,
        Status::NotEnoughData => {
            let short: Vec<String> = report
                .groups
                .iter()
                .filter(|g| g.status == Status::NotEnoughData)
                .map(|g| {
                    format!(
                        "`{}` ({} vs {} calls)",
                        g.group, g.reference_calls, g.current_calls
                    )
                })
                .collect();
            tracing::warn!(
                "not enough data (min_rows {}): {}",
                report.min_rows,
                short.join(", ")
            );
            let _ = writeln_stderr(&format!(
                "not enough data: fewer than {} calls in a window for {}",
                report.min_rows,
                short.join(", ")
            ));
            ExitStatus::Error
        }
        Status::NoDrift => ExitStatus::Success,
    })
}

fn writeln_stderr(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stderr().lock(), "{text}")
}

fn progress_bar(quiet: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>9} {bar:30} {pos}/{len} files")
    {
        bar.set_style(style);
    }
    Some(bar)
}

/// promptgate.yaml as committed on HEAD.
fn committed_config(git: &GitRepo) -> anyhow::Result<Config> {
    let tree = git.tree_at("HEAD")?;
    match tree.read_string(CONFIG_FILE)? {
        Some(text) => SourceFile::new(CONFIG_FILE, text)
            .parse(FileKind::Config)
            .map_err(|d| anyhow::anyhow!("{}", render_all(&d))),
        None => bail!("HEAD has no {CONFIG_FILE}"),
    }
}

/// The project at the stable ref of the rollout on `control_ref`, and that
/// ref's commit; None when there is no rollout.yaml (then `first:N` is the
/// first N calls of each group).
fn stable_project(git: &GitRepo, control_ref: &str) -> anyhow::Result<Option<(String, Project)>> {
    let control = crate::canary::ControlBranch::resolve(git, control_ref)
        .with_context(|| format!("resolving the control ref {control_ref}"))?;
    let Some(rollout) = crate::canary::rollout_at(git, &control.commit)? else {
        return Ok(None);
    };
    let commit = git
        .resolve(&rollout.stable)
        .with_context(|| format!("rollout.yaml: stable: cannot resolve `{}`", rollout.stable))?
        .to_string();
    let tree = git.tree_at(&commit)?;
    let project = Project::load(&tree, &LoadOptions { resolve_ref: None })
        .map_err(|e| anyhow::anyhow!("reading the stable ref {}: {e}", rollout.stable))?;
    Ok(Some((commit, project)))
}

/// A reference window of dataset rows (inputs only): `dataset:NAME@vN`
/// with columns named like the prompt's variables (needs one `--prompt`),
/// or `eval:SUITE` through the suite's variable mapping.
fn dataset_window(
    git: &GitRepo,
    settings: &DriftConfig,
    spec: &WindowSpec,
    groups: &[String],
) -> anyhow::Result<WindowSet> {
    let tree = git.tree_at("HEAD")?;
    let project = Project::load(&tree, &LoadOptions { resolve_ref: None })
        .map_err(|e| anyhow::anyhow!("reading the repository at HEAD: {e}"))?;
    let (prompt_id, dataset, mapping) = match spec {
        WindowSpec::Eval(suite) => {
            let e = project
                .eval(suite)
                .map_err(|e| anyhow::anyhow!("--reference {spec}: {e}"))?;
            (
                e.suite.prompt.clone(),
                e.dataset.clone(),
                e.suite.vars.clone(),
            )
        }
        WindowSpec::Dataset(d) => {
            let [prompt] = groups else {
                bail!(
                    "--reference {spec}: name the one prompt its rows are inputs of with --prompt"
                );
            };
            (prompt.clone(), d.clone(), BTreeMap::new())
        }
        _ => bail!("{spec} is not a dataset window"),
    };
    let prompt = project
        .prompt(&prompt_id)
        .map_err(|e| anyhow::anyhow!("--reference {spec}: {e}"))?;
    let snapshot = crate::dataset::read_snapshot(&tree, &dataset)
        .with_context(|| format!("--reference {spec}: reading {dataset}"))?;
    if snapshot.rows.is_empty() {
        bail!("--reference {spec}: {dataset} has no rows");
    }
    let mut features = WindowFeatures::new();
    let n = snapshot.rows.len() as f64;
    let lang_rate = (settings.language_rows as f64 / n).min(1.0);
    for row in &snapshot.rows {
        let mut vars = serde_json::Map::new();
        for name in prompt.prompt.inputs.keys() {
            let column = mapping.get(name).unwrap_or(name);
            vars.insert(
                name.clone(),
                row.get(column).cloned().unwrap_or(serde_json::Value::Null),
            );
        }
        let key = drift::features::id_hash(&snapshot.key_of(row));
        let detect = drift::features::unit(key) < lang_rate;
        features.push_inputs(&vars, detect, key);
    }
    Ok(WindowSet {
        spec: spec.to_string(),
        inputs_only: true,
        groups: [(
            prompt_id,
            GroupWindow {
                kind: GroupKind::Prompt,
                output_json: None,
                features,
            },
        )]
        .into_iter()
        .collect(),
    })
}
