//! `ethos stats structure`: shared structure of a models x evaluations matrix.
//!
//! Inputs: `M.csv` with header `model,<eval>...` and one row per model (every cell a number); `O.csv` with
//! header `eval,direction`, direction `higher` or `lower`, one row per evaluation of M (without `--orientation`
//! every evaluation is higher-is-better); `C.csv` with header `model,<capability eval>...` and a row for every
//! model of M (capability columns are higher-is-better).
//!
//! JSON output: `{"models", "evals", "n_permutations", "seed", "mean_spearman", "null_mean_spearman_95": [lo, hi],
//! "pc1_explained", "null_pc1_explained_95", "loo_mean_spearman", "null_loo_95", "p_mean_spearman",
//! "p_pc1_explained", "p_loo", "null_mean": {..}, "spearman_matrix", "cluster_order", "cluster_order_idx",
//! "linkage": [[left, right, height, size]], "linkage_heights", "eigenvalues", "explained", "pc1_loadings",
//! "pc1_scores", "loo_spearman", "null_samples"? , "residualized"?: {the same keys, "capability_evals"}}`.
//! Null fields are null with `--permutations 0`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ethos_core::io::CsvTable;
use ethos_core::{RecordError, RecordErrorKind};
use ethos_stats::structure::{
    analyze_structure, Direction, EvalColumn, EvalMatrix, NullDistribution, StructureConfig, StructureReport,
};
use ethos_stats::StatsErrorKind;
use serde::Serialize;

use crate::printer::Printer;

