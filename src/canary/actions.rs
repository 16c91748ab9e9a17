//! The git side of canary analysis: where the canary came from (the history
//! of rollout.yaml on the control branch) and the commits that act on a
//! decision.
//!
//! * rollback: `git revert` of the commit that introduced the canary into
//!   rollout.yaml; when that revert does not apply cleanly (later edits of
//!   the same lines), or would not remove the canary, a commit that removes
//!   the `canary:` block instead;
//! * promote: stable moves to the canary's commit, by editing `stable:` in
//!   rollout.yaml (`promote_mode: rollout`) or by fast-forwarding the stable
//!   branch (`fast_forward`), and the canary is removed;
//! * advance: `canary.weight` moves to the next of `canary.steps`.
//!
//! Every commit carries the analysis table in its message and is made by
//! `analysis.author` (default: the repository's identity). rollout.yaml is
//! edited as text, line by line, so comments and layout survive; each edit
//! is parsed back and checked, and only if that check fails is the file
//! re-serialised.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::CanaryError;
use super::analysis::{Action, CanaryReport};
use crate::project::ROLLOUT_FILE;
use crate::repo::{FileSource, GitRepo, Oid, Signature};
use crate::spec::rollout::{Canary, PromoteMode, Rollout};
use crate::spec::{FileKind, SourceFile};

/// The branch whose rollout.yaml is live, and its current commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlBranch {
    /// Full name, e.g. `refs/heads/main`.
    pub refname: String,
    pub commit: String,
}

impl ControlBranch {
    /// `control_ref` as in promptgate.yaml's `server.control_ref`; `HEAD`
    /// means the checked-out branch.
    pub fn resolve(git: &GitRepo, control_ref: &str) -> Result<ControlBranch, CanaryError> {
        let refname = git.branch_refname(control_ref)?;
        let commit = git.resolve(&refname)?.to_string();
        Ok(ControlBranch { refname, commit })
    }

    fn oid(&self) -> Result<Oid, CanaryError> {
        Oid::from_str(&self.commit).map_err(|e| CanaryError::Repo(e.into()))
    }
}

/// Where the live canary came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryOrigin {
    /// The commit that put this canary (its `ref`) into rollout.yaml.
    pub introduced_by: String,
    pub introduced_subject: String,
    pub introduced_at: DateTime<Utc>,
    /// When the canary's current settings (weight, step) were committed:
    /// the start of the analysis window.
    pub current_since: DateTime<Utc>,
}

/// The rollout.yaml committed at `commit` (None when the file is absent).
pub fn rollout_at(git: &GitRepo, commit: &str) -> Result<Option<Rollout>, CanaryError> {
    let tree = git.tree_at(commit)?;
    let Some(text) = tree.read_string(ROLLOUT_FILE)? else {
        return Ok(None);
    };
    parse_rollout(&text).map(Some)
}

fn parse_rollout(text: &str) -> Result<Rollout, CanaryError> {
    SourceFile::new(ROLLOUT_FILE, text)
        .parse(FileKind::Rollout)
        .map_err(|d| CanaryError::Invalid(crate::project::render_all(&d)))
}

/// Walks rollout.yaml's history on the control branch back to the commit
/// that introduced the current canary. None when there is no canary.
pub fn canary_origin(
    git: &GitRepo,
    control: &ControlBranch,
) -> Result<Option<CanaryOrigin>, CanaryError> {
    let versions = git.file_history(&control.commit, ROLLOUT_FILE)?;
    let Some(current) = rollout_at(git, &control.commit)?.and_then(|r| r.canary) else {
        return Ok(None);
    };
    let mut origin: Option<CanaryOrigin> = None;
    let mut settings_unchanged = true;
    for v in &versions {
        // A version that no longer parses ends the canary's history.
        let canary: Option<Canary> = rollout_at(git, &v.commit)
            .ok()
            .flatten()
            .and_then(|r| r.canary);
        let Some(c) = canary.filter(|c| c.git_ref == current.git_ref) else {
            break;
        };
        let at = Utc
            .timestamp_opt(v.time, 0)
            .single()
            .unwrap_or_else(Utc::now);
        settings_unchanged &= c == current;
        let since = match &origin {
            Some(o) if !settings_unchanged => o.current_since,
            _ => at,
        };
        origin = Some(CanaryOrigin {
            introduced_by: v.commit.clone(),
            introduced_subject: v.subject.clone(),
            introduced_at: at,
            current_since: since,
        });
    }
    Ok(origin)
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub action: Action,
    /// The commit made on the control branch, if any.
    pub commit: Option<String>,
    /// How: `revert of <sha>`, `removal of the canary block (...)`, ...
    pub method: String,
    /// Refs that moved (full names), to push.
    pub moved: Vec<String>,
    /// Whether the checked-out working tree was updated.
    pub worktree_updated: bool,
    pub notes: Vec<String>,
}

