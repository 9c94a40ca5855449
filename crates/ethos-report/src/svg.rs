//! Figure primitives as hand-written SVG strings: horizontal (grouped) bars with CIs, a forest plot, a heatmap
//! and an interval plot, plus escaping, linear scales and "nice" axis ticks.
//!
//! Every figure is [`WIDTH`] pixels wide (the height follows the number of rows) so the page renders the same
//! everywhere, uses only system sans-serif fonts, and escapes every label. Long labels are shortened with an
//! ellipsis and keep their full text in a `<title>` tooltip. Each figure's root is `<svg class="chart">`.

use std::fmt::Write as _;

/// Width of every figure, in pixels.
pub const WIDTH: f64 = 760.0;

/// Colour-blind-safe series colours (Okabe-Ito), in order of use.
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C8C8C", "#000000"];

const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
const AXIS_COLOR: &str = "#444";
const GRID_COLOR: &str = "#e3e3e3";
/// Average advance of a character of the 12 px sans-serif font; used to size label margins.
const CHAR_WIDTH: f64 = 7.2;

/// Escapes text for HTML and SVG content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Shortens `text` to at most `max_chars` characters, ending with an ellipsis when cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Estimated width of `text` in the 12 px font.
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

/// A linear map from a data interval to a pixel interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    domain: (f64, f64),
    range: (f64, f64),
}

impl Scale {
    /// Maps `domain` onto `range`; an empty domain is widened so the map stays finite.
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Self {
        let (low, high) = domain;
        let domain = if high > low { (low, high) } else { (low - 0.5, low + 0.5) };
        Scale { domain, range }
    }

    /// The pixel position of `value`.
    pub fn map(&self, value: f64) -> f64 {
        let (d0, d1) = self.domain;
        let (r0, r1) = self.range;
        r0 + (value - d0) / (d1 - d0) * (r1 - r0)
    }
}

/// About `target` evenly spaced round tick values (steps of 1, 2 or 5 times a power of ten) covering
/// `[low, high]`: the first tick is at or below `low`, the last at or above `high`.
pub fn nice_ticks(low: f64, high: f64, target: usize) -> Vec<f64> {
    let (low, high) = if low.is_finite() && high.is_finite() { (low.min(high), low.max(high)) } else { (0.0, 1.0) };
    let (low, high) = if high - low < 1e-12 { (low - 0.5, high + 0.5) } else { (low, high) };
    let step = nice_step((high - low) / target.max(1) as f64);
    // The tolerance keeps a bound that is a multiple of the step up to rounding from adding an extra tick.
    let first = (low / step + 1e-9).floor();
    let last = (high / step - 1e-9).ceil();
    // Multiplying integers by the step (not accumulating) keeps ticks like 0.3 from drifting to 0.30000000000000004
    // by more than the formatter rounds away.
    (first as i64..=last as i64).map(|index| index as f64 * step).collect()
}

fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Formats a tick value with as many decimals as its step needs.
pub fn format_tick(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    let text = format!("{value:.decimals$}");
    // "-0.0" reads as a different number from "0.0".
    if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        text.trim_start_matches('-').to_string()
    } else {
        text
    }
}

/// A number for a label: `decimals` decimals, with an explicit sign when `signed`.
pub fn format_number(value: f64, decimals: usize, signed: bool) -> String {
    if signed {
        format!("{value:+.decimals$}")
    } else {
        format!("{value:.decimals$}")
    }
}

/// One bar: a value and an optional confidence interval, with a tooltip.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Height of the bar.
    pub value: f64,
    /// Confidence interval drawn as a whisker.
    pub ci: Option<(f64, f64)>,
    /// Extra tooltip text (for example `n = 42`).
    pub note: String,
}

/// A legend entry: name and colour.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// CSS colour of the series.
    pub color: String,
}

impl Series {
    /// A series with the palette colour of position `index`.
    pub fn nth(name: impl Into<String>, index: usize) -> Self {
        Series { name: name.into(), color: PALETTE[index % PALETTE.len()].to_string() }
    }
}

