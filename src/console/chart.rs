//! Charts drawn on the server as SVG: a sparkline for the overview and a line chart for
//! a stream's page. Values are placed by their decimal as a float; the exact text is in
//! each point's tooltip and in the table beside the chart.

use maud::{Markup, html};

/// Where a value lies between `min` and `max` (0 at `min`), 0.5 when all are equal.
fn share(value: f64, min: f64, max: f64) -> f64 {
    if max > min {
        (value - min) / (max - min)
    } else {
        0.5
    }
}

fn bounds(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

/// A sparkline of `values` (oldest first), 100 × 24, or nothing for fewer than two.
pub fn sparkline(values: &[f64]) -> Markup {
    if values.len() < 2 {
        return html! {};
    }
    let (min, max) = bounds(values);
    let step = 100.0 / (values.len() - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                22.0 - 20.0 * share(*v, min, max)
            )
        })
        .collect();
    html! {
        svg.sparkline viewBox="0 0 100 24" preserveAspectRatio="none" role="img" aria-label="recent values" {
            polyline points=(points.join(" ")) {}
        }
    }
}

/// A line chart of `points` (period, exact value text, value as a float), oldest
/// first, with the lowest and highest values on the axis and each value in its
/// point's tooltip.
pub fn line_chart(points: &[(String, String, f64)], unit: &str) -> Markup {
    const W: f64 = 960.0;
    const H: f64 = 260.0;
    const LEFT: f64 = 64.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 28.0;
    if points.is_empty() {
        return html! { p.empty { "No data yet." } };
    }
    let values: Vec<f64> = points.iter().map(|p| p.2).collect();
    let (min, max) = bounds(&values);
    let span = (W - LEFT - 16.0) / (points.len().max(2) - 1) as f64;
    let at = |i: usize, v: f64| {
        (
            LEFT + i as f64 * span,
            TOP + (H - TOP - BOTTOM) * (1.0 - share(v, min, max)),
        )
    };
    let line: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (x, y) = at(i, *v);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let (first, last) = (&points[0].0, &points[points.len() - 1].0);
    let lowest = points
        .iter()
        .find(|p| p.2 == min)
        .map_or("", |p| p.1.as_str());
    let highest = points
        .iter()
        .find(|p| p.2 == max)
        .map_or("", |p| p.1.as_str());
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label={ "values from " (first) " to " (last) } {
                line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W - 16.0) y2=(H - BOTTOM) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) {}
                text.label.value x=(LEFT - 6.0) y=(TOP + 4.0) { (highest) }
                text.label.value x=(LEFT - 6.0) y=(H - BOTTOM) { (lowest) }
                polyline.line points=(line.join(" ")) {}
                @for (i, (period, text, value)) in points.iter().enumerate() {
                    @let (x, y) = at(i, *value);
                    circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" {
                        title { (period) ": " (text) (unit) }
                    }
                }
                text.label x=(LEFT) y=(H - 8.0) { (first) }
                text.label.end x=(W - 16.0) y=(H - 8.0) { (last) }
            }
            figcaption {
                "Lowest " strong { (lowest) (unit) } ", highest " strong { (highest) (unit) }
                " over " (points.len()) " periods."
            }
        }
    }
}
