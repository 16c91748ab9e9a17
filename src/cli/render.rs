//! `promptgate render PROMPT --var k=v`: the rendered messages of a prompt
//! as of a ref (default: HEAD, i.e. what is committed).

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::ExitStatus;
use crate::project::Project;
use crate::repo::FileSource;
use crate::repo::GitRepo;
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
    #[arg(long = "ref", default_value = "HEAD")]
    pub git_ref: String,
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Print the messages as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let root = super::repo_root(args.repo.as_deref())?;
    let git = GitRepo::open(&root)?;
    let tree = git.tree_at(&args.git_ref)?;
    let (_config, loaded) = Project::load_prompt(&tree, &args.prompt)
        .with_context(|| format!("loading prompt `{}` at `{}`", args.prompt, args.git_ref))?;
    let vars = parse_vars(&args.vars, &loaded.prompt)?;
    let messages = template::render_messages(&loaded.prompt.messages, &vars)
        .with_context(|| format!("rendering prompt `{}`", args.prompt))?;
    if args.json {
        let out = serde_json::json!({
            "prompt": args.prompt,
            "model": loaded.prompt.model,
            "version": { "commit": tree.commit().map(|c| c.to_string()), "blob": loaded.blob },
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

/// `name=value` pairs checked against the prompt's declared inputs.
pub(crate) fn parse_vars(
    pairs: &[String],
    prompt: &crate::spec::prompt::Prompt,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use crate::spec::prompt::InputType;
    let mut vars = serde_json::Map::new();
    for pair in pairs {
        let Some((name, raw)) = pair.split_once('=') else {
            bail!("--var `{pair}`: expected NAME=VALUE");
        };
        let Some(spec) = prompt.inputs.get(name) else {
            let known = prompt.inputs.keys().cloned().collect::<Vec<_>>().join(", ");
            bail!(
                "--var `{name}`: prompt `{}` declares no such input (inputs: {known})",
                prompt.id
            );
        };
        let value = match spec.kind {
            InputType::String => serde_json::Value::String(raw.to_string()),
            kind => {
                let v: serde_json::Value = serde_json::from_str(raw).with_context(|| {
                    format!("--var `{name}`: `{raw}` is not a valid {}", kind.as_str())
                })?;
                if !kind.accepts(&v) {
                    bail!("--var `{name}`: `{raw}` is not a valid {}", kind.as_str());
                }
                v
            }
        };
        vars.insert(name.to_string(), value);
    }
    for (name, spec) in &prompt.inputs {
        if spec.required && !vars.contains_key(name) {
            bail!(
                "missing --var {name}=... (required input of prompt `{}`)",
                prompt.id
            );
        }
    }
    Ok(vars)
}