/// Horizontal grouped bars: one group per category (rows), one bar per series inside a group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedBars {
    /// Accessible name of the figure.
    pub title: String,
    /// Row labels.
    pub categories: Vec<String>,
    /// The series (a legend is drawn when there are several).
    pub series: Vec<Series>,
    /// `values[category][series]`; `None` leaves a gap.
    pub values: Vec<Vec<Option<Bar>>>,
    /// Label of the value axis.
    pub axis_label: String,
    /// Range the value axis covers at least (for example 0..1 for scores); it always includes 0 and grows to
    /// fit the data.
    pub min_domain: Option<(f64, f64)>,
    /// Decimals of the value printed next to each bar.
    pub decimals: usize,
}

/// A single-series horizontal bar chart.
pub fn bar_chart(title: &str, labels: &[String], bars: Vec<Option<Bar>>, axis_label: &str) -> String {
    grouped_bars(&GroupedBars {
        title: title.to_string(),
        categories: labels.to_vec(),
        series: vec![Series::nth("value", 0)],
        values: bars.into_iter().map(|bar| vec![bar]).collect(),
        axis_label: axis_label.to_string(),
        min_domain: None,
        decimals: 3,
    })
}

/// Draws horizontal grouped bars with CI whiskers, value labels, gridlines, an axis and (for several series) a
/// legend. Each bar is a `<rect class="bar">`.
pub fn grouped_bars(chart: &GroupedBars) -> String {
    let n_series = chart.series.len().max(1);
    let bar_height = if n_series <= 2 {
        16.0
    } else if n_series <= 4 {
        14.0
    } else {
        12.0
    };
    let group_gap = 12.0;
    let group_height = n_series as f64 * bar_height + group_gap;
    let (left, label_chars) = label_margin(&chart.categories);
    let right = WIDTH - 70.0;
    let legend = legend(&chart.series, left, 10.0, n_series > 1);
    let top = legend.height + 12.0;
    let plot_height = (chart.categories.len() as f64 * group_height).max(group_height);
    let height = top + plot_height + 48.0;

    // The value axis always shows 0 and `min_domain`, and grows to fit every bar and whisker (rubric item
    // scores can be negative), so nothing is drawn outside the axis.
    let (mut low, mut high) = chart.min_domain.unwrap_or((0.0, 0.0));
    low = low.min(0.0);
    high = high.max(0.0);
    for bar in chart.values.iter().flatten().flatten() {
        let (ci_low, ci_high) = bar.ci.unwrap_or((bar.value, bar.value));
        low = low.min(bar.value).min(ci_low);
        high = high.max(bar.value).max(ci_high);
    }
    if high - low < 1e-12 {
        high = low + 1.0;
    }
    let ticks = nice_ticks(low, high, 6);
    let step = tick_step(&ticks);
    let domain = (ticks.first().copied().unwrap_or(low), ticks.last().copied().unwrap_or(high));
    let x = Scale::new(domain, (left, right));
    let plot_bottom = top + plot_height;

    let mut svg = open_svg(&chart.title, height);
    svg.push_str(&legend.svg);
    draw_x_axis(&mut svg, &x, &ticks, step, top, plot_bottom, &chart.axis_label);
    let zero = x.map(0.0f64.clamp(domain.0, domain.1));
    for (category_idx, category) in chart.categories.iter().enumerate() {
        let group_top = top + category_idx as f64 * group_height + group_gap / 2.0;
        let label_y = group_top + n_series as f64 * bar_height / 2.0 + 4.0;
        row_label(&mut svg, category, left - 8.0, label_y, label_chars);
        let Some(row) = chart.values.get(category_idx) else { continue };
        for (series_idx, bar) in row.iter().enumerate() {
            let Some(bar) = bar else { continue };
            let color = chart.series.get(series_idx).map_or(PALETTE[0], |series| series.color.as_str());
            let series_name = chart.series.get(series_idx).map_or("", |series| series.name.as_str());
            let y = group_top + series_idx as f64 * bar_height;
            let end = x.map(bar.value);
            let (bar_x, bar_width) = if end >= zero { (zero, end - zero) } else { (end, zero - end) };
            let mut tooltip =
                format!("{category} · {series_name}: {}", format_number(bar.value, chart.decimals, false));
            if let Some((ci_low, ci_high)) = bar.ci {
                let _ = write!(
                    tooltip,
                    " [{}, {}]",
                    format_number(ci_low, chart.decimals, false),
                    format_number(ci_high, chart.decimals, false)
                );
            }
            if !bar.note.is_empty() {
                let _ = write!(tooltip, " ({})", bar.note);
            }
            let _ = write!(
                svg,
                r#"<rect class="bar" x="{bar_x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}</title></rect>"#,
                bar_width.max(0.5),
                bar_height - 2.0,
                escape(&tooltip)
            );
            let mut text_x = end.max(zero);
            if let Some((ci_low, ci_high)) = bar.ci {
                let (whisker_low, whisker_high) = (x.map(ci_low), x.map(ci_high));
                let middle = y + (bar_height - 2.0) / 2.0;
                let _ = write!(
                    svg,
                    r#"<path d="M{whisker_low:.1},{middle:.1}H{whisker_high:.1}M{whisker_low:.1},{:.1}V{:.1}M{whisker_high:.1},{:.1}V{:.1}" stroke="{AXIS_COLOR}" stroke-width="1.2" fill="none"/>"#,
                    middle - 3.0,
                    middle + 3.0,
                    middle - 3.0,
                    middle + 3.0
                );
                text_x = text_x.max(whisker_high);
            }
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{}</text>"##,
                text_x + 4.0,
                y + bar_height - 4.0,
                escape(&format_number(bar.value, chart.decimals, false))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// One row of a forest plot: an estimate with its interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestRow {
    /// Row label (a benchmark).
    pub label: String,
    /// Index into [`ForestPlot::series`] (the compared policy).
    pub series: usize,
    /// The estimate (a mean difference).
    pub estimate: f64,
    /// Its confidence interval.
    pub ci: Option<(f64, f64)>,
    /// Drawn filled when significant, hollow otherwise.
    pub significant: bool,
    /// Text printed right of the plot (for example the q-value).
    pub annotation: String,
}

/// A forest plot of differences against zero.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestPlot {
    /// Accessible name of the figure.
    pub title: String,
    /// The rows, top to bottom.
    pub rows: Vec<ForestRow>,
    /// Series (compared policies), with a legend when several.
    pub series: Vec<Series>,
    /// Label of the value axis.
    pub axis_label: String,
    /// What a filled marker means (for the legend).
    pub significant_label: String,
}

/// Draws a forest plot: per row a CI line and a marker (a filled circle when significant, hollow otherwise),
/// a dashed line at zero and the annotation on the right. Each marker is a `<circle class="estimate">`.
pub fn forest_plot(plot: &ForestPlot) -> String {
    let row_height = 22.0;
    let labels: Vec<String> = plot.rows.iter().map(|row| row.label.clone()).collect();
    let (left, label_chars) = label_margin(&labels);
    let annotation_width = plot.rows.iter().map(|row| text_width(&row.annotation) * 0.85).fold(0.0, f64::max);
    let right = WIDTH - annotation_width.clamp(60.0, 240.0) - 16.0;
    let mut entries = if plot.series.len() > 1 { plot.series.clone() } else { Vec::new() };
    entries.push(Series { name: plot.significant_label.clone(), color: "marker:filled".into() });
    entries.push(Series { name: "not significant".into(), color: "marker:hollow".into() });
    let legend = legend(&entries, left, 10.0, true);
    let top = legend.height + 12.0;
    let plot_height = (plot.rows.len() as f64 * row_height).max(row_height);
    let height = top + plot_height + 48.0;

    let mut low = 0.0f64;
    let mut high = 0.0f64;
    for row in &plot.rows {
        let (ci_low, ci_high) = row.ci.unwrap_or((row.estimate, row.estimate));
        low = low.min(ci_low).min(row.estimate);
        high = high.max(ci_high).max(row.estimate);
    }
    let ticks = nice_ticks(low, high, 6);
    let step = tick_step(&ticks);
    let domain = (ticks.first().copied().unwrap_or(low), ticks.last().copied().unwrap_or(high));
    let x = Scale::new(domain, (left, right));
    let plot_bottom = top + plot_height;

    let mut svg = open_svg(&plot.title, height);
    svg.push_str(&legend.svg);
    draw_x_axis(&mut svg, &x, &ticks, step, top, plot_bottom, &plot.axis_label);
    let zero = x.map(0.0);
    let _ = write!(
        svg,
        r##"<line x1="{zero:.1}" y1="{top:.1}" x2="{zero:.1}" y2="{plot_bottom:.1}" stroke="#777" stroke-dasharray="4 3"/>"##
    );
    for (row_idx, row) in plot.rows.iter().enumerate() {
        let y = top + row_idx as f64 * row_height + row_height / 2.0;
        if row_idx % 2 == 1 {
            let _ = write!(
                svg,
                r##"<rect x="{left:.1}" y="{:.1}" width="{:.1}" height="{row_height:.1}" fill="#f6f6f6"/>"##,
                y - row_height / 2.0,
                right - left
            );
        }
        // A rule between the blocks of two compared policies.
        if row_idx > 0 && plot.rows[row_idx - 1].series != row.series {
            let rule_y = y - row_height / 2.0;
            let _ = write!(
                svg,
                r##"<line x1="{:.1}" y1="{rule_y:.1}" x2="{right:.1}" y2="{rule_y:.1}" stroke="#999"/>"##,
                left - 150.0f64.min(left)
            );
        }
        row_label(&mut svg, &row.label, left - 8.0, y + 4.0, label_chars);
        let color = plot.series.get(row.series).map_or(PALETTE[0], |series| series.color.as_str());
        if let Some((ci_low, ci_high)) = row.ci {
            let _ = write!(
                svg,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"/>"#,
                x.map(ci_low),
                x.map(ci_high)
            );
        }
        let fill = if row.significant { color } else { "#fff" };
        let _ = write!(
            svg,
            r#"<circle class="estimate" cx="{:.1}" cy="{y:.1}" r="5" fill="{fill}" stroke="{color}" stroke-width="2"><title>{}</title></circle>"#,
            x.map(row.estimate),
            escape(&format!("{}: {}", row.label, row.annotation))
        );
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#333">{}</text>"##,
            right + 12.0,
            y + 4.0,
            escape(&row.annotation)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A square matrix of values in `[-1, 1]` (correlations), drawn as coloured cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// Accessible name of the figure.
    pub title: String,
    /// Row and column labels (the same set, in drawing order).
    pub labels: Vec<String>,
    /// `values[row][column]`, in drawing order.
    pub values: Vec<Vec<f64>>,
    /// Name of the colour scale (for example "Spearman ρ").
    pub scale_label: String,
}

/// Draws a heatmap of a correlation matrix: rows labelled `k. name`, columns by number `k`, a diverging
/// blue-white-red scale from -1 to 1, the value in each cell when cells are large enough, and a colour bar.
/// Each cell is a `<rect class="cell">`.
pub fn heatmap(map: &Heatmap) -> String {
    let n_labels = map.labels.len();
    let numbered: Vec<String> =
        map.labels.iter().enumerate().map(|(idx, label)| format!("{}. {label}", idx + 1)).collect();
    let (left, label_chars) = label_margin(&numbered);
    let available = WIDTH - left - 110.0;
    let cell = (available / n_labels.max(1) as f64).clamp(8.0, 44.0);
    let top = 34.0;
    let grid = cell * n_labels as f64;
    let height = top + grid.max(160.0) + 30.0;
    let mut svg = open_svg(&map.title, height);
    for (column_idx, _) in map.labels.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#333">{}</text>"##,
            left + (column_idx as f64 + 0.5) * cell,
            top - 8.0,
            column_idx + 1
        );
    }
    for (row_idx, row_name) in numbered.iter().enumerate() {
        let y = top + row_idx as f64 * cell;
        row_label(&mut svg, row_name, left - 8.0, y + cell / 2.0 + 4.0, label_chars);
        for column_idx in 0..n_labels {
            let value = map.values.get(row_idx).and_then(|row| row.get(column_idx)).copied().unwrap_or(f64::NAN);
            let fill = diverging_color(value);
            let tooltip = format!(
                "{} × {}: {}",
                map.labels[row_idx],
                map.labels[column_idx],
                if value.is_finite() { format_number(value, 3, false) } else { "undefined".into() }
            );
            let _ = write!(
                svg,
                r##"<rect class="cell" x="{:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="{fill}" stroke="#fff" stroke-width="1"><title>{}</title></rect>"##,
                left + column_idx as f64 * cell,
                escape(&tooltip)
            );
            if cell >= 30.0 && value.is_finite() {
                let ink = if value.abs() > 0.6 { "#fff" } else { "#222" };
                let _ = write!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="{ink}">{}</text>"#,
                    left + (column_idx as f64 + 0.5) * cell,
                    y + cell / 2.0 + 3.5,
                    format_number(value, 2, false)
                );
            }
        }
    }
    // Colour bar: 20 steps from -1 (bottom) to 1 (top).
    let bar_x = left + grid + 28.0;
    let bar_height = 150.0;
    let n_steps = 20;
    for step_idx in 0..n_steps {
        let value = 1.0 - 2.0 * (step_idx as f64 + 0.5) / n_steps as f64;
        let _ = write!(
            svg,
            r#"<rect x="{bar_x:.1}" y="{:.1}" width="14" height="{:.1}" fill="{}"/>"#,
            top + step_idx as f64 * bar_height / n_steps as f64,
            bar_height / n_steps as f64 + 0.5,
            diverging_color(value)
        );
    }
    for (value, y) in [(1.0, top), (0.0, top + bar_height / 2.0), (-1.0, top + bar_height)] {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{}</text>"##,
            bar_x + 18.0,
            y + 3.5,
            format_tick(value, 1.0)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{bar_x:.1}" y="{:.1}" font-size="11" fill="#333">{}</text>"##,
        top - 8.0,
        escape(&map.scale_label)
    );
    svg.push_str("</svg>");
    svg
}

