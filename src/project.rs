//! A whole promptgate repository read from one [`FileSource`] (a commit or
//! the working tree): every file parsed, and every cross-reference checked.
//!
//! Loading never stops at the first problem: each file that parses
//! contributes to the cross-reference checks, each that does not is reported
//! and left out, so one run shows every error. Cross-reference errors are
//! only reported between files that parsed, so one typo does not cascade.

use std::collections::{BTreeMap, BTreeSet};

use crate::repo::{FileSource, RepoError};
use crate::spec::config::Config;
use crate::spec::dataset::{DatasetLock, DatasetRef, DatasetSpec};
use crate::spec::eval::{Assertion, Check, EvalSuite};
use crate::spec::prompt::{Prompt, is_valid_id};
use crate::spec::rollout::Rollout;
use crate::spec::{Diagnostic, FileKind, Severity, SourceFile};
use crate::template;

pub const CONFIG_FILE: &str = "promptgate.yaml";
pub const ROLLOUT_FILE: &str = "rollout.yaml";
pub const PROMPTS_DIR: &str = "prompts";
pub const DATASETS_DIR: &str = "datasets";
pub const EVALS_DIR: &str = "evals";

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{} error(s) in the repository:\n{}", .0.iter().filter(|d| d.is_error()).count(), render_all(.0))]
    Invalid(Vec<Diagnostic>),
    #[error("{kind} `{name}` does not exist ({source_desc})")]
    NotFound {
        kind: &'static str,
        name: String,
        source_desc: String,
    },
}

/// Prints diagnostics one after another, blank-line separated.
pub fn render_all(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[derive(Debug, Clone)]
pub struct LoadedPrompt {
    pub prompt: Prompt,
    /// Git blob id of the prompt file: its version.
    pub blob: String,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct LoadedDataset {
    pub name: String,
    pub spec: DatasetSpec,
    pub lock: DatasetLock,
}

#[derive(Debug, Clone)]
pub struct LoadedEval {
    pub suite: EvalSuite,
    pub dataset: DatasetRef,
    pub assertions: Vec<Assertion>,
    pub path: String,
}

/// Everything a repository defines, as of one source.
#[derive(Debug, Clone)]
pub struct Project {
    pub config: Config,
    pub prompts: BTreeMap<String, LoadedPrompt>,
    pub datasets: BTreeMap<String, LoadedDataset>,
    pub evals: BTreeMap<String, LoadedEval>,
    /// The commit the project was read from, if any.
    pub commit: Option<String>,
}

/// What the loader needs to know beyond the files themselves.
pub struct LoadOptions<'a> {
    /// Resolves a git ref; used to check rollout refs. None skips the check.
    pub resolve_ref: Option<&'a dyn Fn(&str) -> bool>,
}

impl Project {
    /// Loads and checks everything. Returns the project (warnings are
    /// `validate`'s to show), or every diagnostic when any is an error.
    pub fn load(source: &dyn FileSource, opts: &LoadOptions<'_>) -> Result<Project, ProjectError> {
        let (project, diags) = Loader::new(source, opts).run()?;
        match project {
            Some(p) if !diags.iter().any(Diagnostic::is_error) => Ok(p),
            _ => Err(ProjectError::Invalid(diags)),
        }
    }

    /// Loads and checks everything, returning all diagnostics sorted by file
    /// and position (for `validate`).
    pub fn diagnose(
        source: &dyn FileSource,
        opts: &LoadOptions<'_>,
    ) -> Result<Vec<Diagnostic>, ProjectError> {
        let (_, mut diags) = Loader::new(source, opts).run()?;
        diags.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.severity).cmp(&(&b.file, b.line, b.column, b.severity))
        });
        diags.dedup();
        Ok(diags)
    }

    /// Loads only the config and one prompt, checked: enough to render or
    /// call a prompt even when unrelated files of the repository are broken.
    pub fn load_prompt(
        source: &dyn FileSource,
        id: &str,
    ) -> Result<(Config, LoadedPrompt), ProjectError> {
        if !is_valid_id(id) {
            return Err(ProjectError::NotFound {
                kind: "prompt",
                name: id.to_string(),
                source_desc: source.describe(),
            });
        }
        let opts = LoadOptions { resolve_ref: None };
        let mut loader = Loader::new(source, &opts);
        let config = loader.parse::<Config>(CONFIG_FILE, FileKind::Config)?;
        if let Some((c, f)) = &config {
            loader.check_config(c, f);
        } else if loader.diags.is_empty() {
            loader.missing_file(CONFIG_FILE, "promptgate.yaml (the repository's config)");
        }
        let path = format!("{PROMPTS_DIR}/{id}.yaml");
        let prompt = loader.parse::<Prompt>(&path, FileKind::Prompt)?;
        if let Some((p, f)) = &prompt {
            loader.check_prompt(p, f, id, config.as_ref().map(|(c, _)| c));
        }
        let errors: Vec<Diagnostic> = loader
            .diags
            .into_iter()
            .filter(Diagnostic::is_error)
            .collect();
        match (config, prompt) {
            (Some((config, _)), Some((prompt, _))) if errors.is_empty() => {
                let blob = source.blob_id(&path)?.unwrap_or_default();
                Ok((config, LoadedPrompt { prompt, blob, path }))
            }
            (_, None) if errors.is_empty() => Err(ProjectError::NotFound {
                kind: "prompt",
                name: id.to_string(),
                source_desc: source.describe(),
            }),
            _ => Err(ProjectError::Invalid(errors)),
        }
    }

    pub fn prompt(&self, id: &str) -> Result<&LoadedPrompt, ProjectError> {
        self.prompts.get(id).ok_or_else(|| ProjectError::NotFound {
            kind: "prompt",
            name: id.to_string(),
            source_desc: self.describe(),
        })
    }

    pub fn eval(&self, name: &str) -> Result<&LoadedEval, ProjectError> {
        self.evals.get(name).ok_or_else(|| ProjectError::NotFound {
            kind: "eval suite",
            name: name.to_string(),
            source_desc: self.describe(),
        })
    }

    fn describe(&self) -> String {
        match &self.commit {
            Some(c) => format!("at commit {}", &c[..c.len().min(12)]),
            None => "in the working tree".to_string(),
        }
    }
}

