//! Small SVG charts for self-contained reports: histograms, horizontal bar
//! charts and labelled scatter plots, as strings with no script, no external
//! font or stylesheet, so a file opens anywhere and embeds in any page.
//!
//! Every text that reaches the SVG goes through [`escape`]; numbers are
//! written with a fixed precision so output is deterministic. Charts that
//! are compared side by side take an explicit `y_max` so they share a scale.

use std::fmt::Write;

/// Escapes text for SVG/HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Size of a chart in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub width: f64,
    pub height: f64,
}

impl Default for Size {
    fn default() -> Self {
        Size {
            width: 360.0,
            height: 200.0,
        }
    }
}

const FONT: &str = "font-family=\"system-ui, sans-serif\" font-size=\"11\"";
const AXIS: &str = "#666";

/// A number for an axis label: compact, a few significant digits.
pub fn tick_label(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn percent(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn open(size: Size, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        w = size.width,
        h = size.height,
        t = escape(title)
    );
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"14\" text-anchor=\"middle\" {FONT} font-weight=\"600\">{}</text>",
        size.width / 2.0,
        escape(title)
    );
    s
}

/// A histogram: `shares[i]` is the share of observations between
/// `edges[i]` and `edges[i + 1]`; the y axis runs from 0 to `y_max`.
pub fn histogram(
    title: &str,
    edges: &[f64],
    shares: &[f64],
    y_max: f64,
    color: &str,
    size: Size,
) -> String {
    let mut s = open(size, title);
    let (left, right, top, bottom) = (40.0, 10.0, 24.0, 26.0);
    let (pw, ph) = (size.width - left - right, size.height - top - bottom);
    let bins = shares.len().min(edges.len().saturating_sub(1));
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    if bins > 0 {
        let bw = pw / bins as f64;
        for (i, share) in shares.iter().take(bins).enumerate() {
            let h = (share / y_max).clamp(0.0, 1.0) * ph;
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} – {}: {}</title></rect>",
                left + bw * i as f64 + 0.5,
                top + ph - h,
                (bw - 1.0).max(0.5),
                h,
                escape(color),
                escape(&tick_label(edges[i])),
                escape(&tick_label(edges[i + 1])),
                percent(*share)
            );
        }
        for (frac, anchor, x) in [
            (0.0, "start", edges[0]),
            (0.5, "middle", (edges[0] + edges[bins]) / 2.0),
            (1.0, "end", edges[bins]),
        ] {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" {FONT} fill=\"{AXIS}\">{}</text>",
                left + pw * frac,
                size.height - 8.0,
                escape(&tick_label(x))
            );
        }
    }
    axes(&mut s, left, top, pw, ph, y_max, size);
    s.push_str("</svg>");
    s
}

fn axes(s: &mut String, left: f64, top: f64, pw: f64, ph: f64, y_max: f64, _size: Size) {
    let _ = write!(
        s,
        "<line x1=\"{left:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{AXIS}\"/><line x1=\"{left:.1}\" y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{:.1}\" stroke=\"{AXIS}\"/>",
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT} fill=\"{AXIS}\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT} fill=\"{AXIS}\">0</text>",
        left - 4.0,
        top + 9.0,
        percent(y_max),
        left - 4.0,
        top + ph
    );
}

/// Horizontal bars: one per label, length `shares[i] / x_max`.
pub fn bar_chart(
    title: &str,
    labels: &[String],
    shares: &[f64],
    x_max: f64,
    color: &str,
    size: Size,
) -> String {
    let n = labels.len().min(shares.len());
    let row = 18.0;
    let size = Size {
        width: size.width,
        height: size.height.max(30.0 + row * n as f64),
    };
    let mut s = open(size, title);
    let (left, right, top) = (110.0, 44.0, 24.0);
    let pw = size.width - left - right;
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    for i in 0..n {
        let y = top + row * i as f64;
        let w = (shares[i] / x_max).clamp(0.0, 1.0) * pw;
        let mut label: String = labels[i].chars().take(18).collect();
        if labels[i].chars().count() > 18 {
            label.push('…');
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text><rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" {FONT} fill=\"{AXIS}\">{}</text>",
            left - 6.0,
            y + 12.0,
            escape(&label),
            y + 2.0,
            row - 4.0,
            escape(color),
            escape(&labels[i]),
            percent(shares[i]),
            left + w + 4.0,
            y + 12.0,
            percent(shares[i])
        );
    }
    s.push_str("</svg>");
    s
}

/// One point of a scatter plot, with an optional vertical interval bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Interval of `y` drawn as a bar (e.g. a pass rate's confidence interval).
    pub y_interval: Option<(f64, f64)>,
    pub label: String,
    pub color: String,
}