/// Author and committer of the tool's commits.
pub fn signature(git: &GitRepo, rollout: &Rollout) -> Result<Signature<'static>, CanaryError> {
    match &rollout.analysis.author {
        Some(a) => Ok(crate::repo::signature(&a.name, &a.email)?),
        None => Ok(git.signature()?),
    }
}

/// Carries out `report.action` on the control branch. Actions without a
/// commit (none, hold, alert) return an [`Applied`] with no commit.
pub fn apply(
    git: &GitRepo,
    control: &ControlBranch,
    rollout: &Rollout,
    report: &CanaryReport,
    origin: Option<&CanaryOrigin>,
) -> Result<Applied, CanaryError> {
    let sig = signature(git, rollout)?;
    let evidence = report.render();
    let mut applied = Applied {
        action: report.action,
        commit: None,
        method: String::new(),
        moved: Vec::new(),
        worktree_updated: false,
        notes: Vec::new(),
    };
    let Some(canary) = &rollout.canary else {
        applied.method = "nothing to do: no canary".into();
        return Ok(applied);
    };
    let head = control.oid()?;
    let current_text = git
        .tree_at(&control.commit)?
        .read_string(ROLLOUT_FILE)?
        .ok_or_else(|| {
            CanaryError::Invalid(format!("{ROLLOUT_FILE}: missing at {}", control.commit))
        })?;
    let (tree, message, method) = match report.action {
        Action::None | Action::Hold | Action::Alert => {
            applied.method = format!("no commit ({})", report.action.describe());
            return Ok(applied);
        }
        Action::Rollback => rollback_tree(
            git,
            head,
            canary,
            &current_text,
            origin,
            &report.reason,
            &evidence,
        )?,
        Action::AdvanceStep { from, to } => {
            let text = edit_or_reserialise(
                &current_text,
                |t| set_nested_scalar(t, "canary", "weight", &fmt_weight(to)),
                |r| {
                    if let Some(c) = &mut r.canary {
                        c.weight = to;
                    }
                },
            )?;
            let tree = git.tree_with_file(head, ROLLOUT_FILE, text.as_bytes())?;
            let msg = format!(
                "promptgate: canary {} step {}% -> {}%\n\nThe current step is healthy: {}.\n\n{evidence}",
                canary.git_ref,
                fmt_weight(from),
                fmt_weight(to),
                report.reason
            );
            (
                tree,
                msg,
                format!("weight {} -> {}", fmt_weight(from), fmt_weight(to)),
            )
        }
        Action::Promote => {
            let canary_commit = git.resolve(&canary.git_ref)?;
            let short = &canary_commit.to_string()[..12];
            let (text, how) = match rollout.analysis.promote_mode {
                PromoteMode::Rollout => {
                    let sha = canary_commit.to_string();
                    let text = edit_or_reserialise(
                        &current_text,
                        |t| {
                            remove_top_level_key(t, "canary").and_then(|t| {
                                set_top_level_scalar(&t, "stable", &format!("\"{sha}\""))
                            })
                        },
                        |r| {
                            r.canary = None;
                            r.stable = sha.clone();
                        },
                    )?;
                    (text, format!("stable set to {short} in {ROLLOUT_FILE}"))
                }
                PromoteMode::FastForward => {
                    let stable = git.branch_refname(&rollout.stable)?;
                    if stable == control.refname {
                        return Err(CanaryError::Action(format!(
                            "promote_mode fast_forward needs a stable branch other than the control branch {}; use promote_mode: rollout",
                            control.refname
                        )));
                    }
                    let ff = git.fast_forward(&stable, canary_commit)?;
                    applied.moved.push(stable.clone());
                    if let Some(n) = ff.worktree_note {
                        applied.notes.push(n);
                    }
                    let text = edit_or_reserialise(
                        &current_text,
                        |t| remove_top_level_key(t, "canary"),
                        |r| r.canary = None,
                    )?;
                    (text, format!("{stable} fast-forwarded to {short}"))
                }
            };
            let tree = git.tree_with_file(head, ROLLOUT_FILE, text.as_bytes())?;
            let msg = format!(
                "promptgate: promote canary {} ({short}) to stable\n\n{how}; canary removed.\n{}.\n\n{evidence}",
                canary.git_ref, report.reason
            );
            (tree, msg, how)
        }
    };
    let done = git.commit_on_branch(&control.refname, head, tree, &message, &sig)?;
    applied.commit = Some(done.commit.to_string());
    applied.method = method;
    applied.moved.insert(0, control.refname.clone());
    applied.worktree_updated = done.worktree_updated;
    if let Some(n) = done.worktree_note {
        applied.notes.push(format!("working tree not updated: {n}"));
    }
    Ok(applied)
}

