//! What the demo prints: step headings, indented details, "look" hints
//! and a spinner while it waits. All of it on stdout (a spinner on a
//! terminal's stderr), each line as it happens.

use std::io::IsTerminal;
use std::time::Duration;

pub(super) fn say(text: &str) {
    // A closed stdout must not stop the demo half-way (children to stop).
    let _ = crate::cli::out(&format!("{text}\n"));
}

pub(super) fn heading(n: u32, title: &str) {
    heading_of(n, 7, title);
}

/// A step heading out of `total` steps.
pub(super) fn heading_of(n: u32, total: u32, title: &str) {
    say(&format!("\n[{n}/{total}] {title}"));
}

pub(super) fn detail(text: &str) {
    for line in text.lines() {
        say(&format!("      {line}"));
    }
}

pub(super) fn look(text: &str) {
    say(&format!("      look: {text}"));
}

/// A spinner on a terminal's stderr; hidden otherwise.
pub(super) fn spinner(message: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("      {spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
