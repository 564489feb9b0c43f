//! Charts drawn on the server as SVG: a sparkline for the overview and a line or bar
//! chart for a stream's page. Values are placed by their decimal as a float; the exact
//! text is in each point's tooltip and in the table beside the chart.

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

/// How a stream's page draws its values.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Line,
    /// Bars from zero (or from the lowest value's side of zero).
    Bars,
}

impl Kind {
    /// `bars` or anything else (a line).
    pub fn parse(text: &str) -> Self {
        if text == "bars" {
            Self::Bars
        } else {
            Self::Line
        }
    }
}

/// A chart of `points` (period, exact value text, value as a float), oldest first,
/// with the lowest and highest values on the axis and each value in its point's (or
/// bar's) tooltip.
pub fn chart(points: &[(String, String, f64)], unit: &str, kind: Kind) -> Markup {
    const W: f64 = 960.0;
    const H: f64 = 260.0;
    const LEFT: f64 = 64.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 28.0;
    if points.is_empty() {
        return html! { p.empty { "No data yet." } };
    }
    let values: Vec<f64> = points.iter().map(|p| p.2).collect();
    let (lowest_value, highest_value) = bounds(&values);
    // Bars stand on zero: the scale takes it in.
    let (min, max) = match kind {
        Kind::Line => (lowest_value, highest_value),
        Kind::Bars => (lowest_value.min(0.0), highest_value.max(0.0)),
    };
    let slots = match kind {
        Kind::Line => points.len().max(2) - 1,
        Kind::Bars => points.len(),
    };
    let span = (W - LEFT - 16.0) / slots as f64;
    let y_of = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - share(v, min, max));
    let at = |i: usize, v: f64| (LEFT + i as f64 * span, y_of(v));
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
        .find(|p| p.2 == lowest_value)
        .map_or("", |p| p.1.as_str());
    let highest = points
        .iter()
        .find(|p| p.2 == highest_value)
        .map_or("", |p| p.1.as_str());
    let zero = y_of(0.0);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label={ "values from " (first) " to " (last) } {
                line.axis x1=(LEFT) y1=(H - BOTTOM) x2=(W - 16.0) y2=(H - BOTTOM) {}
                line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) {}
                text.label.value x=(LEFT - 6.0) y=(TOP + 4.0) { (highest) }
                text.label.value x=(LEFT - 6.0) y=(H - BOTTOM) { (lowest) }
                @match kind {
                    Kind::Line => {
                        polyline.line points=(line.join(" ")) {}
                        @for (i, (period, text, value)) in points.iter().enumerate() {
                            @let (x, y) = at(i, *value);
                            circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" {
                                title { (period) ": " (text) (unit) }
                            }
                        }
                    }
                    Kind::Bars => {
                        @for (i, (period, text, value)) in points.iter().enumerate() {
                            @let (x, y) = at(i, *value);
                            @let (top, height) = if y < zero { (y, zero - y) } else { (zero, y - zero) };
                            rect.bar x=(format!("{:.1}", x + span * 0.15)) y=(format!("{top:.1}"))
                                width=(format!("{:.1}", span * 0.7)) height=(format!("{:.1}", height.max(1.0))) {
                                title { (period) ": " (text) (unit) }
                            }
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[&str]) -> Vec<(String, String, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    format!("2026-11-{:02}", i + 1),
                    (*v).to_owned(),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn bars_stand_on_zero_and_each_names_its_exact_value() {
        let svg = chart(&points(&["12.50", "-3", "7"]), " EUR", Kind::Bars).into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("2026-11-01: 12.50 EUR") && svg.contains("2026-11-02: -3 EUR"));
        assert!(!svg.contains("<polyline"));
        let line = chart(&points(&["12.50", "-3", "7"]), " EUR", Kind::Line).into_string();
        assert_eq!(line.matches("<circle").count(), 3);
        assert!(
            line.contains("Lowest <strong>-3 EUR</strong>, highest <strong>12.50 EUR</strong>")
        );
    }
}