/// The rollback tree: a clean revert of the introducing commit when it
/// removes the canary, else the current file without its `canary:` block.
fn rollback_tree(
    git: &GitRepo,
    head: Oid,
    canary: &Canary,
    current_text: &str,
    origin: Option<&CanaryOrigin>,
    reason: &str,
    evidence: &str,
) -> Result<(Oid, String, String), CanaryError> {
    let why_not = match origin {
        None => "the commit that introduced the canary was not found".to_string(),
        Some(o) => {
            let intro = Oid::from_str(&o.introduced_by).map_err(|e| CanaryError::Repo(e.into()))?;
            match git.revert_tree(intro, head) {
                // e.g. the canary came with the repository's first commit.
                Err(e) => format!("the revert of {} failed ({e})", &o.introduced_by[..12]),
                Ok(None) => format!(
                    "the revert of {} does not apply cleanly",
                    &o.introduced_by[..12]
                ),
                Ok(Some(tree)) => {
                    let after = git
                        .read_in_tree(tree, ROLLOUT_FILE)
                        .ok()
                        .flatten()
                        .and_then(|b| String::from_utf8(b).ok());
                    let still_there = after
                        .as_deref()
                        .map(parse_rollout)
                        .map(|r| r.map(|r| r.canary.is_some_and(|c| c.git_ref == canary.git_ref)));
                    match still_there {
                        Some(Ok(false)) => {
                            let msg = format!(
                                "Revert \"{}\"\n\nThis reverts commit {}.\n\npromptgate canary rollback of {}: {reason}\n\n{evidence}",
                                o.introduced_subject, o.introduced_by, canary.git_ref
                            );
                            return Ok((tree, msg, format!("revert of {}", o.introduced_by)));
                        }
                        Some(Ok(true)) => format!(
                            "the revert of {} leaves the canary in place",
                            &o.introduced_by[..12]
                        ),
                        Some(Err(_)) | None => format!(
                            "the revert of {} leaves {ROLLOUT_FILE} invalid",
                            &o.introduced_by[..12]
                        ),
                    }
                }
            }
        }
    };
    let text = edit_or_reserialise(
        current_text,
        |t| remove_top_level_key(t, "canary"),
        |r| r.canary = None,
    )?;
    let tree = git.tree_with_file(head, ROLLOUT_FILE, text.as_bytes())?;
    let msg = format!(
        "promptgate: roll back canary {} (remove it from {ROLLOUT_FILE})\n\n{why_not}, so the canary block is removed instead.\npromptgate canary rollback: {reason}\n\n{evidence}",
        canary.git_ref
    );
    Ok((
        tree,
        msg,
        format!("removal of the canary block ({why_not})"),
    ))
}

/// Applies a text edit and checks it by parsing: the result must equal the
/// current rollout with `expected` applied. Otherwise the file is
/// re-serialised from that expected value (comments are lost).
fn edit_or_reserialise(
    text: &str,
    edit: impl Fn(&str) -> Option<String>,
    expected: impl Fn(&mut Rollout),
) -> Result<String, CanaryError> {
    let mut want = parse_rollout(text)?;
    expected(&mut want);
    if let Some(edited) = edit(text)
        && parse_rollout(&edited).is_ok_and(|r| r == want)
    {
        return Ok(edited);
    }
    let mut value = serde_json::to_value(&want).map_err(|e| CanaryError::Action(e.to_string()))?;
    strip_nulls(&mut value);
    let yaml = serde_yaml_ng::to_string(&value).map_err(|e| CanaryError::Action(e.to_string()))?;
    Ok(format!(
        "# yaml-language-server: $schema=schema/rollout.schema.json\n{yaml}"
    ))
}

fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn fmt_weight(w: f64) -> String {
    format!("{w}")
}

/// Whether `line` starts the top-level mapping key `key`.
fn is_top_key(line: &str, key: &str) -> bool {
    line.strip_prefix(key)
        .is_some_and(|rest| rest.starts_with(':'))
}

/// Removes a top-level key and its block (indented lines, `- ` items at
/// column 0, blank lines inside it). None when the key is absent.
pub(crate) fn remove_top_level_key(text: &str, key: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| is_top_key(l, key))?;
    let indented = |l: &str| l.starts_with(' ') || l.starts_with('\t') || l.starts_with('-');
    let filler = |l: &str| l.trim().is_empty() || l.starts_with('#');
    let mut end = start + 1;
    while end < lines.len() {
        if indented(lines[end]) {
            end += 1;
            continue;
        }
        // Blank lines and comments at column 0 belong to the block only
        // when the block goes on after them.
        let next = (end..lines.len()).find(|&i| !filler(lines[i]));
        match next {
            Some(i) if indented(lines[i]) => end = i,
            _ => break,
        }
    }
    let mut out: String = lines[..start].concat();
    out.push_str(&lines[end..].concat());
    Some(out)
}

/// Replaces the value of a top-level scalar key, keeping a trailing comment.
pub(crate) fn set_top_level_scalar(text: &str, key: &str, value: &str) -> Option<String> {
    replace_line(text, |l| is_top_key(l, key), |l| with_value(l, value))
}

/// Replaces the value of `key` inside the top-level block `parent`.
pub(crate) fn set_nested_scalar(
    text: &str,
    parent: &str,
    key: &str,
    value: &str,
) -> Option<String> {
    let mut in_parent = false;
    let mut done = false;
    let mut out = String::with_capacity(text.len() + 8);
    for l in text.split_inclusive('\n') {
        if !l.starts_with(' ')
            && !l.starts_with('\t')
            && !l.trim().is_empty()
            && !l.starts_with('#')
        {
            in_parent = is_top_key(l, parent);
        }
        if in_parent && !done && is_top_key(l.trim_start(), key) {
            out.push_str(&with_value(l, value));
            done = true;
        } else {
            out.push_str(l);
        }
    }
    done.then_some(out)
}

fn replace_line(
    text: &str,
    hit: impl Fn(&str) -> bool,
    f: impl Fn(&str) -> String,
) -> Option<String> {
    let mut done = false;
    let mut out = String::with_capacity(text.len() + 8);
    for l in text.split_inclusive('\n') {
        if !done && hit(l) {
            out.push_str(&f(l));
            done = true;
        } else {
            out.push_str(l);
        }
    }
    done.then_some(out)
}

/// `  key: old  # note\n` -> `  key: value  # note\n`.
fn with_value(line: &str, value: &str) -> String {
    let (body, nl) = match line.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (line, ""),
    };
    let colon = body.find(':').unwrap_or(body.len());
    // The comment with the spaces that align it.
    let comment = match body[colon..].find(" #") {
        Some(i) => {
            let hash = colon + i;
            let start = body[..hash].trim_end().len().max(colon + 1);
            &body[start..]
        }
        None => "",
    };
    format!("{}: {value}{comment}{nl}", &body[..colon])
}

