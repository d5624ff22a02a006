//! SVG plots, written by hand (no plotting dependency): reliability diagram,
//! risk-coverage curve, confusion heat map.

use crate::stats::Bin;
use std::fmt::Write;

const W: f64 = 420.0;
const H: f64 = 320.0;
const L: f64 = 56.0;
const B: f64 = 44.0;
const T: f64 = 28.0;
const R: f64 = 16.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn frame(title: &str, xlabel: &str, ylabel: &str, ymax: f64) -> String {
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="18" text-anchor="middle" font-size="13">{}</text>
"#,
        W / 2.0,
        esc(title)
    );
    let (pw, ph) = (W - L - R, H - T - B);
    let _ = writeln!(
        s,
        r##"<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let x = L + f * pw;
        let y = T + ph - f * ph;
        let _ = write!(
            s,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#444"/><text x="{x}" y="{}" text-anchor="middle">{:.1}</text>
<line x1="{}" y1="{y}" x2="{L}" y2="{y}" stroke="#444"/><text x="{}" y="{}" text-anchor="end">{:.2}</text>
"##,
            T + ph,
            T + ph + 4.0,
            T + ph + 16.0,
            f,
            L - 4.0,
            L - 6.0,
            y + 4.0,
            f * ymax
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>
"#,
        L + pw / 2.0,
        H - 8.0,
        esc(xlabel),
        T + ph / 2.0,
        T + ph / 2.0,
        esc(ylabel)
    );
    s
}

fn xy(fx: f64, fy: f64) -> (f64, f64) {
    let (pw, ph) = (W - L - R, H - T - B);
    (
        L + fx.clamp(0.0, 1.0) * pw,
        T + ph - fy.clamp(0.0, 1.0) * ph,
    )
}

