//! The self-contained report page: inline CSS, inline SVG figures and one tiny inline script, so it opens
//! offline from a file. Every string that comes from run files is escaped.
//!
//! The script sets `document.body.dataset.rendered = "ok"` and `data-figures` (the number of `svg.chart`
//! figures) once the page has loaded, and `window.onerror` writes any script error into `#errors`: a headless
//! browser test reads these attributes from the dumped DOM.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis::{cell_name, ComparisonRow, PolicyComparison, Report};
use crate::load::ConditionKind;
use crate::svg::{
    escape, forest_plot, grouped_bars, heatmap, interval_plot, Bar, ForestPlot, ForestRow, GroupedBars, Heatmap,
    IntervalPlot, IntervalRow, Series,
};

/// The rendered page and the number of figures in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The HTML document.
    pub html: String,
    /// Number of `<svg class="chart">` figures.
    pub n_figures: usize,
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #1d1d1d;
  background: #fff; max-width: 1000px; margin: 0 auto; padding: 24px 28px 60px; line-height: 1.45; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 12px; border-top: 1px solid #ddd; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p, li { font-size: 14px; }
.meta { color: #555; font-size: 13px; }
figure { margin: 14px 0 20px; }
figure svg { display: block; background: #fff; }
figcaption { font-size: 13px; color: #333; max-width: 760px; margin-top: 6px; }
figcaption b { color: #000; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0 16px; }
th, td { border: 1px solid #d9d9d9; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafafa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.table-wrap { overflow-x: auto; max-width: 100%; }
td.rev { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px; white-space: nowrap; }
nav ol { font-size: 14px; columns: 2; margin: 8px 0; }
td.code { min-width: 9em; font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; font-size: 11.5px;
  word-break: break-all; }
.sig { font-weight: 700; color: #0b6b2f; }
.reg { font-weight: 700; color: #a11d1d; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 8px 12px; font-size: 14px; }
.warnings li { color: #7a4b00; }
.caption-table { font-size: 13px; color: #333; }
details summary { cursor: pointer; font-size: 14px; margin: 6px 0; }
#errors { color: #a11d1d; white-space: pre-wrap; font-family: monospace; }
#errors:empty { display: none; }
"#;

const SCRIPT: &str = r#"
window.onerror = function (message, source, line, column) {
  var box = document.getElementById('errors');
  if (box) { box.textContent += message + ' (' + source + ' ' + line + ':' + column + ')\n'; }
  return false;
};
document.addEventListener('DOMContentLoaded', function () {
  document.body.dataset.figures = String(document.querySelectorAll('svg.chart').length);
  document.body.dataset.rendered = 'ok';
});
"#;

const NAV: &str = "<nav><ol><li><a href=\"#traits\">Held-out trait suite</a></li><li><a href=\"#differences\">\
Differences from the baseline</a></li><li><a href=\"#wins\">Wins and losses</a></li><li><a href=\"#personas\">\
Persistence under personas</a></li><li><a href=\"#refusals\">Refusals</a></li><li><a href=\"#structure\">Shared \
structure</a></li><li><a href=\"#capability\">Capability guards</a></li><li><a href=\"#runs\">Runs</a></li></ol></nav>";

/// Renders the report page.
pub fn render(report: &Report) -> Page {
    let mut page = PageBuilder { body: String::new(), n_figures: 0, labels: BTreeMap::new() };
    for policy in &report.policies {
        page.labels.insert(policy.spec.clone(), policy.label.clone());
    }
    page.header(report);
    page.traits(report);
    page.forest(report);
    page.win_loss(report);
    page.personas(report);
    page.refusals(report);
    page.structure(report);
    page.capability(report);
    page.manifests(report);
    page.all_benchmarks(report);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\">\n<title>ethos report</title>\n<style>{STYLE}</style>\n\
         <script>{SCRIPT}</script>\n</head>\n<body>\n<div id=\"errors\"></div>\n{}</body>\n</html>\n",
        page.body
    );
    Page { html, n_figures: page.n_figures }
}

struct PageBuilder {
    body: String,
    n_figures: usize,
    labels: BTreeMap<String, String>,
}

/// A number with `decimals` decimals, or an en dash when undefined.
fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) if value.is_finite() => unsigned_zero(format!("{value:.decimals$}")),
        _ => "–".to_string(),
    }
}

/// A number with an explicit sign.
fn signed(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) if value.is_finite() => unsigned_zero(format!("{value:+.decimals$}")),
        _ => "–".to_string(),
    }
}

/// A value that rounds to zero is shown without a sign: "-0.000" (a tiny negative value) reads as a real
/// negative difference.
fn unsigned_zero(text: String) -> String {
    let digits = text.trim_start_matches(['-', '+']);
    if digits.chars().all(|c| c == '0' || c == '.') {
        digits.to_string()
    } else {
        text
    }
}

fn p_value(value: Option<f64>) -> String {
    match value {
        Some(value) if value < 1e-4 => format!("{value:.1e}"),
        Some(value) => format!("{value:.4}"),
        None => "–".to_string(),
    }
}

fn interval(low: Option<f64>, high: Option<f64>, decimals: usize) -> String {
    match (low, high) {
        (Some(_), Some(_)) => format!("[{}, {}]", number(low, decimals), number(high, decimals)),
        _ => "–".to_string(),
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |value| format!("{:.1}%", 100.0 * value))
}

impl PageBuilder {
    fn label(&self, spec: &str) -> String {
        self.labels.get(spec).cloned().unwrap_or_else(|| spec.to_string())
    }

    fn push(&mut self, html: &str) {
        self.body.push_str(html);
        self.body.push('\n');
    }

    fn figure(&mut self, svg: String, caption: &str) {
        self.n_figures += 1;
        let _ = writeln!(
            self.body,
            "<figure>{svg}<figcaption><b>Figure {}.</b> {caption}</figcaption></figure>",
            self.n_figures
        );
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p class=\"note\">{}</p>", escape(text));
    }

    fn table(&mut self, headers: &[(&str, bool)], rows: &[Vec<(String, &str)>]) {
        // The wrapper scrolls a wide table sideways instead of pushing the page wider than the figures.
        let mut html = String::from("<div class=\"table-wrap\"><table><thead><tr>");
        for (header, numeric) in headers {
            let _ = write!(html, "<th{}>{}</th>", if *numeric { " class=\"num\"" } else { "" }, escape(header));
        }
        html.push_str("</tr></thead><tbody>");
        for row in rows {
            html.push_str("<tr>");
            for (cell, class) in row {
                // Cells arrive escaped (some carry markup such as the significance mark).
                if class.is_empty() {
                    let _ = write!(html, "<td>{cell}</td>");
                } else {
                    let _ = write!(html, "<td class=\"{class}\">{cell}</td>");
                }
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table></div>");
        self.push(&html);
    }

    fn header(&mut self, report: &Report) {
        let settings = &report.settings;
        self.push("<h1>ethos report</h1>");
        let _ = writeln!(
            self.body,
            "<p class=\"meta\">{} · {} runs · baseline <b>{}</b> · {:.0}% bootstrap CIs ({} resamples, seed {}) · \
             significance: Benjamini-Hochberg q &lt; {} · {} permutations for structure nulls</p>",
            escape(&report.generator),
            report.runs.len(),
            escape(&self.label(&settings.baseline)),
            100.0 * settings.confidence,
            settings.bootstrap,
            settings.seed,
            settings.alpha,
            settings.permutations
        );
        self.push(
            "<p>Scores are oriented so that higher is better on every benchmark. Unscored items (a grade that could \
             not be parsed) are excluded from every statistic and counted in the tables. Differences are always \
             compared policy minus baseline (B − A).</p>",
        );
        let rows: Vec<Vec<(String, &str)>> = report
            .policies
            .iter()
            .map(|policy| {
                vec![
                    (escape(&policy.label), ""),
                    (escape(&policy.spec), "code"),
                    (if policy.is_baseline { "baseline".to_string() } else { String::new() }, ""),
                ]
            })
            .collect();
        self.table(&[("label", false), ("policy spec", false), ("role", false)], &rows);
        self.push(NAV);
        if !report.warnings.is_empty() {
            let mut html = String::from("<details open><summary>Warnings</summary><ul class=\"warnings\">");
            for warning in &report.warnings {
                let _ = write!(html, "<li>{}</li>", escape(warning));
            }
            html.push_str("</ul></details>");
            self.push(&html);
        }
    }

    fn traits(&mut self, report: &Report) {
        self.push("<h2 id=\"traits\">1. Held-out trait suite</h2>");
        let section = &report.traits;
        if section.traits.is_empty() {
            self.note("No `eval traits` runs under the standard prompt were given, so there is no trait figure.");
            return;
        }
        let series: Vec<Series> =
            section.policies.iter().enumerate().map(|(idx, policy)| Series::nth(self.label(policy), idx)).collect();
        let values = section
            .traits
            .iter()
            .map(|trait_id| {
                section
                    .policies
                    .iter()
                    .map(|policy| {
                        let row =
                            section.scores.iter().find(|row| &row.benchmark == trait_id && &row.policy == policy)?;
                        Some(Bar {
                            value: row.mean?,
                            ci: row.ci_low.zip(row.ci_high),
                            note: format!("n = {}, unscored {}", row.n, row.n_unscored),
                        })
                    })
                    .collect()
            })
            .collect();
        let svg = grouped_bars(&GroupedBars {
            title: "Held-out trait suite: mean score per trait and policy".into(),
            categories: section.traits.clone(),
            series,
            values,
            axis_label: "mean rubric score (0 = fails the rubric, 1 = meets it)".into(),
            min_domain: Some((0.0, 1.0)),
            decimals: 3,
        });
        let composites: Vec<String> = section
            .composite
            .iter()
            .map(|c| format!("{} {:.3} ({} traits)", escape(&self.label(&c.policy)), c.composite, c.n_traits))
            .collect();
        let caption = format!(
            "Mean rubric score on each held-out trait (rows), one bar per policy, with {:.0}% bootstrap confidence \
             intervals over scenarios (whiskers). Longer bars are better; overlapping whiskers mean the difference \
             is within noise. Composite (mean over traits): {}.",
            100.0 * report.settings.confidence,
            composites.join("; ")
        );
        self.figure(svg, &caption);
    }

    fn forest(&mut self, report: &Report) {
        self.push("<h2 id=\"differences\">2. Differences from the baseline per benchmark</h2>");
        let compared: Vec<&PolicyComparison> =
            report.comparisons.iter().filter(|comparison| !comparison.benchmarks.is_empty()).collect();
        if compared.is_empty() {
            self.note(
                "Only one policy (or no benchmark in common with the baseline under the standard prompt): \
                 there is nothing to compare.",
            );
            return;
        }
        let series: Vec<Series> = compared
            .iter()
            .enumerate()
            .map(|(idx, comparison)| Series::nth(self.label(&comparison.policy), idx))
            .collect();
        let mut rows = Vec::new();
        for (series_idx, comparison) in compared.iter().enumerate() {
            for benchmark in sorted_rows(&comparison.benchmarks) {
                let Some(delta) = benchmark.delta else { continue };
                rows.push(ForestRow {
                    label: benchmark.benchmark.clone(),
                    series: series_idx,
                    estimate: delta,
                    ci: benchmark.ci_low.zip(benchmark.ci_high),
                    significant: benchmark.significant,
                    annotation: format!(
                        "{} {}  q {}",
                        signed(Some(delta), 3),
                        interval(benchmark.ci_low, benchmark.ci_high, 3),
                        p_value(benchmark.q)
                    ),
                });
            }
        }
        let alpha = report.settings.alpha;
        let svg = forest_plot(&ForestPlot {
            title: "Mean difference from the baseline per benchmark".into(),
            rows,
            series,
            axis_label: format!("mean score difference, policy − baseline ({})", self.label(&report.settings.baseline)),
            significant_label: format!("significant (BH q < {alpha})"),
        });
        let caption = format!(
            "Forest plot: for each benchmark (rows, grouped by category) the mean score of the policy minus the \
             baseline <b>{}</b> under the standard prompt, with {:.0}% bootstrap CIs. Items are paired by id when \
             both policies scored the same items (paired t-test), otherwise compared as independent samples \
             (Welch). Points right of the dashed zero line favour the policy. Filled points are significant after \
             Benjamini-Hochberg correction across the benchmarks of a comparison (q &lt; {alpha}); hollow points are \
             not. The right column gives the difference, its CI and the q-value.",
            escape(&self.label(&report.settings.baseline)),
            100.0 * report.settings.confidence
        );
        self.figure(svg, &caption);
        self.comparison_table(&compared, "Numbers of the forest plot");
    }

    fn comparison_table(&mut self, comparisons: &[&PolicyComparison], title: &str) {
        let headers = [
            ("policy", false),
            ("benchmark", false),
            ("category", false),
            ("design", false),
            ("n A", true),
            ("n B", true),
            ("mean A", true),
            ("mean B", true),
            ("Δ B − A", true),
            ("CI", true),
            ("p", true),
            ("q", true),
            ("", false),
        ];
        let mut rows = Vec::new();
        for comparison in comparisons {
            for benchmark in sorted_rows(&comparison.benchmarks) {
                let mark = match (benchmark.significant, benchmark.delta) {
                    (true, Some(delta)) if delta > 0.0 => "<span class=\"sig\">▲ improved</span>".to_string(),
                    (true, Some(delta)) if delta < 0.0 => "<span class=\"reg\">▼ regressed</span>".to_string(),
                    _ => benchmark.note.as_deref().map(escape).unwrap_or_default(),
                };
                let mut n_a = benchmark.n_a.to_string();
                let mut n_b = benchmark.n_b.to_string();
                if benchmark.n_unmatched_a > 0 {
                    let _ = write!(n_a, " (+{} unmatched)", benchmark.n_unmatched_a);
                }
                if benchmark.n_unmatched_b > 0 {
                    let _ = write!(n_b, " (+{} unmatched)", benchmark.n_unmatched_b);
                }
                rows.push(vec![
                    (escape(&self.label(&comparison.policy)), ""),
                    (escape(&benchmark.benchmark), ""),
                    (escape(&benchmark.category), ""),
                    (benchmark.design.to_string(), ""),
                    (n_a, "num"),
                    (n_b, "num"),
                    (number(benchmark.mean_a, 3), "num"),
                    (number(benchmark.mean_b, 3), "num"),
                    (signed(benchmark.delta, 3), "num"),
                    (interval(benchmark.ci_low, benchmark.ci_high, 3), "num"),
                    (p_value(benchmark.p), "num"),
                    (p_value(benchmark.q), "num"),
                    (mark, ""),
                ]);
            }
        }
        let _ = writeln!(self.body, "<details><summary>{}</summary>", escape(title));
        self.table(&headers, &rows);
        for comparison in comparisons {
            for (side, names) in [("baseline", &comparison.only_baseline), ("policy", &comparison.only_policy)] {
                if !names.is_empty() {
                    let _ = writeln!(
                        self.body,
                        "<p class=\"meta\">{}: benchmarks only the {side} has (not compared): {}</p>",
                        escape(&self.label(&comparison.policy)),
                        escape(&names.join(", "))
                    );
                }
            }
        }
        self.push("</details>");
    }

    fn win_loss(&mut self, report: &Report) {
        self.push("<h2 id=\"wins\">3. Wins and losses</h2>");
        let compared: Vec<&PolicyComparison> =
            report.comparisons.iter().filter(|comparison| comparison.summary.n > 0).collect();
        if compared.is_empty() {
            self.note("No comparison with the baseline, so no win/loss summary.");
            return;
        }
        let kinds: [(&str, &str); 5] = [
            ("wins (Δ > 0)", "#66bd63"),
            ("losses (Δ < 0)", "#f46d43"),
            ("ties", "#bdbdbd"),
            ("significant improvements", "#1a7837"),
            ("significant regressions", "#b2182b"),
        ];
        let series: Vec<Series> =
            kinds.iter().map(|(name, color)| Series { name: name.to_string(), color: color.to_string() }).collect();
        let categories: Vec<String> = compared.iter().map(|comparison| self.label(&comparison.policy)).collect();
        let values = compared
            .iter()
            .map(|comparison| {
                let summary = &comparison.summary;
                [summary.wins, summary.losses, summary.ties, summary.sig_improved, summary.sig_regressed]
                    .iter()
                    .map(|&count| {
                        Some(Bar { value: count as f64, ci: None, note: format!("of {} benchmarks", summary.n) })
                    })
                    .collect()
            })
            .collect();
        let svg = grouped_bars(&GroupedBars {
            title: "Wins, losses and significant changes against the baseline".into(),
            categories,
            series,
            values,
            axis_label: "number of benchmarks".into(),
            min_domain: None,
            decimals: 0,
        });
        let caption = format!(
            "For each policy (rows), how many benchmarks it scores above (wins) or below (losses) the baseline \
             <b>{}</b>, and how many of those differences are significant after Benjamini-Hochberg correction \
             (q &lt; {}). A broad improvement shows many wins, several significant improvements and few significant \
             regressions.",
            escape(&self.label(&report.settings.baseline)),
            report.settings.alpha
        );
        self.figure(svg, &caption);
        let rows: Vec<Vec<(String, &str)>> = compared
            .iter()
            .map(|comparison| {
                let summary = &comparison.summary;
                vec![
                    (escape(&self.label(&comparison.policy)), ""),
                    (summary.n.to_string(), "num"),
                    (format!("{} / {} / {}", summary.wins, summary.losses, summary.ties), "num"),
                    (p_value(Some(summary.sign_test_p)), "num"),
                    (signed(summary.mean_delta, 4), "num"),
                    (signed(summary.median_delta, 4), "num"),
                    (format!("{} of {}", summary.sig_improved, summary.n_tested), "num"),
                    (format!("{} of {}", summary.sig_regressed, summary.n_tested), "num"),
                ]
            })
            .collect();
        self.table(
            &[
                ("policy", false),
                ("benchmarks", true),
                ("wins / losses / ties", true),
                ("sign test p", true),
                ("mean Δ", true),
                ("median Δ", true),
                ("sig. improved", true),
                ("sig. regressed", true),
            ],
            &rows,
        );
    }

    fn personas(&mut self, report: &Report) {
        self.push("<h2 id=\"personas\">4. Persistence under persona system prompts</h2>");
        let section = &report.personas;
        if section.bars.is_empty() {
            self.note(
                "No runs under a persona condition (harmful_* or helpful_*) were given, so there is no persona figure.",
            );
            return;
        }
        let mut policies: Vec<String> = Vec::new();
        for bar in &section.bars {
            if !policies.contains(&bar.policy) {
                policies.push(bar.policy.clone());
            }
        }
        let conditions: Vec<(String, ConditionKind)> = report
            .conditions
            .iter()
            .filter(|condition| section.bars.iter().any(|bar| bar.condition == condition.condition))
            .map(|condition| (condition.condition.clone(), condition.kind))
            .collect();
        let mut kind_counts: BTreeMap<ConditionKind, usize> = BTreeMap::new();
        let series: Vec<Series> = conditions
            .iter()
            .map(|(condition, kind)| {
                let index = kind_counts.entry(*kind).or_insert(0);
                let shades: &[&str] = match kind {
                    ConditionKind::Standard => &["#0072B2"],
                    ConditionKind::Harmful => &["#D55E00", "#E69F00", "#CC79A7", "#8c2d04"],
                    ConditionKind::Helpful => &["#009E73", "#56B4E9", "#2ca25f", "#006d2c"],
                    ConditionKind::Other => &["#8C8C8C", "#525252", "#000000"],
                };
                let color = shades[*index % shades.len()].to_string();
                *index += 1;
                let name = if condition == "none" { "standard prompt".to_string() } else { condition.clone() };
                Series { name, color }
            })
            .collect();
        let values = policies
            .iter()
            .map(|policy| {
                conditions
                    .iter()
                    .map(|(condition, _)| {
                        let bar =
                            section.bars.iter().find(|bar| &bar.policy == policy && &bar.condition == condition)?;
                        Some(Bar {
                            value: bar.mean,
                            ci: None,
                            note: format!("mean over {} benchmarks", bar.benchmarks.len()),
                        })
                    })
                    .collect()
            })
            .collect();
        let svg = grouped_bars(&GroupedBars {
            title: "Mean score under the standard prompt and persona prompts".into(),
            categories: policies.iter().map(|policy| self.label(policy)).collect(),
            series,
            values,
            axis_label: "mean score over the benchmarks shared by the policy's conditions".into(),
            min_domain: None,
            decimals: 3,
        });
        let counts: Vec<String> = policies
            .iter()
            .filter_map(|policy| {
                let bar = section.bars.iter().find(|bar| &bar.policy == policy)?;
                Some(format!("{}: {}", escape(&self.label(policy)), bar.benchmarks.len()))
            })
            .collect();
        let caption = format!(
            "For each policy (rows), the mean oriented score (mean of benchmark means) under the standard prompt \
             (blue), harmful persona system prompts (orange/red) and helpful ones (green). Only benchmarks scored \
             under every condition of the policy are averaged (benchmarks per policy: {}). A persistent model loses \
             little under a harmful persona; a steerable one gains under a helpful persona.",
            counts.join(", ")
        );
        self.figure(svg, &caption);
        if section.persistence.is_empty() {
            self.note(
                "Persistence statistics need the baseline and another policy both scored under the standard prompt \
                 and the same persona condition.",
            );
            return;
        }
        let shift_cell = |standard: f64, persona: f64, shift: f64, ci: (f64, f64)| {
            format!(
                "{} → {}<br>shift {} {}",
                number(Some(standard), 3),
                number(Some(persona), 3),
                signed(Some(shift), 3),
                interval(Some(ci.0), Some(ci.1), 3)
            )
        };
        let rows: Vec<Vec<(String, &str)>> = section
            .persistence
            .iter()
            .map(|row| {
                vec![
                    (escape(&self.label(&row.b)), ""),
                    (format!("{}<br>({})", escape(&row.persona), row.kind), ""),
                    (row.n_items.to_string(), "num"),
                    (shift_cell(row.a_standard, row.a_persona, row.a_shift, row.a_ci), "num"),
                    (shift_cell(row.b_standard, row.b_persona, row.b_shift, row.b_ci), "num"),
                    (
                        format!(
                            "{}<br>{}",
                            signed(Some(row.difference), 3),
                            interval(Some(row.difference_ci.0), Some(row.difference_ci.1), 3)
                        ),
                        "num",
                    ),
                    (p_value(row.p), "num"),
                ]
            })
            .collect();
        let _ = writeln!(
            self.body,
            "<p class=\"caption-table\">Persistence against the baseline <b>{}</b> on the items scored in all four \
             cells (both policies, standard and persona prompt). Degradation = standard − harmful persona; steering = \
             helpful persona − standard; difference = policy's shift − baseline's shift, with bootstrap CIs over items \
             and the p-value of a paired t-test. A negative degradation difference means the policy degrades less.</p>",
            escape(&self.label(&report.settings.baseline))
        );
        self.table(
            &[
                ("policy", false),
                ("persona", false),
                ("items", true),
                ("baseline: standard → persona", true),
                ("policy: standard → persona", true),
                ("difference [CI]", true),
                ("p", true),
            ],
            &rows,
        );
    }

    fn refusals(&mut self, report: &Report) {
        self.push("<h2 id=\"refusals\">5. Refusals</h2>");
        let section = &report.refusals;
        if section.rates.is_empty() {
            self.note("No item scores carry refusal labels, so there are no refusal rates.");
            return;
        }
        let mut policies: Vec<&String> = Vec::new();
        let mut benchmarks: Vec<&String> = Vec::new();
        for rate in &section.rates {
            if !policies.contains(&&rate.policy) {
                policies.push(&rate.policy);
            }
            if !benchmarks.contains(&&rate.benchmark) {
                benchmarks.push(&rate.benchmark);
            }
        }
        benchmarks.sort();
        let labels: Vec<String> = policies.iter().map(|policy| self.label(policy)).collect();
        let mut headers: Vec<(&str, bool)> = vec![("benchmark", false)];
        headers.extend(labels.iter().map(|label| (label.as_str(), true)));
        let rows: Vec<Vec<(String, &str)>> = benchmarks
            .iter()
            .map(|benchmark| {
                let mut row = vec![(escape(benchmark), "")];
                for policy in &policies {
                    let cell = section
                        .rates
                        .iter()
                        .find(|rate| &&rate.policy == policy && &&rate.benchmark == benchmark)
                        .map_or_else(
                            || "–".to_string(),
                            |rate| format!("{} ({}/{})", percent(rate.rate), rate.n_refused, rate.n_labeled),
                        );
                    row.push((cell, "num"));
                }
                row
            })
            .collect();
        self.push(
            "<p class=\"caption-table\">Refusal rate per benchmark and policy under the standard prompt: the share of \
             records labeled as a partial or full refusal among those with a refusal label (refused / labeled). \
             Unlabeled records are not counted.</p>",
        );
        self.table(&headers, &rows);
        let compared: Vec<&PolicyComparison> = section.non_refusal.iter().collect();
        if compared.is_empty() {
            return;
        }
        self.push(
            "<p class=\"caption-table\">Paired comparison restricted to items that neither policy refused (both \
             labeled <code>none</code> and scored): does a policy's gain survive when refusals are taken out? \
             Significance is Benjamini-Hochberg across these benchmarks.</p>",
        );
        let rows: Vec<Vec<(String, &str)>> = compared
            .iter()
            .flat_map(|comparison| {
                sorted_rows(&comparison.benchmarks)
                    .into_iter()
                    .map(|benchmark| {
                        vec![
                            (escape(&self.label(&comparison.policy)), ""),
                            (escape(&benchmark.benchmark), ""),
                            (benchmark.n_a.to_string(), "num"),
                            (number(benchmark.mean_a, 3), "num"),
                            (number(benchmark.mean_b, 3), "num"),
                            (signed(benchmark.delta, 3), "num"),
                            (interval(benchmark.ci_low, benchmark.ci_high, 3), "num"),
                            (p_value(benchmark.q), "num"),
                            (significance_mark(benchmark), ""),
                        ]
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        self.table(
            &[
                ("policy", false),
                ("benchmark", false),
                ("pairs", true),
                ("baseline", true),
                ("policy", true),
                ("Δ", true),
                ("CI", true),
                ("q", true),
                ("", false),
            ],
            &rows,
        );
    }

    fn structure(&mut self, report: &Report) {
        self.push("<h2 id=\"structure\">6. Shared structure across benchmarks</h2>");
        let section = &report.structure;
        if section.status != "ok" {
            let note = section.note.clone().unwrap_or_else(|| "the structure analysis was skipped".into());
            self.note(&format!(
                "No correlation figure: {note}. Rows are (policy, condition) runs: {}.",
                if section.rows.is_empty() { "none".to_string() } else { section.rows.join(", ") }
            ));
            return;
        }
        let svg = heatmap(&Heatmap {
            title: "Spearman correlation between benchmarks across runs".into(),
            labels: section.columns.clone(),
            values: section.spearman.clone(),
            scale_label: "Spearman ρ".into(),
        });
        let caption = format!(
            "Spearman correlation between benchmarks (numbered rows and columns) across the {} (policy, condition) \
             rows: {}. Red means runs that score high on one benchmark also score high on the other, blue the \
             opposite. Benchmarks are ordered by average-linkage clustering on 1 − ρ, so blocks of red are groups of \
             benchmarks that move together. Mean pairwise ρ = {}.",
            section.rows.len(),
            escape(&section.rows.join(", ")),
            number(section.mean_spearman, 3)
        );
        self.figure(svg, &caption);
        if !section.constant_columns.is_empty() {
            self.note(&format!(
                "Left out because every row has the same mean: {}.",
                section.constant_columns.join(", ")
            ));
        }
        let Some(nulls) = &section.nulls else {
            return;
        };
        let rows = vec![
            IntervalRow {
                label: "mean pairwise Spearman".into(),
                low: nulls.mean_spearman.low,
                high: nulls.mean_spearman.high,
                observed: section.mean_spearman.unwrap_or(f64::NAN),
            },
            IntervalRow {
                label: "PC1 share of variance".into(),
                low: nulls.pc1_share.low,
                high: nulls.pc1_share.high,
                observed: section.pc1_share.unwrap_or(f64::NAN),
            },
            IntervalRow {
                label: "leave-one-out Spearman".into(),
                low: nulls.loo_mean_spearman.low,
                high: nulls.loo_mean_spearman.high,
                observed: section.loo_mean_spearman.unwrap_or(f64::NAN),
            },
        ];
        let svg = interval_plot(&IntervalPlot {
            title: "Structure statistics against their permutation nulls".into(),
            rows,
            axis_label: "value of the statistic".into(),
            interval_label: "permutation null, 2.5–97.5 percentile".into(),
            observed_label: "observed".into(),
        });
        let caption = format!(
            "Observed structure statistics (diamonds) against their permutation nulls (grey bands: each benchmark \
             shuffled independently across rows, {} permutations). PC1 share = {} (null {}, p = {}); a diamond right \
             of its band means the benchmarks share more structure than chance.",
            report.settings.permutations,
            number(section.pc1_share, 3),
            interval(Some(nulls.pc1_share.low), Some(nulls.pc1_share.high), 3),
            p_value(Some(nulls.pc1_share.p))
        );
        self.figure(svg, &caption);
    }

    fn capability(&mut self, report: &Report) {
        self.push("<h2 id=\"capability\">7. Capability guards</h2>");
        if report.capability.is_empty() {
            self.note("No capability runs (GSM8K, IFEval) were given.");
            return;
        }
        self.push(
            "<p class=\"caption-table\">Accuracy on the capability guards (GSM8K exact match, IFEval strict and loose) \
             with bootstrap CIs, and the difference from the baseline with its q-value. Alignment gains should not \
             come with a capability regression.</p>",
        );
        let rows: Vec<Vec<(String, &str)>> = report
            .capability
            .iter()
            .map(|row| {
                vec![
                    (escape(&row.benchmark), ""),
                    (escape(&self.label(&row.policy)), ""),
                    (number(row.mean, 3), "num"),
                    (interval(row.ci_low, row.ci_high, 3), "num"),
                    (row.n.to_string(), "num"),
                    (signed(row.delta, 3), "num"),
                    (p_value(row.q), "num"),
                ]
            })
            .collect();
        self.table(
            &[
                ("benchmark", false),
                ("policy", false),
                ("accuracy", true),
                ("CI", true),
                ("n", true),
                ("Δ vs baseline", true),
                ("q", true),
            ],
            &rows,
        );
    }

    fn manifests(&mut self, report: &Report) {
        self.push("<h2 id=\"runs\">8. Runs</h2>");
        self.push(
            "<p class=\"caption-table\">Every run directory given, from its <code>manifest.json</code>: what produced \
             it, with which models, seeds and source revision.</p>",
        );
        let rows: Vec<Vec<(String, &str)>> = report
            .runs
            .iter()
            .map(|run| {
                let seeds: Vec<String> = run.seeds.iter().map(|(name, value)| format!("{name}={value}")).collect();
                let git = match (&run.git_revision, run.git_dirty) {
                    (Some(revision), Some(true)) => format!("{} (dirty)", truncate_revision(revision)),
                    (Some(revision), _) => truncate_revision(revision),
                    (None, _) => "–".into(),
                };
                let mut policy = escape(&run.policy);
                if let Some(identity) = &run.policy_identity {
                    let _ = write!(policy, "<br>{}", escape(identity));
                }
                vec![
                    (escape(&run.path), "code"),
                    (escape(&run.command), ""),
                    (policy, "code"),
                    (escape(run.judge.as_deref().unwrap_or("–")), "code"),
                    (escape(&run.condition), ""),
                    (escape(&seeds.join(", ")), ""),
                    (escape(&git), "rev"),
                    (escape(run.created_at.as_deref().unwrap_or("–")), ""),
                    (format!("{} ({} unscored)", run.n_records, run.n_unscored), "num"),
                ]
            })
            .collect();
        self.table(
            &[
                ("run", false),
                ("command", false),
                ("policy (identity)", false),
                ("judge", false),
                ("condition", false),
                ("seeds", false),
                ("git", false),
                ("created", false),
                ("records", true),
            ],
            &rows,
        );
    }

    fn all_benchmarks(&mut self, report: &Report) {
        self.push("<details><summary>All benchmark means (as in benchmarks.csv)</summary>");
        let rows: Vec<Vec<(String, &str)>> = report
            .benchmarks
            .iter()
            .map(|row| {
                vec![
                    (escape(&cell_name(&row.label, &row.condition)), ""),
                    (escape(&row.benchmark), ""),
                    (escape(&row.category), ""),
                    (number(row.mean, 3), "num"),
                    (interval(row.ci_low, row.ci_high, 3), "num"),
                    (row.n.to_string(), "num"),
                    (row.n_unscored.to_string(), "num"),
                    (percent(row.refusal_rate), "num"),
                ]
            })
            .collect();
        self.table(
            &[
                ("run (policy · condition)", false),
                ("benchmark", false),
                ("category", false),
                ("mean", true),
                ("CI", true),
                ("n", true),
                ("unscored", true),
                ("refusal rate", true),
            ],
            &rows,
        );
        self.push("</details>");
    }
}

fn truncate_revision(revision: &str) -> String {
    revision.chars().take(12).collect()
}

fn significance_mark(row: &ComparisonRow) -> String {
    match (row.significant, row.delta) {
        (true, Some(delta)) if delta > 0.0 => "<span class=\"sig\">▲</span>".into(),
        (true, Some(delta)) if delta < 0.0 => "<span class=\"reg\">▼</span>".into(),
        _ => String::new(),
    }
}

/// Comparison rows grouped by category, then by name, so related benchmarks sit together in figures and tables.
fn sorted_rows(rows: &[ComparisonRow]) -> Vec<&ComparisonRow> {
    let mut sorted: Vec<&ComparisonRow> = rows.iter().collect();
    sorted.sort_by(|x, y| x.category.cmp(&y.category).then(x.benchmark.cmp(&y.benchmark)));
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(number(None, 3), "–");
        assert_eq!(number(Some(0.12345), 3), "0.123");
        assert_eq!(signed(Some(0.1), 2), "+0.10");
        assert_eq!(number(Some(-0.00001), 3), "0.000");
        assert_eq!(signed(Some(-0.00001), 3), "0.000");
        assert_eq!(signed(Some(-0.01), 2), "-0.01");
        assert_eq!(interval(Some(-0.0001), Some(0.5), 2), "[0.00, 0.50]");
        assert_eq!(p_value(Some(0.00001)), "1.0e-5");
        assert_eq!(p_value(Some(0.04)), "0.0400");
        assert_eq!(interval(Some(0.1), Some(0.2), 2), "[0.10, 0.20]");
        assert_eq!(percent(Some(0.125)), "12.5%");
    }

    #[test]
    fn script_counts_chart_figures() {
        assert!(SCRIPT.contains("dataset.rendered = 'ok'"));
        assert!(SCRIPT.contains("svg.chart"));
        assert!(SCRIPT.contains("window.onerror"));
    }
}