struct Loader<'s, 'o> {
    source: &'s dyn FileSource,
    opts: &'o LoadOptions<'o>,
    diags: Vec<Diagnostic>,
    /// Files that exist but did not parse (`prompt:<id>`, `dataset:<name>`):
    /// references to them are not reported again.
    broken: BTreeSet<String>,
}

impl<'s, 'o> Loader<'s, 'o> {
    fn new(source: &'s dyn FileSource, opts: &'o LoadOptions<'o>) -> Self {
        Loader {
            source,
            opts,
            diags: Vec::new(),
            broken: BTreeSet::new(),
        }
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn missing_file(&mut self, path: &str, what: &str) {
        let file = SourceFile::new(path, "");
        self.error(file.at_pos(Severity::Error, 1, 1, "", format!("{what} is missing")));
    }

    /// Reads and parses one file; None (with diagnostics) when it fails.
    fn parse<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        kind: FileKind,
    ) -> Result<Option<(T, SourceFile)>, ProjectError> {
        let Some(text) = self.read_text(path)? else {
            return Ok(None);
        };
        let file = SourceFile::new(path, text);
        match file.parse::<T>(kind) {
            Ok(v) => Ok(Some((v, file))),
            Err(ds) => {
                self.diags.extend(ds);
                Ok(None)
            }
        }
    }