/// Reliability diagram: accuracy per confidence bin (bars) against the diagonal.
pub fn reliability(bins: &[Bin], ece_before: f64, ece_after: Option<f64>) -> String {
    let title = match ece_after {
        Some(a) => format!("Reliability (ECE {ece_before:.3}; after temperature scaling {a:.3})"),
        None => format!("Reliability (ECE {ece_before:.3})"),
    };
    let mut s = frame(&title, "confidence", "accuracy", 1.0);
    let (x0, y0) = xy(0.0, 0.0);
    let (x1, y1) = xy(1.0, 1.0);
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4 3"/>"##
    );
    for b in bins.iter().filter(|b| b.count > 0) {
        let (bx, by) = xy(b.lo, b.accuracy);
        let (bx2, _) = xy(b.hi, 0.0);
        let _ = writeln!(
            s,
            r##"<rect x="{bx}" y="{by}" width="{}" height="{}" fill="#4c78a8" fill-opacity="0.8" stroke="white"><title>({:.2}, {:.2}]: {} rows, confidence {:.3}, accuracy {:.3}</title></rect>"##,
            bx2 - bx,
            y0 - by,
            b.lo,
            b.hi,
            b.count,
            b.confidence,
            b.accuracy
        );
        let (cx, cy) = xy((b.lo + b.hi) / 2.0, b.confidence);
        let _ = writeln!(
            s,
            r##"<circle cx="{cx}" cy="{cy}" r="2.5" fill="#e45756"/>"##
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Selective risk against coverage, with the chosen operating points marked.
pub fn risk_coverage(curve: &[(f64, f64)], aurc: f64, points: &[(f64, f64, String)]) -> String {
    let ymax = curve.iter().map(|p| p.1).fold(0.05f64, f64::max).min(1.0);
    let mut s = frame(
        &format!("Risk-coverage (AURC {aurc:.4})"),
        "coverage (share handled locally)",
        "error rate on handled",
        ymax,
    );
    let mut d = String::new();
    for (i, (c, r)) in curve.iter().enumerate() {
        let (x, y) = xy(*c, r / ymax);
        let _ = write!(d, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
    }
    let _ = writeln!(
        s,
        r##"<path d="{d}" fill="none" stroke="#4c78a8" stroke-width="2"/>"##
    );
    for (c, r, label) in points {
        let (x, y) = xy(*c, r / ymax);
        let _ = writeln!(
            s,
            r##"<circle cx="{x}" cy="{y}" r="4" fill="#e45756"/><text x="{}" y="{}" fill="#e45756">{}</text>"##,
            x + 6.0,
            y - 6.0,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Heat map of the confusion matrix restricted to `labels` (indices).
pub fn confusion(matrix: &[Vec<u64>], names: &[String], labels: &[usize]) -> String {
    let k = labels.len().max(1);
    let cell = (300.0 / k as f64).clamp(8.0, 40.0);
    let longest = labels
        .iter()
        .map(|&i| names[i].chars().count())
        .max()
        .unwrap_or(4) as f64;
    let left = longest * 6.2 + 12.0;
    let top = 40.0;
    let size = cell * k as f64;
    let (w, h) = (
        (left + size + 20.0).max(420.0),
        top + size + longest * 5.4 + 24.0,
    );
    let max = labels
        .iter()
        .flat_map(|&g| labels.iter().map(move |&p| (g, p)))
        .filter(|(g, p)| g != p)
        .map(|(g, p)| matrix[g][p])
        .max()
        .unwrap_or(1)
        .max(1);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="10">
<rect width="100%" height="100%" fill="white"/>
<text x="8" y="18" font-size="13">Top confusions (rows: gold, columns: predicted)</text>
"#
    );
    for (i, &g) in labels.iter().enumerate() {
        let y = top + i as f64 * cell;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 4.0,
            y + cell * 0.7,
            esc(&names[g])
        );
        let x = left + i as f64 * cell;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" transform="rotate(-60 {} {})">{}</text>"#,
            x + cell * 0.6,
            top + size + 10.0,
            x + cell * 0.6,
            top + size + 10.0,
            esc(&names[g])
        );
        for (j, &p) in labels.iter().enumerate() {
            let v = matrix[g][p];
            let (fill, opacity) = if g == p {
                ("#54a24b", if v > 0 { 0.35 } else { 0.0 })
            } else {
                ("#e45756", v as f64 / max as f64)
            };
            let _ = writeln!(
                s,
                r##"<rect x="{}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" fill-opacity="{opacity:.3}" stroke="#ddd"><title>{} -> {}: {v}</title></rect>"##,
                left + j as f64 * cell,
                esc(&names[g]),
                esc(&names[p])
            );
            if v > 0 && cell >= 16.0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="middle" font-size="9">{v}</text>"#,
                    left + (j as f64 + 0.5) * cell,
                    y + cell * 0.65
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Indices of the Pareto front: no other point has `x <=` and `y >=` with one strict.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
    });
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in idx {
        if points[i].1 > best {
            best = points[i].1;
            front.push(i);
        }
    }
    front
}

fn panel(
    s: &mut String,
    ox: f64,
    title: &str,
    xname: &str,
    yname: &str,
    pts: &[(String, f64, f64)],
) {
    let (pw, ph, l, t, b) = (350.0, 260.0, 70.0, 40.0, 40.0);
    let (x0, x1) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
        (a.0.min(p.1), a.1.max(p.1))
    });
    let (y0, y1) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
        (a.0.min(p.2), a.1.max(p.2))
    });
    let pad = |lo: f64, hi: f64| {
        let d = (hi - lo).abs().max(hi.abs() * 0.05).max(1e-9);
        (lo - d * 0.1, hi + d * 0.1)
    };
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    let px = |x: f64| ox + l + (x - x0) / (x1 - x0) * pw;
    let py = |y: f64| t + ph - (y - y0) / (y1 - y0) * ph;
    let _ = writeln!(
        s,
        r##"<text x="{}" y="24" text-anchor="middle" font-size="13">{}</text><rect x="{}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
        ox + l + pw / 2.0,
        esc(title),
        ox + l
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let (xv, yv) = (x0 + f * (x1 - x0), y0 + f * (y1 - y0));
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="end">{:.3}</text>"##,
            px(xv),
            t + ph + 14.0,
            short_num(xv),
            ox + l - 4.0,
            py(yv) + 4.0,
            yv
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        ox + l + pw / 2.0,
        t + ph + b - 8.0,
        esc(xname),
        ox + 12.0,
        t + ph / 2.0,
        ox + 12.0,
        t + ph / 2.0,
        esc(yname)
    );
    let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.1, p.2)).collect();
    let front = pareto_front(&xy);
    let path: Vec<String> = front
        .iter()
        .map(|&i| format!("{:.1},{:.1}", px(pts[i].1), py(pts[i].2)))
        .collect();
    if path.len() > 1 {
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#e45756" stroke-width="1.5"/>"##,
            path.join(" ")
        );
    }
    for (i, (label, x, y)) in pts.iter().enumerate() {
        let on = front.contains(&i);
        // Labels of points on the right half go to their left.
        let right = px(*x) > ox + l + pw * 0.6;
        let _ = writeln!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>{}: {} = {}, {} = {:.4}</title></circle><text x="{:.1}" y="{:.1}" font-size="9" fill="{}" text-anchor="{}">{}</text>"##,
            px(*x),
            py(*y),
            if on { "#e45756" } else { "#999" },
            esc(label),
            esc(xname),
            short_num(*x),
            esc(yname),
            y,
            if right { px(*x) - 6.0 } else { px(*x) + 6.0 },
            py(*y) - 5.0,
            if on { "#b22" } else { "#666" },
            if right { "end" } else { "start" },
            esc(label)
        );
    }
}

fn short_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// `metric` against model bytes and against latency (when known), Pareto fronts in red.
pub fn pareto(
    metric: &str,
    by_bytes: &[(String, f64, f64)],
    by_latency: &[(String, f64, f64)],
    latency_name: &str,
) -> String {
    let panels = 1 + usize::from(!by_latency.is_empty());
    let w = 440.0 * panels as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="340" viewBox="0 0 {w} 340" font-family="sans-serif" font-size="10">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    panel(
        &mut s,
        0.0,
        &format!("{metric} vs model size"),
        "model bytes",
        metric,
        by_bytes,
    );
    if !by_latency.is_empty() {
        panel(
            &mut s,
            440.0,
            &format!("{metric} vs latency"),
            latency_name,
            metric,
            by_latency,
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_keeps_the_undominated_points() {
        // (size, accuracy): b dominates a (smaller and better); d is the best but largest.
        let pts = [
            (10.0, 0.80),
            (5.0, 0.85),
            (20.0, 0.84),
            (40.0, 0.90),
            (5.0, 0.70),
        ];
        let mut f = pareto_front(&pts);
        f.sort_unstable();
        assert_eq!(f, vec![1, 3]);
    }
}
