//! The page templates (compiled into the binary) and the filters they use.
//! Templates end in `.html`, so minijinja escapes every value unless a
//! template marks it `safe`; only the server's own SVG charts are.

use std::sync::LazyLock;

use minijinja::{Environment, Value};
use serde::Serialize;

use super::UiError;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("calls.html", include_str!("templates/calls.html")),
    ("call.html", include_str!("templates/call.html")),
    ("rollout.html", include_str!("templates/rollout.html")),
    ("message.html", include_str!("templates/message.html")),
    ("login.html", include_str!("templates/login.html")),
    ("review.html", include_str!("templates/review.html")),
    ("cost.html", include_str!("templates/cost.html")),
];

/// The pages of the navigation bar: key, label, address.
const NAV: &[(&str, &str, &str)] = &[
    ("overview", "Overview", "/ui"),
    ("calls", "Calls", "/ui/calls"),
    ("rollout", "Rollout", "/ui/rollout"),
    ("drift", "Drift", "/ui/drift"),
    ("cost", "Cost vs quality", "/ui/cost"),
    ("review", "Review", "/ui/review"),
];

static ENV: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    env.add_filter("num", |v: Option<f64>| fmt_opt(v, format_number));
    env.add_filter("pct", |v: Option<f64>| {
        fmt_opt(v, |x| format!("{:.2}%", x * 100.0))
    });
    env.add_filter("money", |v: f64| format!("{v:.6}"));
    env.add_filter("urlencode", |s: String| urlencode(&s));
    Ok(env)
});

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.filter(|x| x.is_finite()).map_or_else(|| "–".into(), f)
}

/// Percent-encodes `s` for a path or query (keeps `/`).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Figures as the pages show them: up to three decimals, trailing zeros cut.
pub fn format_number(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Renders `template` with `ctx` plus the navigation and the mode line.
pub fn render(
    template: &str,
    page: &str,
    title: &str,
    mode: &str,
    ctx: impl Serialize,
) -> Result<String, UiError> {
    let env = ENV
        .as_ref()
        .map_err(|e| UiError::Unavailable(format!("templates: {e}")))?;
    let nav: Vec<Value> = NAV
        .iter()
        .map(|&(key, label, href)| minijinja::context! { key, label, href })
        .collect();
    let base = minijinja::context! { page, title, mode, nav };
    let ctx = minijinja::context! { ..Value::from(minijinja::value::Serde(ctx)), ..base };
    Ok(env.get_template(template)?.render(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        assert!(ENV.is_ok(), "{:?}", ENV.as_ref().err());
    }

    #[test]
    fn logged_markup_renders_as_text() {
        let html = render(
            "message.html",
            "x",
            "t",
            "m",
            minijinja::context! { message => "<script>alert(1)</script><img src=x onerror=alert(2)>", kind => "error" },
        )
        .unwrap_or_default();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<img src=x"));
    }

    #[test]
    fn numbers_lose_trailing_zeros() {
        assert_eq!(format_number(12.5), "12.5");
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(0.12345), "0.123");
    }
}