/// Pushes the branches [`apply`] moved (`Applied::moved`) to
/// `analysis.push.remote` (default `origin`): the control branch to
/// `analysis.push.branch` (default: its own name), others to their own
/// names. Returns the refspecs pushed.
pub fn push_moved(
    git: &GitRepo,
    control: &ControlBranch,
    rollout: &Rollout,
    moved: &[String],
) -> Result<Vec<String>, CanaryError> {
    let target = rollout.analysis.push.as_ref();
    let remote = target.map_or("origin", |t| t.remote.as_str());
    let mut specs = Vec::new();
    for r in moved {
        let dst = match target.and_then(|t| t.branch.as_deref()) {
            Some(b) if *r == control.refname => git.branch_refname(b)?,
            _ => r.clone(),
        };
        specs.push(format!("{r}:{dst}"));
    }
    git.push(remote, &specs)?;
    Ok(specs
        .into_iter()
        .map(|s| format!("{s} to {remote}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROLLOUT: &str = "# head comment\nstable: refs/heads/main  # served to most\ncanary:\n  ref: refs/heads/prompt/x\n  weight: 5   # percent\n  steps: [5, 25, 50]\n  prompts:\n  - capital\n\nanalysis:\n  min_requests: 200\n";

    #[test]
    fn removes_the_canary_block_and_keeps_the_rest() {
        let out = remove_top_level_key(ROLLOUT, "canary").unwrap();
        assert_eq!(
            out,
            "# head comment\nstable: refs/heads/main  # served to most\n\nanalysis:\n  min_requests: 200\n"
        );
        assert_eq!(remove_top_level_key(&out, "canary"), None);
    }

    #[test]
    fn sets_values_keeping_comments() {
        let out = set_nested_scalar(ROLLOUT, "canary", "weight", "25").unwrap();
        assert!(out.contains("  weight: 25   # percent\n"), "{out}");
        let out = set_top_level_scalar(ROLLOUT, "stable", "\"abc\"").unwrap();
        assert!(out.contains("stable: \"abc\"  # served to most\n"), "{out}");
        // `min_requests` is not under `canary`.
        assert_eq!(
            set_nested_scalar(ROLLOUT, "canary", "min_requests", "1"),
            None
        );
    }

    #[test]
    fn reserialises_when_the_text_edit_is_not_what_was_meant() {
        // A flow-style canary on one line with the key quoted: the text edit
        // finds no `canary:` line, so the file is rewritten from the value.
        let text = "stable: refs/heads/main\n\"canary\": {ref: refs/heads/x, weight: 10}\n";
        let out = edit_or_reserialise(
            text,
            |t| remove_top_level_key(t, "canary"),
            |r| r.canary = None,
        )
        .unwrap();
        let r = parse_rollout(&out).unwrap();
        assert!(r.canary.is_none());
        assert_eq!(r.stable, "refs/heads/main");
    }

    fn comment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z ]{0,12}".prop_map(|c| format!("# {c}\n"))
        ]
    }

    fn rollout_text() -> impl Strategy<Value = String> {
        (
            comment(),
            prop_oneof![Just("refs/heads/main"), Just("main"), Just("refs/tags/v1")],
            0u32..=100,
            proptest::collection::vec("[a-z][a-z0-9_-]{0,8}", 0..3),
            any::<bool>(),
            comment(),
            proptest::option::of(1u64..500),
            any::<bool>(),
        )
            .prop_map(
                |(c1, stable, weight, prompts, flow, c2, min, canary_last)| {
                    let list = if flow {
                        format!("  prompts: [{}]\n", prompts.join(", "))
                    } else if prompts.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "  prompts:\n{}",
                            prompts
                                .iter()
                                .map(|p| format!("  - {p}\n"))
                                .collect::<String>()
                        )
                    };
                    let canary = format!(
                        "canary:\n  ref: refs/heads/x\n{c2}  weight: {weight}  # w\n{list}\n"
                    );
                    let analysis = min.map_or(String::new(), |m| {
                        format!("analysis:\n  min_requests: {m}\n")
                    });
                    let head = format!("{c1}stable: {stable}\n");
                    if canary_last {
                        format!("{head}{analysis}{canary}")
                    } else {
                        format!("{head}{canary}{c1}{analysis}")
                    }
                },
            )
    }

    proptest! {
        /// The text edits do exactly what the re-serialising fallback would,
        /// on any layout of the blocks, comments and list styles.
        #[test]
        fn text_edits_change_only_what_they_mean(text in rollout_text(), to in 1u32..=100) {
            let before = parse_rollout(&text).unwrap();
            let removed = remove_top_level_key(&text, "canary").unwrap();
            let r = parse_rollout(&removed).unwrap();
            prop_assert_eq!(&r, &Rollout { canary: None, ..before.clone() });
            let moved = set_nested_scalar(&text, "canary", "weight", &to.to_string()).unwrap();
            let r = parse_rollout(&moved).unwrap();
            let mut want = before.clone();
            if let Some(c) = &mut want.canary { c.weight = f64::from(to); }
            prop_assert_eq!(&r, &want);
            prop_assert!(moved.contains("  # w\n"));
            let promoted = set_top_level_scalar(&removed, "stable", "\"0123456789\"").unwrap();
            let r = parse_rollout(&promoted).unwrap();
            prop_assert_eq!(r.stable, "0123456789");
        }
    }
}