/// Blue (-1) through white (0) to red (+1); grey for an undefined value.
pub fn diverging_color(value: f64) -> String {
    if !value.is_finite() {
        return "#cccccc".to_string();
    }
    let value = value.clamp(-1.0, 1.0);
    let (end, weight) = if value < 0.0 { ((33.0, 102.0, 172.0), -value) } else { ((178.0, 24.0, 43.0), value) };
    let mix = |channel: f64| (255.0 + (channel - 255.0) * weight).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(end.0), mix(end.1), mix(end.2))
}

/// One row of an interval plot: a reference interval and an observed value.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    /// Row label.
    pub label: String,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// The observed value.
    pub observed: f64,
}

/// Observed values against reference intervals (for example permutation nulls).
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalPlot {
    /// Accessible name of the figure.
    pub title: String,
    /// The rows.
    pub rows: Vec<IntervalRow>,
    /// Label of the value axis.
    pub axis_label: String,
    /// Legend name of the intervals.
    pub interval_label: String,
    /// Legend name of the observed values.
    pub observed_label: String,
}

/// Draws each row's interval as a thick grey band and the observed value as a diamond with its value.
pub fn interval_plot(plot: &IntervalPlot) -> String {
    let row_height = 34.0;
    let labels: Vec<String> = plot.rows.iter().map(|row| row.label.clone()).collect();
    let (left, label_chars) = label_margin(&labels);
    let right = WIDTH - 80.0;
    let entries = vec![
        Series { name: plot.interval_label.clone(), color: "band:#bdbdbd".into() },
        Series { name: plot.observed_label.clone(), color: PALETTE[5].into() },
    ];
    let legend = legend(&entries, left, 10.0, true);
    let top = legend.height + 12.0;
    let plot_height = plot.rows.len() as f64 * row_height;
    let height = top + plot_height + 48.0;
    let mut low = f64::INFINITY;
    let mut high = f64::NEG_INFINITY;
    for row in &plot.rows {
        low = low.min(row.low).min(row.observed);
        high = high.max(row.high).max(row.observed);
    }
    if !low.is_finite() || !high.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    let ticks = nice_ticks(low.min(0.0), high, 6);
    let step = tick_step(&ticks);
    let domain = (ticks.first().copied().unwrap_or(low), ticks.last().copied().unwrap_or(high));
    let x = Scale::new(domain, (left, right));
    let mut svg = open_svg(&plot.title, height);
    svg.push_str(&legend.svg);
    draw_x_axis(&mut svg, &x, &ticks, step, top, top + plot_height, &plot.axis_label);
    for (row_idx, row) in plot.rows.iter().enumerate() {
        let y = top + row_idx as f64 * row_height + row_height / 2.0;
        row_label(&mut svg, &row.label, left - 8.0, y + 4.0, label_chars);
        let _ = write!(
            svg,
            r##"<rect class="interval" x="{:.1}" y="{:.1}" width="{:.1}" height="10" fill="#bdbdbd"><title>{}</title></rect>"##,
            x.map(row.low),
            y - 5.0,
            (x.map(row.high) - x.map(row.low)).max(1.0),
            escape(&format!(
                "{}: {} [{}, {}]",
                row.label,
                plot.interval_label,
                format_number(row.low, 3, false),
                format_number(row.high, 3, false)
            ))
        );
        let center = x.map(row.observed);
        let _ = write!(
            svg,
            r#"<path class="observed" d="M{center:.1},{:.1}L{:.1},{y:.1}L{center:.1},{:.1}L{:.1},{y:.1}Z" fill="{}"><title>{}</title></path>"#,
            y - 7.0,
            center + 7.0,
            y + 7.0,
            center - 7.0,
            PALETTE[5],
            escape(&format!("{}: observed {}", row.label, format_number(row.observed, 3, false)))
        );
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{}</text>"##,
            center + 9.0,
            y - 8.0,
            format_number(row.observed, 3, false)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn open_svg(title: &str, height: f64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" role="img" aria-label="{}" font-family="{FONT}" font-size="12"><title>{}</title>"#,
        escape(title),
        escape(title)
    )
}

/// Left margin that fits the labels (capped so the plot keeps most of the width), and the number of characters
/// a label may have before it is shortened.
fn label_margin(labels: &[String]) -> (f64, usize) {
    let longest = labels.iter().map(|label| label.chars().count()).max().unwrap_or(4);
    let max_chars = 34usize;
    let shown = longest.min(max_chars);
    ((shown as f64 * CHAR_WIDTH + 16.0).max(60.0), max_chars)
}

fn row_label(svg: &mut String, label: &str, x: f64, y: f64, max_chars: usize) {
    let shown = truncate(label, max_chars);
    let _ = write!(
        svg,
        r##"<text x="{x:.1}" y="{y:.1}" text-anchor="end" fill="#222">{}<title>{}</title></text>"##,
        escape(&shown),
        escape(label)
    );
}

fn tick_step(ticks: &[f64]) -> f64 {
    match ticks {
        [first, second, ..] => second - first,
        _ => 1.0,
    }
}

fn draw_x_axis(svg: &mut String, x: &Scale, ticks: &[f64], step: f64, top: f64, bottom: f64, label: &str) {
    for &tick in ticks {
        let position = x.map(tick);
        let _ = write!(
            svg,
            r#"<line x1="{position:.1}" y1="{top:.1}" x2="{position:.1}" y2="{bottom:.1}" stroke="{GRID_COLOR}"/><text x="{position:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{AXIS_COLOR}">{}</text>"#,
            bottom + 16.0,
            format_tick(tick, step)
        );
    }
    let (start, end) = (x.map(ticks.first().copied().unwrap_or(0.0)), x.map(ticks.last().copied().unwrap_or(1.0)));
    let _ = write!(
        svg,
        r#"<line x1="{start:.1}" y1="{bottom:.1}" x2="{end:.1}" y2="{bottom:.1}" stroke="{AXIS_COLOR}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{AXIS_COLOR}">{}</text>"#,
        (start + end) / 2.0,
        bottom + 36.0,
        escape(label)
    );
}

struct Legend {
    svg: String,
    height: f64,
}

/// A legend laid out left to right from `left`, wrapping to new lines. A colour `marker:filled` /
/// `marker:hollow` draws a circle, `band:COLOUR` a thick band, anything else a square swatch.
fn legend(entries: &[Series], left: f64, top: f64, show: bool) -> Legend {
    if !show || entries.is_empty() {
        return Legend { svg: String::new(), height: 0.0 };
    }
    let line_height = 18.0;
    let mut svg = String::from(r#"<g class="legend">"#);
    let (mut x, mut y) = (left, top);
    for entry in entries {
        let name = truncate(&entry.name, 48);
        let entry_width = 20.0 + text_width(&name) + 16.0;
        if x + entry_width > WIDTH - 10.0 && x > left {
            x = left;
            y += line_height;
        }
        let swatch = match entry.color.as_str() {
            "marker:filled" => {
                format!(r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{AXIS_COLOR}"/>"#, x + 6.0, y + 6.0)
            }
            "marker:hollow" => format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="#fff" stroke="{AXIS_COLOR}" stroke-width="2"/>"##,
                x + 6.0,
                y + 6.0
            ),
            color if color.starts_with("band:") => {
                format!(r#"<rect x="{x:.1}" y="{:.1}" width="14" height="8" fill="{}"/>"#, y + 2.0, &color[5..])
            }
            color => format!(r#"<rect x="{x:.1}" y="{y:.1}" width="12" height="12" fill="{color}"/>"#),
        };
        let _ = write!(
            svg,
            r##"{swatch}<text x="{:.1}" y="{:.1}" fill="#222">{}<title>{}</title></text>"##,
            x + 18.0,
            y + 10.5,
            escape(&name),
            escape(&entry.name)
        );
        x += entry_width;
    }
    svg.push_str("</g>");
    Legend { svg, height: y - top + line_height + 6.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_escape(input: &str, expect: &str) {
        assert_eq!(escape(input), expect, "escape({input:?})");
    }

    #[test]
    fn escaping() {
        check_escape("plain", "plain");
        check_escape("<script>alert('x')</script>", "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        check_escape("a & b \"c\"", "a &amp; b &quot;c&quot;");
        check_escape("ρ ≥ 0", "ρ ≥ 0");
    }

    fn check_ticks(low: f64, high: f64, expect: &[f64]) {
        let ticks = nice_ticks(low, high, 5);
        assert_eq!(ticks.len(), expect.len(), "ticks of [{low}, {high}]: {ticks:?}");
        for (got, want) in ticks.iter().zip(expect) {
            assert!((got - want).abs() < 1e-9, "ticks of [{low}, {high}]: {ticks:?}, want {expect:?}");
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        check_ticks(0.0, 1.0, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        check_ticks(0.0, 0.73, &[0.0, 0.2, 0.4, 0.6, 0.8]);
        check_ticks(-0.13, 0.21, &[-0.2, -0.1, 0.0, 0.1, 0.2, 0.3]);
        check_ticks(0.31, 0.47, &[0.3, 0.35, 0.4, 0.45, 0.5]);
        check_ticks(0.0, 37.0, &[0.0, 10.0, 20.0, 30.0, 40.0]);
        // A degenerate range is widened instead of producing one tick or dividing by zero.
        check_ticks(0.5, 0.5, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(format_tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(format_tick(-0.0, 0.05), "0.00");
        assert_eq!(format_tick(20.0, 10.0), "20");
        assert_eq!(format_tick(-0.15, 0.05), "-0.15");
    }

    #[test]
    fn scale_maps_linearly() {
        let scale = Scale::new((0.0, 1.0), (100.0, 300.0));
        assert_eq!(scale.map(0.0), 100.0);
        assert_eq!(scale.map(0.5), 200.0);
        assert_eq!(scale.map(1.0), 300.0);
        let flat = Scale::new((2.0, 2.0), (0.0, 10.0));
        assert!(flat.map(2.0).is_finite());
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn grouped_bars_draw_one_rect_per_present_value() {
        let bar = |value: f64| Some(Bar { value, ci: Some((value - 0.1, value + 0.1)), note: String::new() });
        let chart = GroupedBars {
            title: "t".into(),
            categories: vec!["truthfulness".into(), "corrigibility".into(), "<b>".into()],
            series: vec![Series::nth("base", 0), Series::nth("trait & co", 1)],
            values: vec![vec![bar(0.4), bar(0.6)], vec![bar(0.3), None], vec![bar(0.2), bar(0.1)]],
            axis_label: "mean score".into(),
            min_domain: Some((0.0, 1.0)),
            decimals: 2,
        };
        let svg = grouped_bars(&chart);
        assert_eq!(count(&svg, r#"<rect class="bar""#), 5);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("trait &amp; co"), "legend is escaped");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"), "labels are escaped");
        assert!(svg.contains("mean score"), "axis label");
        assert!(svg.contains(r#"width="760""#));
    }

    #[test]
    fn axis_grows_to_fit_negative_whiskers() {
        let chart = GroupedBars {
            title: "t".into(),
            categories: vec!["corrigibility".into()],
            series: vec![Series::nth("base", 0)],
            values: vec![vec![Some(Bar { value: 0.5, ci: Some((-0.15, 0.9)), note: String::new() })]],
            axis_label: "score".into(),
            min_domain: Some((0.0, 1.0)),
            decimals: 2,
        };
        let svg = grouped_bars(&chart);
        assert!(svg.contains(">-0.2</text>"), "a tick below the whisker: {svg}");
        assert!(svg.contains(">1.0</text>"), "the minimum domain is kept");
    }

    #[test]
    fn single_series_bar_chart_has_no_legend() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let bars = vec![Some(Bar { value: 1.0, ci: None, note: "n = 3".into() }), None];
        let svg = bar_chart("one", &labels, bars, "x");
        assert_eq!(count(&svg, r#"<rect class="bar""#), 1);
        assert!(!svg.contains(r#"class="legend""#));
    }

    #[test]
    fn forest_plot_marks_significance() {
        let plot = ForestPlot {
            title: "f".into(),
            rows: vec![
                ForestRow {
                    label: "b1".into(),
                    series: 0,
                    estimate: 0.2,
                    ci: Some((0.1, 0.3)),
                    significant: true,
                    annotation: "q = 0.01".into(),
                },
                ForestRow {
                    label: "b2".into(),
                    series: 0,
                    estimate: -0.05,
                    ci: Some((-0.2, 0.1)),
                    significant: false,
                    annotation: "q = 0.6".into(),
                },
            ],
            series: vec![Series::nth("trait", 0)],
            axis_label: "difference".into(),
            significant_label: "q < 0.05".into(),
        };
        let svg = forest_plot(&plot);
        assert_eq!(count(&svg, r#"<circle class="estimate""#), 2);
        assert_eq!(count(&svg, r##"fill="#fff" stroke="#0072B2""##), 1, "one hollow marker");
        assert!(svg.contains("stroke-dasharray"), "zero line");
    }

    #[test]
    fn heatmap_has_n_squared_cells() {
        let map = Heatmap {
            title: "h".into(),
            labels: vec!["a".into(), "b".into(), "c".into()],
            values: vec![vec![1.0, 0.5, -0.2], vec![0.5, 1.0, 0.1], vec![-0.2, 0.1, 1.0]],
            scale_label: "ρ".into(),
        };
        let svg = heatmap(&map);
        assert_eq!(count(&svg, r#"<rect class="cell""#), 9);
        assert_eq!(diverging_color(0.0), "#ffffff");
        assert_eq!(diverging_color(1.0), "#b2182b");
        assert_eq!(diverging_color(-1.0), "#2166ac");
    }

    #[test]
    fn interval_plot_rows() {
        let plot = IntervalPlot {
            title: "i".into(),
            rows: vec![IntervalRow { label: "PC1 share".into(), low: 0.3, high: 0.5, observed: 0.7 }],
            axis_label: "share".into(),
            interval_label: "null 95%".into(),
            observed_label: "observed".into(),
        };
        let svg = interval_plot(&plot);
        assert_eq!(count(&svg, r#"class="interval""#), 1);
        assert_eq!(count(&svg, r#"class="observed""#), 1);
    }

    #[test]
    fn long_labels_are_shortened_with_full_title() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        let long = "x".repeat(80);
        let svg = bar_chart(
            "t",
            std::slice::from_ref(&long),
            vec![Some(Bar { value: 1.0, ci: None, note: String::new() })],
            "v",
        );
        assert!(svg.contains(&format!("<title>{long}</title>")));
    }
}