    fn read_text(&mut self, path: &str) -> Result<Option<String>, ProjectError> {
        match self.source.read(path)? {
            None => Ok(None),
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(t) => Ok(Some(t)),
                Err(_) => {
                    let f = SourceFile::new(path, "");
                    self.error(f.at_pos(
                        Severity::Error,
                        1,
                        1,
                        "",
                        "file is not valid UTF-8".into(),
                    ));
                    Ok(None)
                }
            },
        }
    }

    fn yaml_files(&self, dir: &str) -> Result<Vec<(String, String)>, ProjectError> {
        Ok(self
            .source
            .list(dir)?
            .into_iter()
            .filter_map(|name| {
                let stem = name
                    .strip_suffix(".yaml")
                    .or_else(|| name.strip_suffix(".yml"))?;
                Some((stem.to_string(), format!("{dir}/{name}")))
            })
            .collect())
    }

    fn run(mut self) -> Result<(Option<Project>, Vec<Diagnostic>), ProjectError> {
        let config = match self.parse::<Config>(CONFIG_FILE, FileKind::Config)? {
            Some((c, f)) => {
                self.check_config(&c, &f);
                Some(c)
            }
            None => {
                if self.source.read(CONFIG_FILE)?.is_none() {
                    self.missing_file(CONFIG_FILE, "promptgate.yaml (the repository's config)");
                }
                None
            }
        };

        let mut prompts = BTreeMap::new();
        for (stem, path) in self.yaml_files(PROMPTS_DIR)? {
            if let Some((p, f)) = self.parse::<Prompt>(&path, FileKind::Prompt)? {
                self.check_prompt(&p, &f, &stem, config.as_ref());
                let blob = self.source.blob_id(&path)?.unwrap_or_default();
                prompts.insert(
                    stem,
                    LoadedPrompt {
                        prompt: p,
                        blob,
                        path,
                    },
                );
            } else {
                self.broken.insert(format!("prompt:{stem}"));
            }
        }

        let mut datasets = BTreeMap::new();
        for name in self.source.list(DATASETS_DIR)? {
            let spec_path = format!("{DATASETS_DIR}/{name}/dataset.yaml");
            if self.source.read(&spec_path)?.is_none() {
                continue;
            }
            let Some((spec, spec_file)) =
                self.parse::<DatasetSpec>(&spec_path, FileKind::Dataset)?
            else {
                self.broken.insert(format!("dataset:{name}"));
                continue;
            };
            if !is_valid_id(&name) {
                self.error(spec_file.at_pos(Severity::Error, 1, 1, "", format!("dataset folder name `{name}` must be lowercase letters, digits, '-' and '_'")));
            }
            if !spec.columns.contains_key(&spec.key) {
                self.error(spec_file.at_value(
                    Severity::Error,
                    "/key",
                    format!("key column `{}` is not among the columns", spec.key),
                ));
            }
            let lock_path = format!("{DATASETS_DIR}/{name}/dataset.lock");
            let lock = match self.parse::<DatasetLock>(&lock_path, FileKind::DatasetLock)? {
                Some((lock, lock_file)) => {
                    for (i, v) in lock.versions.iter().enumerate() {
                        let file = format!("{DATASETS_DIR}/{name}/{}", v.file);
                        if self.source.read(&file)?.is_none() {
                            self.error(lock_file.at_value(
                                Severity::Error,
                                &format!("/versions/{i}/file"),
                                format!("snapshot file `{file}` of v{} is missing", v.version),
                            ));
                        }
                    }
                    lock
                }
                None => DatasetLock::default(),
            };
            datasets.insert(name.clone(), LoadedDataset { name, spec, lock });
        }

        let mut evals = BTreeMap::new();
        for (stem, path) in self.yaml_files(EVALS_DIR)? {
            if let Some((suite, f)) = self.parse::<EvalSuite>(&path, FileKind::Eval)?
                && let Some(loaded) =
                    self.check_eval(&path, suite, &f, config.as_ref(), &prompts, &datasets)?
            {
                evals.insert(stem, loaded);
            }
        }

        if let Some((r, f)) = self.parse::<Rollout>(ROLLOUT_FILE, FileKind::Rollout)? {
            self.check_rollout(&r, &f, &prompts);
        }

        let project = config.map(|config| Project {
            config,
            prompts,
            datasets,
            evals,
            commit: self.source.commit().map(|c| c.to_string()),
        });
        Ok((project, self.diags))
    }

    fn check_config(&mut self, c: &Config, f: &SourceFile) {
        for (name, m) in &c.models {
            if !c.providers.contains_key(&m.provider) {
                let known = c.providers.keys().cloned().collect::<Vec<_>>().join(", ");
                self.error(f.at_value(
                    Severity::Error,
                    &format!("/models/{name}/provider"),
                    format!("unknown provider `{}` (providers: {known})", m.provider),
                ));
            }
        }
    }

    fn check_prompt(&mut self, p: &Prompt, f: &SourceFile, stem: &str, config: Option<&Config>) {
        if p.id != stem && is_valid_id(&p.id) {
            self.error(f.at_value(
                Severity::Error,
                "/id",
                format!("id `{}` must match the file name `{stem}.yaml`", p.id),
            ));
        }
        if let Some(c) = config
            && !c.models.contains_key(&p.model)
        {
            self.error(f.at_value(Severity::Error, "/model", unknown_model(&p.model, c)));
        }
        let mut used = BTreeSet::new();
        for (i, m) in p.messages.iter().enumerate() {
            let pointer = format!("/messages/{i}/content");
            match template::variables_used(&m.content) {
                Ok(vars) => {
                    for v in &vars {
                        if !p.inputs.contains_key(v) {
                            self.error(f.at_value(
                                Severity::Error,
                                &pointer,
                                format!("template uses `{v}`, which is not declared in `inputs`"),
                            ));
                        }
                    }
                    used.extend(vars);
                }
                Err(e) => {
                    let at = e
                        .line
                        .map(|l| format!(" (template line {l})"))
                        .unwrap_or_default();
                    self.error(f.at_value(
                        Severity::Error,
                        &pointer,
                        format!("template does not compile{at}: {}", e.message),
                    ));
                }
            }
        }
        for name in p.inputs.keys() {
            if !used.contains(name) {
                self.error(f.at_key(
                    Severity::Warning,
                    &format!("/inputs/{name}"),
                    format!("input `{name}` is declared but no message uses it"),
                ));
            }
        }
        if let Some(schema) = &p.output.schema
            && let Err(e) = jsonschema::validator_for(schema)
        {
            self.error(f.at_value(
                Severity::Error,
                "/output/schema",
                format!("not a valid JSON Schema: {e}"),
            ));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_eval(
        &mut self,
        path: &str,
        suite: EvalSuite,
        f: &SourceFile,
        config: Option<&Config>,
        prompts: &BTreeMap<String, LoadedPrompt>,
        datasets: &BTreeMap<String, LoadedDataset>,
    ) -> Result<Option<LoadedEval>, ProjectError> {
        let errors_before = self.diags.iter().filter(|d| d.is_error()).count();
        let prompt = prompts.get(&suite.prompt);
        if prompt.is_none() && !self.broken.contains(&format!("prompt:{}", suite.prompt)) {
            let known = prompts.keys().cloned().collect::<Vec<_>>().join(", ");
            self.error(f.at_value(
                Severity::Error,
                "/prompt",
                format!("unknown prompt `{}` (prompts: {known})", suite.prompt),
            ));
        }
        let dataset_ref: Option<DatasetRef> = match suite.dataset.parse::<DatasetRef>() {
            Ok(r) => Some(r),
            Err(e) => {
                self.error(f.at_value(Severity::Error, "/dataset", e));
                None
            }
        };
        let dataset = dataset_ref.as_ref().and_then(|r| {
            let d = datasets.get(&r.name);
            if d.is_none() && !self.broken.contains(&format!("dataset:{}", r.name)) {
                let known = datasets.keys().cloned().collect::<Vec<_>>().join(", ");
                self.diags.push(f.at_value(
                    Severity::Error,
                    "/dataset",
                    format!("unknown dataset `{}` (datasets: {known})", r.name),
                ));
            }
            d
        });
        if let (Some(r), Some(d)) = (&dataset_ref, dataset)
            && d.lock.get(r.version).is_none()
        {
            let have = d
                .lock
                .versions
                .iter()
                .map(|v| format!("v{}", v.version))
                .collect::<Vec<_>>();
            let have = if have.is_empty() {
                "none; run `promptgate dataset snapshot`".to_string()
            } else {
                have.join(", ")
            };
            self.error(f.at_value(
                Severity::Error,
                "/dataset",
                format!(
                    "dataset `{}` has no version v{} (versions: {have})",
                    r.name, r.version
                ),
            ));
        }
        if let Some(d) = dataset {
            for (var, column) in &suite.vars {
                if !d.spec.columns.contains_key(column) {
                    self.error(f.at_value(
                        Severity::Error,
                        &format!("/vars/{var}"),
                        format!("dataset `{}` has no column `{column}`", d.name),
                    ));
                }
            }
            if let Some(p) = prompt {
                for var in suite.vars.keys() {
                    if !p.prompt.inputs.contains_key(var) {
                        self.error(f.at_key(
                            Severity::Error,
                            &format!("/vars/{var}"),
                            format!("prompt `{}` declares no input `{var}`", p.prompt.id),
                        ));
                    }
                }
                for (input, spec) in &p.prompt.inputs {
                    let column = suite.vars.get(input).unwrap_or(input);
                    if spec.required && !d.spec.columns.contains_key(column) {
                        self.error(f.at_key(Severity::Error, "/vars", format!("required input `{input}` of prompt `{}` has no dataset column; map it in `vars`", p.prompt.id)));
                    }
                }
                // `dataset grow` maps reviewed calls back through the
                // inverse of `vars`: say where that has no single answer.
                let columns = d
                    .spec
                    .columns
                    .iter()
                    .map(|(c, s)| (c.clone(), s.required))
                    .collect();
                let inverse = crate::binding::inverse_vars(&suite.vars, &p.prompt.inputs, &columns);
                for message in inverse.ambiguities {
                    self.error(f.at_key(Severity::Warning, "/vars", format!("the inverse mapping is ambiguous (`dataset grow` refuses such calls): {message}")));
                }
            }
        }
        if let (Some(matrix), Some(config)) = (&suite.compare, config) {
            for (i, model) in matrix.models.iter().enumerate() {
                if !config.models.contains_key(model) {
                    let known = config.models.keys().cloned().collect::<Vec<_>>().join(", ");
                    self.error(f.at_value(
                        Severity::Error,
                        &format!("/compare/models/{i}"),
                        format!("unknown model `{model}` (models: {known})"),
                    ));
                }
            }
        }
        let mut assertions = Vec::new();
        for (i, raw) in suite.assertions.iter().enumerate() {
            let base = format!("/assertions/{i}");
            match Assertion::try_from(raw) {
                Ok(a) => {
                    self.check_assertion(&a, &base, f, config, dataset);
                    assertions.push(a);
                }
                Err(e) => {
                    let ptr = format!("{base}/{}", e.field);
                    self.error(f.at_key(Severity::Error, &ptr, e.message));
                }
            }
        }
        let errors_after = self.diags.iter().filter(|d| d.is_error()).count();
        if errors_after > errors_before {
            return Ok(None);
        }
        let Some(dataset) = dataset_ref else {
            return Ok(None);
        };
        Ok(Some(LoadedEval {
            suite,
            dataset,
            assertions,
            path: path.to_string(),
        }))
    }

    fn check_assertion(
        &mut self,
        a: &Assertion,
        base: &str,
        f: &SourceFile,
        config: Option<&Config>,
        dataset: Option<&LoadedDataset>,
    ) {
        let template_value = match &a.check {
            Check::Equals { value }
            | Check::Contains { value }
            | Check::Icontains { value }
            | Check::NotContains { value }
            | Check::StartsWith { value } => Some(value),
            Check::Regex { pattern } => Some(pattern),
            _ => None,
        };
        if let Some(v) = template_value {
            match template::variables_used(v) {
                Ok(vars) => {
                    if let Some(bad) = vars.iter().find(|v| *v != "row") {
                        self.error(f.at_value(
                            Severity::Error,
                            &format!("{base}/value"),
                            format!("assertion values may only use `row.<column>`, not `{bad}`"),
                        ));
                    }
                }
                Err(e) => self.error(f.at_value(
                    Severity::Error,
                    &format!("{base}/value"),
                    format!("template does not compile: {}", e.message),
                )),
            }
        }
        match &a.check {
            Check::Regex { pattern } if !pattern.contains("{{") => {
                if let Err(e) = regex::Regex::new(pattern) {
                    self.error(f.at_value(
                        Severity::Error,
                        &format!("{base}/value"),
                        format!("invalid regex: {e}"),
                    ));
                }
            }
            Check::JsonSchema { schema } => {
                if let Err(e) = jsonschema::validator_for(schema) {
                    self.error(f.at_value(
                        Severity::Error,
                        &format!("{base}/schema"),
                        format!("not a valid JSON Schema: {e}"),
                    ));
                }
            }
            Check::Similarity { column, .. } => {
                if let Some(d) = dataset
                    && !d.spec.columns.contains_key(column)
                {
                    self.error(f.at_value(
                        Severity::Error,
                        &format!("{base}/column"),
                        format!("dataset `{}` has no column `{column}`", d.name),
                    ));
                }
            }
            Check::LlmJudge { judge, .. } => {
                if let Some(c) = config
                    && !c.models.contains_key(judge)
                {
                    self.error(f.at_value(
                        Severity::Error,
                        &format!("{base}/judge"),
                        unknown_model(judge, c),
                    ));
                }
            }
            _ => {}
        }
    }

    fn check_rollout(
        &mut self,
        r: &Rollout,
        f: &SourceFile,
        prompts: &BTreeMap<String, LoadedPrompt>,
    ) {
        if let Some(resolve) = self.opts.resolve_ref {
            if !resolve(&r.stable) {
                self.error(f.at_value(
                    Severity::Error,
                    "/stable",
                    format!("ref `{}` does not resolve to a commit", r.stable),
                ));
            }
            if let Some(c) = &r.canary
                && !resolve(&c.git_ref)
            {
                self.error(f.at_value(
                    Severity::Error,
                    "/canary/ref",
                    format!("ref `{}` does not resolve to a commit", c.git_ref),
                ));
            }
        }
        if let Some(c) = &r.canary {
            for (i, p) in c.prompts.iter().enumerate() {
                if !prompts.contains_key(p) && !self.broken.contains(&format!("prompt:{p}")) {
                    self.error(f.at_value(
                        Severity::Error,
                        &format!("/canary/prompts/{i}"),
                        format!("unknown prompt `{p}`"),
                    ));
                }
            }
            if c.steps.windows(2).any(|w| w[0] >= w[1]) {
                self.error(f.at_value(
                    Severity::Error,
                    "/canary/steps",
                    "steps must increase".to_string(),
                ));
            }
        }
        for (i, check) in r.analysis.checks.iter().enumerate() {
            let set = [check.max_drop, check.max_increase, check.max_increase_pct]
                .iter()
                .filter(|v| v.is_some())
                .count();
            if set != 1 {
                self.error(f.at_value(
                    Severity::Error,
                    &format!("/analysis/checks/{i}"),
                    "set exactly one of max_drop, max_increase, max_increase_pct".to_string(),
                ));
            }
        }
    }
}

fn unknown_model(name: &str, c: &Config) -> String {
    let known = c.models.keys().cloned().collect::<Vec<_>>().join(", ");
    format!("unknown model `{name}` (models in promptgate.yaml: {known})")
}