/// How the x axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    #[default]
    Linear,
    /// Base-10 logarithm; values <= 0 sit at the left edge (a tenth of the
    /// smallest positive value).
    Log,
}

/// A scatter plot with labelled points, interval bars and, optionally, a
/// polyline through `line` (e.g. a Pareto frontier), axes scaled to the data.
pub fn scatter(
    title: &str,
    (x_label, x_scale): (&str, Scale),
    y_label: &str,
    points: &[Point],
    line: Option<&[(f64, f64)]>,
    size: Size,
) -> String {
    let mut s = open(size, title);
    let (left, right, top, bottom) = (48.0, 16.0, 24.0, 34.0);
    let (pw, ph) = (size.width - left - right, size.height - top - bottom);
    let floor = points
        .iter()
        .map(|p| p.x)
        .chain(line.into_iter().flatten().map(|p| p.0))
        .filter(|x| *x > 0.0 && x.is_finite())
        .fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() {
        floor / 10.0
    } else {
        1e-6
    };
    // Axis coordinates: log10 of the value on a log scale.
    let tx = move |x: f64| match x_scale {
        Scale::Linear => x,
        Scale::Log => x.max(floor).log10(),
    };
    let xs = points
        .iter()
        .map(|p| tx(p.x))
        .chain(line.into_iter().flatten().map(|p| tx(p.0)));
    let ys = points
        .iter()
        .flat_map(|p| {
            [
                Some(p.y),
                p.y_interval.map(|i| i.0),
                p.y_interval.map(|i| i.1),
            ]
        })
        .flatten()
        .chain(line.into_iter().flatten().map(|p| p.1));
    let range = |it: &mut dyn Iterator<Item = f64>| {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in it.filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        if hi <= lo {
            return (lo - 0.5, hi + 0.5);
        }
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    };
    let (x0, x1) = range(&mut { xs });
    let (y0, y1) = range(&mut { ys });
    let px = |x: f64| left + (tx(x) - x0) / (x1 - x0) * pw;
    let untx = |v: f64| match x_scale {
        Scale::Linear => v,
        Scale::Log => 10f64.powf(v),
    };
    let py = |y: f64| top + ph - (y - y0) / (y1 - y0) * ph;
    let _ = write!(
        s,
        "<line x1=\"{left:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{AXIS}\"/><line x1=\"{left:.1}\" y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{:.1}\" stroke=\"{AXIS}\"/>",
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    for (v, anchor, x) in [(x0, "start", left), (x1, "end", left + pw)] {
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" {FONT} fill=\"{AXIS}\">{}</text>",
            top + ph + 12.0,
            escape(&tick_label(untx(v)))
        );
    }
    for (v, y) in [(y0, top + ph), (y1, top + 9.0)] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\" {FONT} fill=\"{AXIS}\">{}</text>",
            left - 4.0,
            escape(&tick_label(v))
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text><text x=\"12\" y=\"{:.1}\" text-anchor=\"middle\" {FONT} transform=\"rotate(-90 12 {:.1})\">{}</text>",
        left + pw / 2.0,
        size.height - 4.0,
        escape(x_label),
        top + ph / 2.0,
        top + ph / 2.0,
        escape(y_label)
    );
    if let Some(line) = line
        && line.len() > 1
    {
        let pts: Vec<String> = line
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{AXIS}\" stroke-dasharray=\"4 3\"/>",
            pts.join(" ")
        );
    }
    for p in points.iter().filter(|p| p.x.is_finite() && p.y.is_finite()) {
        if let Some((lo, hi)) = p
            .y_interval
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
        {
            let _ = write!(
                s,
                "<line class=\"interval\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1.5\"/>",
                py(lo),
                py(hi),
                escape(&p.color),
                x = px(p.x),
            );
        }
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>{}: {}, {}</title></circle><text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
            px(p.x),
            py(p.y),
            escape(&p.color),
            escape(&p.label),
            escape(&tick_label(p.x)),
            escape(&tick_label(p.y)),
            px(p.x) + 6.0,
            py(p.y) - 5.0,
            escape(&p.label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        let svg = bar_chart(
            "<script>",
            &["</svg><b>".to_string()],
            &[0.5],
            1.0,
            "red\"",
            Size::default(),
        );
        assert!(!svg.contains("<script>"));
        assert!(!svg.contains("</svg><b>"));
        assert!(svg.contains("&lt;/svg&gt;&lt;b&gt;"));
        assert!(!svg.contains("red\""));
    }

    #[test]
    fn histogram_bars_scale_to_the_shared_maximum() {
        let svg = histogram(
            "ref",
            &[0.0, 1.0, 2.0],
            &[0.5, 0.25],
            0.5,
            "#36c",
            Size {
                width: 200.0,
                height: 150.0,
            },
        );
        assert_eq!(svg.matches("<rect").count(), 2);
        // Plot height 150 - 24 - 26 = 100: the first bar is full, the second half.
        assert!(svg.contains("height=\"100.0\""), "{svg}");
        assert!(svg.contains("height=\"50.0\""));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn scatter_labels_points_and_draws_the_line() {
        let pts = vec![
            Point {
                x: 0.01,
                y: 0.8,
                y_interval: None,
                label: "gpt & co".into(),
                color: "#c33".into(),
            },
            Point {
                x: 0.02,
                y: 0.9,
                y_interval: None,
                label: "b".into(),
                color: "#33c".into(),
            },
        ];
        let svg = scatter(
            "cost vs quality",
            ("cost", Scale::Linear),
            "pass rate",
            &pts,
            Some(&[(0.01, 0.8), (0.02, 0.9)]),
            Size::default(),
        );
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("gpt &amp; co"));
        assert!(svg.contains("<polyline"));
        assert!(!svg.contains("class=\"interval\""));
    }

    #[test]
    fn log_scale_spaces_decades_evenly_and_bars_span_the_interval() {
        let pt = |x: f64, label: &str| Point {
            x,
            y: 0.5,
            y_interval: Some((0.25, 0.75)),
            label: label.into(),
            color: "#000".into(),
        };
        let pts = [pt(0.01, "a"), pt(0.1, "b"), pt(1.0, "c")];
        let svg = scatter(
            "log",
            ("cost", Scale::Log),
            "q",
            &pts,
            None,
            Size::default(),
        );
        let cx: Vec<f64> = regex::Regex::new(r#"cx="([0-9.]+)""#)
            .unwrap()
            .captures_iter(&svg)
            .map(|c| c[1].parse().unwrap())
            .collect();
        assert_eq!(cx.len(), 3);
        assert!(((cx[1] - cx[0]) - (cx[2] - cx[1])).abs() < 0.2, "{cx:?}");
        assert_eq!(svg.matches("class=\"interval\"").count(), 3);
    }

    proptest! {
        #[test]
        fn escaped_text_has_no_markup(s in "\\PC{0,60}") {
            let e = escape(&s);
            prop_assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
        }

        #[test]
        fn charts_are_well_formed_for_any_shares(shares in proptest::collection::vec(0.0f64..1.0, 0..30)) {
            let edges: Vec<f64> = (0..=shares.len()).map(|i| i as f64).collect();
            let h = histogram("h", &edges, &shares, 0.5, "#000", Size::default());
            prop_assert_eq!(h.matches("<svg").count(), 1);
            prop_assert_eq!(h.matches("<rect").count(), shares.len());
            let labels: Vec<String> = (0..shares.len()).map(|i| format!("c{i}")).collect();
            let b = bar_chart("b", &labels, &shares, 1.0, "#000", Size::default());
            prop_assert_eq!(b.matches("<rect").count(), shares.len());
        }
    }
}

/// One line of a [`line_chart`]: its name, colour and `(x, y)` points in
/// x order; a `None` y breaks the line (no data in that interval).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub color: String,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A time series chart: one polyline per series over the x range
/// `x_range` (the data's own range when None; `x_labels` are drawn at the
/// two ends), y from 0 to the largest value, a legend on top. Each point
/// carries a `<title>` with its value, so the figure under the pointer can
/// be read without a script.
pub fn line_chart(
    title: &str,
    x_range: Option<(f64, f64)>,
    x_labels: (&str, &str),
    series: &[Series],
    size: Size,
) -> String {
    let mut s = open(size, title);
    let (left, right, top, bottom) = (48.0, 12.0, 38.0, 22.0);
    let (pw, ph) = (size.width - left - right, size.height - top - bottom);
    let finite = || {
        series
            .iter()
            .flat_map(|l| l.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_some_and(f64::is_finite))
    };
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (0.0f64, 0.0f64);
    for (x, y) in finite() {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(y.unwrap_or(0.0));
        y1 = y1.max(y.unwrap_or(0.0));
    }
    if let Some(range) = x_range {
        (x0, x1) = range;
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| top + ph - ((y - y0) / (y1 - y0)).clamp(0.0, 1.0) * ph;
    let _ = write!(
        s,
        "<line x1=\"{left:.1}\" y1=\"{b:.1}\" x2=\"{r:.1}\" y2=\"{b:.1}\" stroke=\"{AXIS}\"/><line x1=\"{left:.1}\" y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{b:.1}\" stroke=\"{AXIS}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT} fill=\"{AXIS}\">{}</text><text x=\"{:.1}\" y=\"{b:.1}\" text-anchor=\"end\" {FONT} fill=\"{AXIS}\">{}</text><text x=\"{left:.1}\" y=\"{:.1}\" {FONT} fill=\"{AXIS}\">{}</text><text x=\"{r:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT} fill=\"{AXIS}\">{}</text>",
        left - 4.0,
        top + 9.0,
        escape(&tick_label(y1)),
        left - 4.0,
        escape(&tick_label(y0)),
        top + ph + 16.0,
        escape(x_labels.0),
        top + ph + 16.0,
        escape(x_labels.1),
        b = top + ph,
        r = left + pw,
    );
    let mut legend_x = left;
    for line in series {
        let _ = write!(
            s,
            "<rect x=\"{legend_x:.1}\" y=\"22\" width=\"10\" height=\"3\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"27\" {FONT}>{}</text>",
            legend_x + 13.0,
            escape(&line.name),
            c = escape(&line.color),
        );
        legend_x += 20.0 + 6.5 * line.name.chars().count() as f64;
        let mut path = String::new();
        let mut pen_down = false;
        for (x, y) in &line.points {
            match y {
                Some(y) if y.is_finite() && x.is_finite() => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        px(*x),
                        py(*y)
                    );
                    pen_down = true;
                }
                _ => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(
                s,
                "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>",
                path.trim_end(),
                escape(&line.color)
            );
        }
        for (x, y) in &line.points {
            if let Some(y) = y.filter(|y| y.is_finite()) {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{}\"><title>{}: {}</title></circle>",
                    px(*x),
                    py(y),
                    escape(&line.color),
                    escape(&line.name),
                    escape(&tick_label(y))
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// Intervals around estimates, one row per label (e.g. a canary check's
/// confidence interval against its margin): a dot at `estimate`, a bar
/// from `low` to `high`, and a dashed vertical line at `mark`.
pub fn interval_chart(
    title: &str,
    rows: &[(String, f64, Option<f64>, Option<f64>)],
    mark: f64,
    size: Size,
) -> String {
    let row = 22.0;
    let size = Size {
        width: size.width,
        height: size.height.max(34.0 + row * rows.len() as f64),
    };
    let mut s = open(size, title);
    let (left, right, top) = (180.0, 16.0, 26.0);
    let pw = size.width - left - right;
    let (mut lo, mut hi) = (mark, mark);
    for (_, e, l, h) in rows {
        for v in [Some(*e), *l, *h]
            .into_iter()
            .flatten()
            .filter(|v| v.is_finite())
        {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if hi <= lo {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (lo - pad, hi + pad);
    let px = |x: f64| left + (x - lo) / (hi - lo) * pw;
    let bottom = top + row * rows.len() as f64;
    let _ = write!(
        s,
        "<line x1=\"{m:.1}\" y1=\"{top:.1}\" x2=\"{m:.1}\" y2=\"{bottom:.1}\" stroke=\"#b00\" stroke-dasharray=\"3 3\"/><text x=\"{m:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT} fill=\"#b00\">{}</text>",
        bottom + 12.0,
        escape(&tick_label(mark)),
        m = px(mark)
    );
    for (i, (label, estimate, low, high)) in rows.iter().enumerate() {
        let y = top + row * i as f64 + row / 2.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text>",
            left - 6.0,
            y + 4.0,
            escape(label)
        );
        if let (Some(l), Some(h)) = (low, high)
            && l.is_finite()
            && h.is_finite()
        {
            let _ = write!(
                s,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#1f77b4\" stroke-width=\"3\"/>",
                px(*l),
                px(*h)
            );
        }
        if estimate.is_finite() {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"#333\"><title>{}: {}</title></circle>",
                px(*estimate),
                escape(label),
                escape(&tick_label(*estimate))
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod line_chart_tests {
    use super::*;

    fn series(points: Vec<(f64, Option<f64>)>) -> Series {
        Series {
            name: "a <b>".into(),
            color: "#123456".into(),
            points,
        }
    }

    #[test]
    fn a_gap_breaks_the_line_and_names_are_escaped() {
        let svg = line_chart(
            "t",
            Some((0.0, 4.0)),
            ("from", "to"),
            &[series(vec![
                (0.0, Some(1.0)),
                (1.0, Some(2.0)),
                (2.0, None),
                (3.0, Some(1.0)),
            ])],
            Size::default(),
        );
        // Two pen-downs: one before the gap, one after.
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("a &lt;b&gt;") && !svg.contains("a <b>"));
    }

    #[test]
    fn the_given_x_range_places_a_lone_point_in_time() {
        let svg = line_chart(
            "t",
            Some((0.0, 10.0)),
            ("", ""),
            &[series(vec![(10.0, Some(1.0))])],
            Size::default(),
        );
        // At the right end of the plot (width 360 - right margin 12).
        assert!(svg.contains("cx=\"348.0\""), "{svg}");
    }
}
