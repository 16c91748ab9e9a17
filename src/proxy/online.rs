//! Online evaluation of served responses: the one place where a finished
//! call's log row is scored before it is written.
//!
//! [`evaluate`] runs on the completion task of every call (never on the
//! request path: the client already has its response) with the prompt that
//! served it. Today it leaves `online_pass` empty and `online_scores` `{}`;
//! issue 6 adds the `online: true` assertions of the prompt's eval suites
//! here, filling both fields.

use crate::logstore::RequestLogRow;

use super::state::PreparedPrompt;

/// Scores `row` (a finished call of `prompt`, `None` for a pass-through
/// model call) in place.
pub fn evaluate(_prompt: Option<&PreparedPrompt>, _row: &mut RequestLogRow) {}
