//! Optional redaction of e-mail addresses and phone numbers in logged text.
//!
//! JSON-text fields are parsed and only their string values are redacted, so
//! the field stays valid JSON (a number is never taken for a phone). Phone
//! candidates need 9 to 15 digits; dates and short numbers are kept.
//! Redaction is idempotent: the placeholders match neither pattern.

use std::sync::LazyLock;

use regex::Regex;

use super::row::RequestLogRow;
use crate::spec::config::Redaction;

pub const EMAIL_PLACEHOLDER: &str = "[email]";
pub const PHONE_PLACEHOLDER: &str = "[phone]";

#[allow(clippy::expect_used)] // constant patterns, exercised by the tests
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}\b")
        .expect("email regex")
});

#[allow(clippy::expect_used)] // constant pattern, exercised by the tests
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:\+|\(|\b)\d[\d ().\-]{6,}\d\b").expect("phone regex"));

/// Redacts the text fields of log rows according to `logging.redact`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redactor {
    emails: bool,
    phones: bool,
}

impl Redactor {
    pub fn new(cfg: Redaction) -> Redactor {
        Redactor {
            emails: cfg.emails,
            phones: cfg.phones,
        }
    }

    pub fn is_active(&self) -> bool {
        self.emails || self.phones
    }

    /// Redacts plain text.
    pub fn text(&self, s: &str) -> Option<String> {
        let mut out: Option<String> = None;
        if self.emails && EMAIL.is_match(s) {
            out = Some(EMAIL.replace_all(s, EMAIL_PLACEHOLDER).into_owned());
        }
        if self.phones {
            let cur = out.as_deref().unwrap_or(s);
            if PHONE.is_match(cur) {
                let replaced = PHONE.replace_all(cur, |c: &regex::Captures<'_>| {
                    let m = &c[0];
                    let digits = m.chars().filter(char::is_ascii_digit).count();
                    if (9..=15).contains(&digits) {
                        PHONE_PLACEHOLDER.to_string()
                    } else {
                        m.to_string()
                    }
                });
                if replaced != cur {
                    out = Some(replaced.into_owned());
                }
            }
        }
        out
    }

    /// Redacts the string values of JSON text; plain text if it is not JSON.
    pub fn json_text(&self, s: &str) -> Option<String> {
        match serde_json::from_str::<serde_json::Value>(s) {
            Ok(mut v) => {
                if self.value(&mut v) {
                    serde_json::to_string(&v).ok()
                } else {
                    None
                }
            }
            Err(_) => self.text(s),
        }
    }

    fn value(&self, v: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match v {
            Value::String(s) => match self.text(s) {
                Some(r) => {
                    *s = r;
                    true
                }
                None => false,
            },
            Value::Array(a) => a.iter_mut().fold(false, |acc, x| self.value(x) | acc),
            Value::Object(o) => o.values_mut().fold(false, |acc, x| self.value(x) | acc),
            _ => false,
        }
    }

    /// Redacts a row's user-controlled text in place: variables, messages,
    /// output and error.
    pub fn row(&self, row: &mut RequestLogRow) {
        if !self.is_active() {
            return;
        }
        if let Some(r) = self.json_text(&row.variables) {
            row.variables = r;
        }
        if let Some(r) = self.json_text(&row.messages) {
            row.messages = r;
        }
        if let Some(r) = self.text(&row.output) {
            row.output = r;
        }
        if let Some(r) = row.error.as_deref().and_then(|e| self.text(e)) {
            row.error = Some(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> Redactor {
        Redactor::new(Redaction {
            emails: true,
            phones: true,
        })
    }

    #[test]
    fn emails_and_phones_are_replaced_in_text() {
        let r = both();
        assert_eq!(
            r.text("mail jane.doe+x@example.co.uk or call +1 (555) 123-4567 now")
                .as_deref(),
            Some("mail [email] or call [phone] now")
        );
        assert_eq!(r.text("on 2024-01-15 order 12345").as_deref(), None);
        assert_eq!(r.text("[email] [phone]"), None, "idempotent");
    }

    #[test]
    fn json_stays_valid_and_numbers_are_kept() {
        let r = both();
        let out = r
            .json_text(r#"{"n": 123456789012, "who": "a@b.io", "list": ["555-123-4567"]}"#)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["n"], 123456789012u64);
        assert_eq!(v["who"], "[email]");
        assert_eq!(v["list"][0], "[phone]");
    }

    #[test]
    fn disabled_kinds_are_left_alone() {
        let r = Redactor::new(Redaction {
            emails: true,
            phones: false,
        });
        assert_eq!(r.text("call 555-123-4567"), None);
        let mut row = RequestLogRow::new("r", chrono::Utc::now());
        row.output = "x@y.org".into();
        r.row(&mut row);
        assert_eq!(row.output, "[email]");
    }
}