/// Arguments of `ethos stats structure`.
#[derive(Debug, clap::Args)]
pub struct StructureArgs {
    /// Models x evaluations CSV: header `model,<eval>...`, one row per model, every cell a number.
    #[arg(long, value_name = "M.csv")]
    matrix: PathBuf,
    /// Orientation CSV: header `eval,direction`, direction `higher` or `lower`, one row per evaluation of M.
    /// Default: every evaluation is higher-is-better.
    #[arg(long, value_name = "O.csv")]
    orientation: Option<PathBuf>,
    /// Capability CSV: header `model,<capability eval>...`, a row for every model of M. Adds the
    /// `residualized` analysis (each column regressed on the mean capability z-score).
    #[arg(long, value_name = "C.csv")]
    capability: Option<PathBuf>,
    /// Permutations of the nulls (each column shuffled independently across models); 0 skips the nulls.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    permutations: usize,
    /// Seed of the permutations (results do not depend on the thread count).
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Also emit every null value (`null_samples`), for histograms.
    #[arg(long)]
    null_samples: bool,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct NullSamplesJson {
    mean_spearman: Vec<f64>,
    pc1_explained: Vec<f64>,
    loo_mean_spearman: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct NullMeansJson {
    mean_spearman: f64,
    pc1_explained: f64,
    loo_mean_spearman: f64,
}

#[derive(Debug, Serialize)]
struct AnalysisJson {
    mean_spearman: f64,
    null_mean_spearman_95: Option<[f64; 2]>,
    pc1_explained: f64,
    null_pc1_explained_95: Option<[f64; 2]>,
    loo_mean_spearman: f64,
    null_loo_95: Option<[f64; 2]>,
    p_mean_spearman: Option<f64>,
    p_pc1_explained: Option<f64>,
    p_loo: Option<f64>,
    null_mean: Option<NullMeansJson>,
    spearman_matrix: Vec<Vec<f64>>,
    cluster_order: Vec<String>,
    cluster_order_idx: Vec<usize>,
    linkage: Vec<(usize, usize, f64, usize)>,
    linkage_heights: Vec<f64>,
    eigenvalues: Vec<f64>,
    explained: Vec<f64>,
    pc1_loadings: Vec<f64>,
    pc1_scores: Vec<f64>,
    loo_spearman: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    null_samples: Option<NullSamplesJson>,
}

#[derive(Debug, Serialize)]
struct ResidualizedJson {
    capability_evals: Vec<String>,
    #[serde(flatten)]
    analysis: AnalysisJson,
}

#[derive(Debug, Serialize)]
struct StructureJson {
    models: Vec<String>,
    evals: Vec<String>,
    n_permutations: usize,
    seed: u64,
    #[serde(flatten)]
    analysis: AnalysisJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    residualized: Option<ResidualizedJson>,
}

/// Runs the analysis and prints it.
pub fn run(args: StructureArgs, printer: &Printer) -> anyhow::Result<()> {
    let table = CsvTable::read(&args.matrix)?;
    let (models, mut columns) = read_model_table(&table, "evaluation")?;
    if let Some(path) = &args.orientation {
        apply_orientation(path, &mut columns)?;
    }
    let matrix = EvalMatrix::new(models.clone(), columns).map_err(|err| as_record_error(&args.matrix, err))?;
    let config = StructureConfig { n_permutations: args.permutations, seed: args.seed };
    printer.status(format!(
        "structure of {} models x {} evaluations, {} permutations",
        models.len(),
        matrix.evals().len(),
        args.permutations
    ));
    let report = analyze_structure(&matrix, &config).map_err(|err| as_record_error(&args.matrix, err))?;
    let analysis = analysis_json(&matrix, &report, args.null_samples);
    let residualized = match &args.capability {
        None => None,
        Some(path) => {
            let capability_table = CsvTable::read(path)?;
            let capability = capability_columns(&capability_table, &models)?;
            let capability_evals = capability.iter().map(|column| column.name.clone()).collect();
            let residual_matrix = matrix.residualize(&capability).map_err(|err| as_record_error(path, err))?;
            let residual_report =
                analyze_structure(&residual_matrix, &config).map_err(|err| as_record_error(path, err))?;
            Some(ResidualizedJson {
                capability_evals,
                analysis: analysis_json(&residual_matrix, &residual_report, args.null_samples),
            })
        }
    };
    let output = StructureJson {
        models,
        evals: matrix.evals().to_vec(),
        n_permutations: args.permutations,
        seed: args.seed,
        analysis,
        residualized,
    };
    if args.json {
        return printer.json(&output);
    }
    print_summary(&output, printer);
    Ok(())
}

/// Reads `model,<column>...`: unique non-empty model names, every cell a number. Errors name line and column.
fn read_model_table(table: &CsvTable, what: &str) -> Result<(Vec<String>, Vec<EvalColumn>), RecordError> {
    if table.header.first().map(String::as_str) != Some("model") {
        return Err(RecordError::at_line(
            RecordErrorKind::MissingField,
            &table.path,
            1,
            Some("model".into()),
            format!(
                "the first column of the header must be `model`, found `{}`",
                table.header.first().map_or("", String::as_str)
            ),
        ));
    }
    let mut seen_columns: HashMap<&str, usize> = HashMap::new();
    for (column_idx, name) in table.header.iter().enumerate().skip(1) {
        if name.is_empty() {
            return Err(RecordError::at_line(
                RecordErrorKind::InvalidValue,
                &table.path,
                1,
                None,
                format!("{what} name in column {} is empty", column_idx + 1),
            ));
        }
        if let Some(first) = seen_columns.insert(name, column_idx) {
            return Err(RecordError::at_line(
                RecordErrorKind::Duplicate,
                &table.path,
                1,
                Some(name.clone()),
                format!("{what} `{name}` appears in columns {} and {}", first + 1, column_idx + 1),
            ));
        }
    }
    if table.rows.is_empty() {
        return Err(RecordError::in_file(RecordErrorKind::Empty, &table.path, "no model rows after the header"));
    }
    let mut models: Vec<String> = Vec::with_capacity(table.rows.len());
    let mut model_lines: HashMap<String, u64> = HashMap::new();
    let mut values = vec![Vec::with_capacity(table.rows.len()); table.header.len() - 1];
    for (row_idx, (line, cells)) in table.rows.iter().enumerate() {
        let model = cells[0].trim().to_string();
        if model.is_empty() {
            return Err(RecordError::at_line(
                RecordErrorKind::InvalidValue,
                &table.path,
                *line,
                Some("model".into()),
                "model name is empty (column 1)",
            ));
        }
        if let Some(first_line) = model_lines.insert(model.clone(), *line) {
            return Err(RecordError::at_line(
                RecordErrorKind::Duplicate,
                &table.path,
                *line,
                Some("model".into()),
                format!("model `{model}` already appeared on line {first_line} (column 1)"),
            ));
        }
        for column_idx in 1..table.header.len() {
            let value = table.parse_f64(row_idx, column_idx)?.ok_or_else(|| {
                RecordError::at_line(
                    RecordErrorKind::InvalidValue,
                    &table.path,
                    *line,
                    Some(table.header[column_idx].clone()),
                    format!(
                        "missing value (column {}); the structure analysis needs a complete matrix",
                        column_idx + 1
                    ),
                )
            })?;
            if !value.is_finite() {
                return Err(RecordError::at_line(
                    RecordErrorKind::InvalidValue,
                    &table.path,
                    *line,
                    Some(table.header[column_idx].clone()),
                    format!("`{value}` is not a finite number (column {})", column_idx + 1),
                ));
            }
            values[column_idx - 1].push(value);
        }
        models.push(model);
    }
    let columns = table.header[1..]
        .iter()
        .zip(values)
        .map(|(name, values)| EvalColumn { name: name.clone(), direction: Direction::Higher, values })
        .collect();
    Ok((models, columns))
}

/// Sets each column's direction from `eval,direction` rows; every evaluation of M must have exactly one row.
fn apply_orientation(path: &Path, columns: &mut [EvalColumn]) -> Result<(), RecordError> {
    let table = CsvTable::read(path)?;
    let eval_idx = table.column("eval")?;
    let direction_idx = table.column("direction")?;
    let mut lines: HashMap<String, u64> = HashMap::new();
    for (line, cells) in &table.rows {
        let eval = cells[eval_idx].trim();
        let direction = match cells[direction_idx].trim().to_ascii_lowercase().as_str() {
            "higher" => Direction::Higher,
            "lower" => Direction::Lower,
            other => {
                return Err(RecordError::at_line(
                    RecordErrorKind::InvalidValue,
                    path,
                    *line,
                    Some("direction".into()),
                    format!("unknown direction `{other}` (column {}); expected `higher` or `lower`", direction_idx + 1),
                ))
            }
        };
        if let Some(first_line) = lines.insert(eval.to_string(), *line) {
            return Err(RecordError::at_line(
                RecordErrorKind::Duplicate,
                path,
                *line,
                Some("eval".into()),
                format!("evaluation `{eval}` already appeared on line {first_line} (column {})", eval_idx + 1),
            ));
        }
        let Some(column) = columns.iter_mut().find(|column| column.name == eval) else {
            return Err(RecordError::at_line(
                RecordErrorKind::InvalidValue,
                path,
                *line,
                Some("eval".into()),
                format!("evaluation `{eval}` (column {}) is not a column of the matrix", eval_idx + 1),
            ));
        };
        column.direction = direction;
    }
    let missing: Vec<&str> =
        columns.iter().filter(|column| !lines.contains_key(&column.name)).map(|column| column.name.as_str()).collect();
    if !missing.is_empty() {
        return Err(RecordError::in_file(
            RecordErrorKind::MissingField,
            path,
            format!("no direction for evaluation(s) {}", missing.join(", ")),
        ));
    }
    Ok(())
}

/// Capability columns reordered to the models of M; every model of M must have a row and no other row exists.
fn capability_columns(table: &CsvTable, models: &[String]) -> Result<Vec<EvalColumn>, RecordError> {
    let (capability_models, columns) = read_model_table(table, "capability evaluation")?;
    let positions: HashMap<&str, usize> =
        capability_models.iter().enumerate().map(|(idx, model)| (model.as_str(), idx)).collect();
    let missing: Vec<&str> =
        models.iter().filter(|m| !positions.contains_key(m.as_str())).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(RecordError::in_file(
            RecordErrorKind::MissingField,
            &table.path,
            format!("no row for model(s) {} of the matrix", missing.join(", ")),
        ));
    }
    if let Some((row_idx, extra)) =
        capability_models.iter().enumerate().find(|(_, model)| !models.iter().any(|m| m == *model))
    {
        return Err(RecordError::at_line(
            RecordErrorKind::InvalidValue,
            &table.path,
            table.rows[row_idx].0,
            Some("model".into()),
            format!("model `{extra}` (column 1) is not a row of the matrix"),
        ));
    }
    Ok(columns
        .into_iter()
        .map(|column| EvalColumn {
            values: models.iter().map(|model| column.values[positions[model.as_str()]]).collect(),
            ..column
        })
        .collect())
}

/// Turns an error about the data of a file into a record error of that file, so the exit status says "bad input".
fn as_record_error(path: &Path, err: ethos_stats::StatsError) -> anyhow::Error {
    match err.kind() {
        StatsErrorKind::NoConvergence => anyhow::Error::new(err),
        _ => anyhow::Error::new(RecordError::in_file(RecordErrorKind::InvalidValue, path, err.message())),
    }
}

fn interval(null: Option<&NullDistribution>) -> Option<[f64; 2]> {
    null.map(|null| [null.low, null.high])
}

fn analysis_json(matrix: &EvalMatrix, report: &StructureReport, with_samples: bool) -> AnalysisJson {
    let nulls = report.nulls.as_ref();
    let order = report.linkage.leaf_order().to_vec();
    AnalysisJson {
        mean_spearman: report.statistics.mean_spearman,
        null_mean_spearman_95: interval(nulls.map(|n| &n.mean_spearman)),
        pc1_explained: report.statistics.pc1_explained,
        null_pc1_explained_95: interval(nulls.map(|n| &n.pc1_explained)),
        loo_mean_spearman: report.statistics.loo_mean_spearman,
        null_loo_95: interval(nulls.map(|n| &n.loo_mean_spearman)),
        p_mean_spearman: nulls.map(|n| n.mean_spearman.p_value),
        p_pc1_explained: nulls.map(|n| n.pc1_explained.p_value),
        p_loo: nulls.map(|n| n.loo_mean_spearman.p_value),
        null_mean: nulls.map(|n| NullMeansJson {
            mean_spearman: n.mean_spearman.mean,
            pc1_explained: n.pc1_explained.mean,
            loo_mean_spearman: n.loo_mean_spearman.mean,
        }),
        spearman_matrix: report.spearman_matrix.clone(),
        cluster_order: order.iter().map(|&idx| matrix.evals()[idx].clone()).collect(),
        cluster_order_idx: order,
        linkage: report.linkage.merges().iter().map(|m| (m.left, m.right, m.height, m.size)).collect(),
        linkage_heights: report.linkage.merges().iter().map(|m| m.height).collect(),
        eigenvalues: report.pca.eigenvalues().to_vec(),
        explained: report.pca.explained().to_vec(),
        pc1_loadings: report.pca.pc1_loadings().to_vec(),
        pc1_scores: report.pca.pc1_scores().to_vec(),
        loo_spearman: report.loo_spearman.clone(),
        null_samples: nulls.filter(|_| with_samples).map(|nulls| NullSamplesJson {
            mean_spearman: nulls.mean_spearman.samples.clone(),
            pc1_explained: nulls.pc1_explained.samples.clone(),
            loo_mean_spearman: nulls.loo_mean_spearman.samples.clone(),
        }),
    }
}

fn print_summary(output: &StructureJson, printer: &Printer) {
    printer.data(format!("{} models x {} evaluations", output.models.len(), output.evals.len()));
    print_analysis(&output.analysis, output.n_permutations, printer);
    if let Some(residualized) = &output.residualized {
        printer.data("");
        printer.data(format!("after capability residualization on {}:", residualized.capability_evals.join(", ")));
        print_analysis(&residualized.analysis, output.n_permutations, printer);
    }
}

fn print_analysis(analysis: &AnalysisJson, n_permutations: usize, printer: &Printer) {
    let null = |interval: Option<[f64; 2]>, p: Option<f64>| match (interval, p) {
        (Some([low, high]), Some(p)) => {
            format!("  (null 95% [{low:.4}, {high:.4}], permutation p = {p:.4}, {n_permutations} permutations)")
        }
        _ => String::new(),
    };
    printer.data(format!(
        "mean pairwise Spearman  {:.4}{}",
        analysis.mean_spearman,
        null(analysis.null_mean_spearman_95, analysis.p_mean_spearman)
    ));
    printer.data(format!(
        "PC1 share of variance   {:.4}{}",
        analysis.pc1_explained,
        null(analysis.null_pc1_explained_95, analysis.p_pc1_explained)
    ));
    printer.data(format!(
        "leave-one-out Spearman  {:.4}{}",
        analysis.loo_mean_spearman,
        null(analysis.null_loo_95, analysis.p_loo)
    ));
    printer.data(format!("cluster order: {}", analysis.cluster_order.join(", ")));
}
