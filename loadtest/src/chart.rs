//! Line charts as SVG text (plotters' SVG backend), for the HTML report. Text is
//! emitted as SVG `<text>` that the browser lays out, so no fonts are needed here.

use anyhow::anyhow;
use plotters::prelude::*;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 340;

/// Distinguishable on white, and in the same order in every chart so a kind of
/// figure keeps its colour.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// The shading of phases that are not measured.
const BAND: RGBColor = RGBColor(225, 225, 225);

#[derive(Debug)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Default)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub lines: Vec<Line>,
    /// Shaded x ranges (the unmeasured setup and warm-up phases).
    pub bands: Vec<(f64, f64)>,
    /// Names for x = 0, 1, 2, … (a categorical axis) instead of numbers.
    pub categories: &'a [&'a str],
}

impl Chart<'_> {
    /// Whether there is anything to draw.
    pub fn has_data(&self) -> bool {
        self.lines.iter().any(|line| !line.points.is_empty())
    }

    /// The chart as an `<svg>` element.
    pub fn render(&self) -> anyhow::Result<String> {
        let mut svg = String::new();
        self.draw(&mut svg)
            .map_err(|error| anyhow!("drawing {:?}: {error}", self.title))?;
        Ok(svg)
    }

    fn draw(&self, svg: &mut String) -> Result<(), Box<dyn std::error::Error + '_>> {
        let points = || self.lines.iter().flat_map(|line| line.points.iter());
        let (mut x_min, mut x_max) = if self.categories.is_empty() {
            // Time axes start at 0, so the setup and warm-up before the first point
            // show.
            let xs = points().map(|p| p.0);
            (
                xs.clone().fold(0.0, f64::min),
                xs.fold(f64::NEG_INFINITY, f64::max),
            )
        } else {
            (-0.5, self.categories.len() as f64 - 0.5)
        };
        if !x_min.is_finite() || !x_max.is_finite() || x_max <= x_min {
            x_min = if x_min.is_finite() { x_min } else { 0.0 };
            x_max = x_min + 1.0;
        }
        let y_peak = points().map(|p| p.1).fold(0.0, f64::max);
        let y_max = if y_peak > 0.0 { y_peak * 1.1 } else { 1.0 };

        let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)?;
        let categories = self.categories;
        let x_label = |x: &f64| {
            if categories.is_empty() {
                number(*x)
            } else {
                let index = x.round();
                if (x - index).abs() < 1e-6 && index >= 0.0 {
                    categories
                        .get(index as usize)
                        .map_or_else(String::new, |name| (*name).to_owned())
                } else {
                    String::new()
                }
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .x_label_formatter(&x_label)
            .y_label_formatter(&|y| number(*y))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(WHITE.mix(0.0));
        if !categories.is_empty() {
            mesh.x_labels(categories.len() * 2 + 1);
        }
        mesh.draw()?;
        chart.draw_series(self.bands.iter().map(|&(from, to)| {
            Rectangle::new(
                [(from.max(x_min), 0.0), (to.min(x_max), y_max)],
                BAND.filled(),
            )
        }))?;
        for (index, line) in self.lines.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(line.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// An axis label: at most two decimals, trailing zeros dropped (`2.4`, not
/// `2.4000000000000004`; `7000`, not `7000.0`).
fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(number(2.4000000000000004), "2.4");
        assert_eq!(number(7000.0), "7000");
        assert_eq!(number(0.126), "0.13");
        assert_eq!(number(-0.001), "0");
    }

    #[test]
    fn renders_an_svg_with_lines_and_labels() {
        let chart = Chart {
            title: "throughput",
            x_desc: "seconds",
            y_desc: "msgs/s",
            lines: vec![Line {
                label: "acked/s".into(),
                points: vec![(1.0, 10.0), (2.0, 30.0), (3.0, 20.0)],
            }],
            bands: vec![(0.0, 1.5)],
            ..Chart::default()
        };
        assert!(chart.has_data());
        let svg = chart.render().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("acked/s"));
        assert!(svg.contains("<polyline") || svg.contains("<path"));
    }

    #[test]
    fn a_categorical_axis_names_its_points() {
        let chart = Chart {
            title: "percentiles",
            categories: &["p50", "p99", "max"],
            lines: vec![Line {
                label: "ack".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0), (2.0, 9.0)],
            }],
            ..Chart::default()
        };
        let svg = chart.render().unwrap();
        assert!(svg.contains("\np99\n"), "{svg}");
    }

    #[test]
    fn an_empty_chart_has_no_data() {
        assert!(!Chart::default().has_data());
    }
}
