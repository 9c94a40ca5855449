//! Writing the report directory: `index.html`, `report.json`, `benchmarks.csv` and `comparisons.csv`, each
//! atomically (a temporary file renamed over the target), so a reader never sees a half-written file.
//!
//! `benchmarks.csv`: one row per policy x condition x benchmark: `policy, label, condition, benchmark, category,
//! metric, mean, ci_low, ci_high, n, n_unscored, refusal_rate`.
//! `comparisons.csv`: one row per compared benchmark: `analysis` (`all_items` or `non_refused`), `baseline`,
//! `policy`, `condition`, `benchmark`, `category`, `design`, `n_a`, `n_b`, `mean_a`, `mean_b`, `delta`,
//! `ci_low`, `ci_high`, `p`, `q`, `significant`. Undefined numbers are empty cells.

use std::path::{Path, PathBuf};

use ethos_core::io::write_atomic;

use crate::analysis::{PolicyComparison, Report};
use crate::html::render;
use crate::ReportError;

/// Writes the report files into `out` (created if missing) and returns their paths, the page first.
pub fn write_report(report: &Report, out: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(out).map_err(|source| ReportError::Write { path: out.to_path_buf(), source })?;
    let page = render(report);
    let json = serde_json::to_vec_pretty(report)
        .map_err(|err| ReportError::Write { path: out.join("report.json"), source: std::io::Error::other(err) })?;
    let files: [(&str, Vec<u8>); 4] = [
        ("index.html", page.html.into_bytes()),
        ("report.json", json),
        ("benchmarks.csv", benchmarks_csv(report).map_err(csv_error(out, "benchmarks.csv"))?),
        ("comparisons.csv", comparisons_csv(report).map_err(csv_error(out, "comparisons.csv"))?),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let path = out.join(name);
        write_atomic(&path, |writer| writer.write_all(&bytes))
            .map_err(|source| ReportError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

fn csv_error(out: &Path, name: &str) -> impl FnOnce(csv::Error) -> ReportError {
    let path = out.join(name);
    move |err| ReportError::Write { path, source: std::io::Error::other(err) }
}

/// A number as a CSV cell: full precision, empty when undefined.
fn cell(value: Option<f64>) -> String {
    value.filter(|value| value.is_finite()).map(|value| value.to_string()).unwrap_or_default()
}

/// The `benchmarks.csv` table.
pub fn benchmarks_csv(report: &Report) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "policy",
        "label",
        "condition",
        "benchmark",
        "category",
        "metric",
        "mean",
        "ci_low",
        "ci_high",
        "n",
        "n_unscored",
        "refusal_rate",
    ])?;
    for row in &report.benchmarks {
        writer.write_record([
            row.policy.clone(),
            row.label.clone(),
            row.condition.clone(),
            row.benchmark.clone(),
            row.category.clone(),
            row.metric.clone().unwrap_or_default(),
            cell(row.mean),
            cell(row.ci_low),
            cell(row.ci_high),
            row.n.to_string(),
            row.n_unscored.to_string(),
            cell(row.refusal_rate),
        ])?;
    }
    writer.into_inner().map_err(|err| csv::Error::from(err.into_error()))
}

/// The `comparisons.csv` table: the comparisons on all items, then those on non-refused items.
pub fn comparisons_csv(report: &Report) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "analysis",
        "baseline",
        "policy",
        "condition",
        "benchmark",
        "category",
        "design",
        "n_a",
        "n_b",
        "mean_a",
        "mean_b",
        "delta",
        "ci_low",
        "ci_high",
        "p",
        "q",
        "significant",
    ])?;
    let analyses: [(&str, &[PolicyComparison]); 2] =
        [("all_items", &report.comparisons), ("non_refused", &report.refusals.non_refusal)];
    for (analysis, comparisons) in analyses {
        for comparison in comparisons {
            for row in &comparison.benchmarks {
                writer.write_record([
                    analysis.to_string(),
                    comparison.baseline.clone(),
                    comparison.policy.clone(),
                    comparison.condition.clone(),
                    row.benchmark.clone(),
                    row.category.clone(),
                    row.design.to_string(),
                    row.n_a.to_string(),
                    row.n_b.to_string(),
                    cell(row.mean_a),
                    cell(row.mean_b),
                    cell(row.delta),
                    cell(row.ci_low),
                    cell(row.ci_high),
                    cell(row.p),
                    cell(row.q),
                    row.significant.to_string(),
                ])?;
            }
        }
    }
    writer.into_inner().map_err(|err| csv::Error::from(err.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_when_needed() {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(["plain", "with,comma", "with \"quote\"", "line\nbreak"]).unwrap();
        let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        assert_eq!(text, "plain,\"with,comma\",\"with \"\"quote\"\"\",\"line\nbreak\"\n");
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[1], "with,comma");
        assert_eq!(&record[2], "with \"quote\"");
    }

    #[test]
    fn undefined_numbers_are_empty_cells() {
        assert_eq!(cell(None), "");
        assert_eq!(cell(Some(f64::NAN)), "");
        assert_eq!(cell(Some(0.25)), "0.25");
    }
}
