//! `promptgate render PROMPT --var k=v`: the rendered messages of a prompt
//! as of a ref (default: HEAD, i.e. what is committed) or, with
//! `--worktree`, as edited.

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::ExitStatus;
use crate::binding::{self, BindError, Supplied};
use crate::project::Project;
use crate::repo::{FileSource, GitRepo};
use crate::template;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Prompt id (file name under prompts/ without .yaml).
    pub prompt: String,
    /// A variable, `name=value`. Values that parse as JSON for a non-string
    /// input (numbers, arrays, ...) are passed as JSON.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Git ref to read the prompt from.
    #[arg(long = "ref", default_value = "HEAD", conflicts_with = "worktree")]
    pub git_ref: String,
    /// Read the prompt and promptgate.yaml from the working tree (before
    /// committing) instead of a commit.
    #[arg(long)]
    pub worktree: bool,
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Print the messages as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let location = super::location(args.repo.as_deref(), &args.git_ref, args.worktree)?;
    let git = GitRepo::open(&location.root)?;
    let files = location.files(&git)?;
    let (_config, loaded) = Project::load_prompt(&files, &args.prompt).with_context(|| {
        format!(
            "loading prompt `{}` at {}",
            args.prompt,
            location.describe()
        )
    })?;
    let vars = parse_vars(&args.vars, &loaded.prompt)?;
    let messages = template::render_messages(&loaded.prompt.messages, &vars)
        .with_context(|| format!("rendering prompt `{}`", args.prompt))?;
    if args.json {
        let out = serde_json::json!({
            "prompt": args.prompt,
            "model": loaded.prompt.model,
            "version": { "commit": files.commit().map(|c| c.to_string()), "blob": loaded.blob },
            "messages": messages,
        });
        super::out(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    } else {
        let mut text = String::new();
        for m in &messages {
            text.push_str(&format!("[{}]\n{}\n\n", m.role, m.content));
        }
        super::out(&text)?;
    }
    Ok(ExitStatus::Success)
}

/// `name=value` pairs as JSON values: a string input takes the text as it
/// is, any other type parses it as JSON. Binding (declared names, types,
/// required inputs, defaults) is [`binding::bind`]'s, as in every command.
fn parse_vars(
    pairs: &[String],
    prompt: &crate::spec::prompt::Prompt,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use crate::spec::prompt::InputType;
    let mut values = serde_json::Map::new();
    for pair in pairs {
        let Some((name, raw)) = pair.split_once('=') else {
            bail!("--var `{pair}`: expected NAME=VALUE");
        };
        let value = match prompt.inputs.get(name).map(|spec| spec.kind) {
            None | Some(InputType::String) => serde_json::Value::String(raw.to_string()),
            Some(kind) => serde_json::from_str(raw).with_context(|| {
                format!("--var `{name}`: `{raw}` is not a valid {}", kind.as_str())
            })?,
        };
        values.insert(name.to_string(), value);
    }
    let bound = binding::bind(&prompt.id, &prompt.inputs, Supplied::values(values)).map_err(
        |e| match e {
            BindError::Missing { .. } => anyhow::anyhow!("{e}: pass --var {}=...", e.input()),
            e => anyhow::anyhow!("--var `{}`: {e}", e.input()),
        },
    )?;
    Ok(bound.values)
}
