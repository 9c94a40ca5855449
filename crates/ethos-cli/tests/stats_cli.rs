//! `ethos stats`, run as a user would: the built binary on the fixtures of `tests/fixtures/stats` (generated with
//! scipy / statsmodels / numpy by `scripts/gen_stats_fixtures.py`). Deterministic values must agree to 1e-9
//! relative; bootstrap CIs and permutation nulls (which cannot share numpy's random stream) to a Monte Carlo
//! tolerance, and exactly between runs with the same seed whatever the thread count.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stats").join(relative);
    path.to_str().expect("UTF-8 path").to_string()
}

fn expected(relative: &str) -> Value {
    let text = std::fs::read_to_string(fixture(relative)).expect("read expected values");
    serde_json::from_str(&text).expect("expected values are JSON")
}

fn ethos_with_threads(args: &[&str], threads: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .expect("run ethos")
}

fn ethos(args: &[&str]) -> Output {
    ethos_with_threads(args, 2)
}

fn ethos_json(args: &[&str]) -> Value {
    let output = ethos(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ethos {args:?} failed with {:?}: {stderr}", output.status);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("ethos {args:?} printed invalid JSON: {err}"))
}

/// Runs `ethos` expecting failure with exit status 2 (bad input) and returns stderr.
fn ethos_error(args: &[&str]) -> String {
    let output = ethos(args);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(2), "ethos {args:?}: expected exit 2, stderr: {stderr}");
    assert!(output.stdout.is_empty(), "no data on stdout after an error");
    stderr
}

/// `got` equals `want` to 1e-9 relative; both may be null.
fn check(what: &str, got: &Value, want: &Value) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => {
            assert!((g - w).abs() <= 1e-9 * w.abs() + 1e-13, "{what}: got {g:e}, scipy {w:e}");
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

fn check_fields(what: &str, got: &Value, want: &Value, fields: &[&str]) {
    for field in fields {
        check(&format!("{what}.{field}"), &got[field], &want[field]);
    }
}

/// The bootstrap CI brackets the estimate and agrees with numpy's percentile bootstrap (20,000 resamples) to 6%
/// of the interval's width: the Monte Carlo error of a 2.5% quantile with 10,000 resamples is about 1-2%.
fn check_ci(what: &str, low: &Value, high: &Value, reference: &Value) {
    let (low, high) = (low.as_f64().expect("ci_low"), high.as_f64().expect("ci_high"));
    let (ref_low, ref_high) = (reference[0].as_f64().unwrap(), reference[1].as_f64().unwrap());
    let tolerance = 0.06 * (ref_high - ref_low) + 1e-12;
    assert!((low - ref_low).abs() <= tolerance, "{what}: ci_low {low} vs numpy {ref_low}");
    assert!((high - ref_high).abs() <= tolerance, "{what}: ci_high {high} vs numpy {ref_high}");
}

const BENCHMARK_FIELDS: [&str; 14] = [
    "benchmark",
    "n_a",
    "n_b",
    "n_unscored_a",
    "n_unscored_b",
    "mean_a",
    "mean_b",
    "delta",
    "t",
    "df",
    "p",
    "q",
    "significant",
    "unmatched_a",
];
const SUMMARY_FIELDS: [&str; 10] = [
    "n",
    "n_tested",
    "wins",
    "losses",
    "ties",
    "mean_delta",
    "median_delta",
    "sig_improved",
    "sig_regressed",
    "sign_test_p",
];

fn check_comparison(what: &str, got: &Value, want: &Value, check_cis: bool) {
    let got_rows = got["benchmarks"].as_array().expect("benchmarks");
    let want_rows = want["benchmarks"].as_array().expect("benchmarks");
    assert_eq!(got_rows.len(), want_rows.len(), "{what}: number of benchmarks");
    for (got_row, want_row) in got_rows.iter().zip(want_rows) {
        let name = format!("{what}/{}", want_row["benchmark"]);
        let fields: &[&str] =
            if want_row.get("unmatched_a").is_some() { &BENCHMARK_FIELDS } else { &BENCHMARK_FIELDS[..13] };
        check_fields(&name, got_row, want_row, fields);
        if want_row.get("unmatched_b").is_some() {
            assert_eq!(got_row["unmatched_b"], want_row["unmatched_b"], "{name}: unmatched_b");
        }
        if check_cis && !want_row["ci_reference"].is_null() {
            check_ci(&name, &got_row["ci_low"], &got_row["ci_high"], &want_row["ci_reference"]);
        }
    }
    check_fields(&format!("{what} summary"), &got["summary"], &want["summary"], &SUMMARY_FIELDS);
    assert_eq!(got["unmatched_benchmarks"], want["unmatched_benchmarks"], "{what}: unmatched benchmarks");
}

#[test]
fn compare_welch_matches_scipy_statsmodels() {
    let got = ethos_json(&[
        "stats",
        "compare",
        "--a",
        &fixture("compare/A.jsonl"),
        "--b",
        &fixture("compare/B.jsonl"),
        "--json",
    ]);
    check_comparison("welch", &got, &expected("compare/expected_welch.json"), true);
    let zero_variance =
        got["benchmarks"].as_array().unwrap().iter().find(|b| b["benchmark"] == "epsilon_zero_variance_both").unwrap();
    assert!(zero_variance["note"].as_str().unwrap().contains("zero variance"), "{zero_variance}");
}

#[test]
fn compare_paired_matches_scipy_and_lists_unmatched_items() {
    let got = ethos_json(&[
        "stats",
        "compare",
        "--a",
        &fixture("compare/A.jsonl"),
        "--b",
        &fixture("compare/B.jsonl"),
        "--paired",
        "--json",
    ]);
    check_comparison("paired", &got, &expected("compare/expected_paired.json"), true);
}

#[test]
fn compare_500_benchmarks_and_one_benchmark() {
    for design in ["welch", "paired"] {
        let mut args = vec!["stats", "compare", "--bootstrap", "500", "--json"];
        let (a, b) = (fixture("compare500/A.jsonl"), fixture("compare500/B.jsonl"));
        args.extend(["--a", &a, "--b", &b]);
        if design == "paired" {
            args.push("--paired");
        }
        let got = ethos_json(&args);
        check_comparison(design, &got, &expected(&format!("compare500/expected_{design}.json")), false);
    }
    let got = ethos_json(&[
        "stats",
        "compare",
        "--a",
        &fixture("compare_one/A.jsonl"),
        "--b",
        &fixture("compare_one/B.jsonl"),
        "--json",
    ]);
    check_comparison("one", &got, &expected("compare_one/expected_welch.json"), true);
    assert_eq!(got["benchmarks"][0]["p"], got["benchmarks"][0]["q"], "BH of one p-value is itself");
}

#[test]
fn compare_is_reproducible_and_independent_of_threads() {
    let args = [
        "stats",
        "compare",
        "--a",
        &fixture("compare/A.jsonl"),
        "--b",
        &fixture("compare/B.jsonl"),
        "--json",
        "--seed",
        "7",
    ];
    let one = ethos_with_threads(&args, 1);
    let four = ethos_with_threads(&args, 4);
    assert!(one.status.success());
    assert_eq!(one.stdout, four.stdout, "same seed, 1 vs 4 threads");
    let mut other_seed = args.to_vec();
    other_seed[8] = "8";
    assert_ne!(one.stdout, ethos(&other_seed).stdout, "another seed gives other bootstrap CIs");
}

#[test]
fn compare_text_output_is_a_table_with_a_summary() {
    let output = ethos(&[
        "stats",
        "compare",
        "--a",
        &fixture("compare/A.jsonl"),
        "--b",
        &fixture("compare/B.jsonl"),
        "--bootstrap",
        "200",
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("benchmark "), "{stdout}");
    assert!(stdout.contains("9 benchmarks: 7 wins, 2 losses, 0 ties"), "{stdout}");
    assert!(stdout.contains("1 improved, 1 regressed"), "{stdout}");
    assert!(stdout.contains("only in A (not compared): eta_only_in_a"), "{stdout}");
    assert!(stdout.contains("unscored: 3 in A, 2 in B (excluded)"), "{stdout}");
}

fn structure_args<'a>(paths: &'a [String; 3], permutations: &'a str) -> Vec<&'a str> {
    vec![
        "stats",
        "structure",
        "--matrix",
        &paths[0],
        "--orientation",
        &paths[1],
        "--capability",
        &paths[2],
        "--permutations",
        permutations,
        "--json",
    ]
}

fn structure_paths() -> [String; 3] {
    [fixture("structure/M.csv"), fixture("structure/O.csv"), fixture("structure/C.csv")]
}

fn check_structure(what: &str, got: &Value, want: &Value) {
    for field in ["mean_spearman", "pc1_explained", "loo_mean_spearman"] {
        check(&format!("{what}.{field}"), &got[field], &want[field]);
    }
    for (field, want_field) in [
        ("loo_spearman", "loo_spearman"),
        ("eigenvalues", "eigenvalues"),
        ("pc1_loadings", "pc1_loadings"),
        ("pc1_scores", "pc1_scores"),
        ("cluster_order_idx", "leaves"),
    ] {
        let (got_values, want_values) = (got[field].as_array().unwrap(), want[want_field].as_array().unwrap());
        assert_eq!(got_values.len(), want_values.len(), "{what}.{field}");
        for (idx, (g, w)) in got_values.iter().zip(want_values).enumerate() {
            check(&format!("{what}.{field}[{idx}]"), g, w);
        }
    }
    for (row, want_row) in
        got["spearman_matrix"].as_array().unwrap().iter().zip(want["spearman_matrix"].as_array().unwrap())
    {
        for (g, w) in row.as_array().unwrap().iter().zip(want_row.as_array().unwrap()) {
            check(&format!("{what}.spearman_matrix"), g, w);
        }
    }
    for (height, merge) in got["linkage_heights"].as_array().unwrap().iter().zip(want["linkage"].as_array().unwrap()) {
        check(&format!("{what}.linkage_heights"), height, &merge[2]);
    }
}

#[test]
fn structure_matches_numpy_scipy_statsmodels() {
    let paths = structure_paths();
    let got = ethos_json(&structure_args(&paths, "2000"));
    let want = expected("structure/expected.json");
    check_structure("observed", &got, &want["observed"]);
    check_structure("residualized", &got["residualized"], &want["residualized"]);
    assert_eq!(got["evals"], want["evals"]);
    assert_eq!(got["residualized"]["capability_evals"], serde_json::json!(["cap_math", "cap_code"]));
    // Nulls: Monte Carlo agreement with numpy's 2000 (1000 residualized) permutations.
    for (prefix, got, null) in
        [("", &got, &want["null"]), ("residualized ", &got["residualized"], &want["residualized_null"])]
    {
        for (field, reference, tolerance) in [
            ("null_mean_spearman_95", "mean_spearman", 0.005),
            ("null_pc1_explained_95", "pc1_explained", 0.008),
            ("null_loo_95", "loo_mean_spearman", 0.03),
        ] {
            for side in 0..2 {
                let (g, w) = (got[field][side].as_f64().unwrap(), null[reference][side].as_f64().unwrap());
                assert!((g - w).abs() < tolerance, "{prefix}{field}[{side}]: {g} vs numpy {w}");
            }
        }
    }
}

#[test]
fn structure_nulls_are_reproducible_and_independent_of_threads() {
    let paths = structure_paths();
    let args = structure_args(&paths, "300");
    let one = ethos_with_threads(&args, 1);
    let three = ethos_with_threads(&args, 3);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    assert_eq!(one.stdout, three.stdout);
}

#[test]
fn structure_without_orientation_or_permutations_has_null_nulls() {
    let got = ethos_json(&[
        "stats",
        "structure",
        "--matrix",
        &fixture("structure/small.csv"),
        "--permutations",
        "0",
        "--json",
    ]);
    let want = expected("structure/small_expected.json");
    check_structure("small", &got, &want);
    assert!(got["null_mean_spearman_95"].is_null());
    assert!(got.get("residualized").is_none());
}

#[test]
fn persistence_matches_numpy() {
    let got = ethos_json(&[
        "stats",
        "persistence",
        "--a",
        &fixture("persistence/A.jsonl"),
        "--b",
        &fixture("persistence/B.jsonl"),
        "--harmful",
        "harmful_persona",
        "--helpful",
        "helpful_persona",
        "--json",
    ]);
    let want = expected("persistence/expected.json");
    for kind in ["degradation", "steering"] {
        let (got, want) = (&got[kind], &want[kind]);
        check_fields(kind, got, want, &["n_items", "difference", "t", "df", "p"]);
        for model in ["a", "b"] {
            check_fields(&format!("{kind}.{model}"), &got[model], &want[model], &["standard", "persona", "shift"]);
            check_ci(
                &format!("{kind}.{model}"),
                &got[model]["ci_low"],
                &got[model]["ci_high"],
                &want["ci_reference"][model],
            );
        }
        check_ci(kind, &got["difference_ci_low"], &got["difference_ci_high"], &want["ci_reference"]["difference"]);
        for (row, want_row) in
            got["per_benchmark"].as_array().unwrap().iter().zip(want["per_benchmark"].as_array().unwrap())
        {
            check_fields(kind, row, want_row, &["benchmark", "n_items", "shift_a", "shift_b", "difference"]);
        }
        let unmatched: Vec<Value> = got["unmatched"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| serde_json::json!([entry["benchmark"], entry["item"]]))
            .collect();
        assert_eq!(Value::Array(unmatched), want["unmatched"], "{kind}: unmatched items");
    }
}

#[test]
fn refusals_match_numpy_and_scipy() {
    let want = expected("refusals/expected.json");
    for threshold in ["partial", "full"] {
        let got = ethos_json(&[
            "stats",
            "refusals",
            "--a",
            &fixture("refusals/A.jsonl"),
            "--b",
            &fixture("refusals/B.jsonl"),
            "--refused-at",
            threshold,
            "--json",
        ]);
        let want = &want[threshold];
        for (row, want_row) in got["benchmarks"].as_array().unwrap().iter().zip(want["benchmarks"].as_array().unwrap())
        {
            check_fields(
                threshold,
                row,
                want_row,
                &[
                    "benchmark",
                    "n_labeled_a",
                    "refused_a",
                    "rate_a",
                    "unlabeled_a",
                    "n_labeled_b",
                    "refused_b",
                    "rate_b",
                    "unlabeled_b",
                ],
            );
        }
        check_fields(threshold, &got["overall"], &want["overall"], &["rate_a", "rate_b", "mean_rate_a", "mean_rate_b"]);
        check_comparison(threshold, &got["non_refusal"], &want["non_refusal"], true);
    }
}

#[test]
fn malformed_inputs_name_file_line_and_column() {
    let good = fixture("malformed/good.csv");
    for (args, expect) in [
        (vec!["--matrix", &fixture("malformed/ragged.csv")], "ragged.csv:3: row has 2 cells but the header has 3 columns"),
        (vec!["--matrix", &fixture("malformed/non_numeric.csv")], "non_numeric.csv:3: field `b`: `high` is not a number (column 3)"),
        (vec!["--matrix", &fixture("malformed/duplicate_model.csv")], "duplicate_model.csv:4: field `model`: model `m1` already appeared on line 2 (column 1)"),
        (vec!["--matrix", &fixture("malformed/missing_cell.csv")], "missing_cell.csv:3: field `a`: missing value (column 2)"),
        (vec!["--matrix", &fixture("malformed/constant_column.csv")], "constant_column.csv: evaluation `b` has the same score for every model"),
        (vec!["--matrix", &good, "--orientation", &fixture("malformed/bad_orientation.csv")], "bad_orientation.csv:3: field `direction`: unknown direction `sideways` (column 2); expected `higher` or `lower`"),
    ] {
        let mut full = vec!["stats", "structure", "--permutations", "10"];
        full.extend(args);
        let stderr = ethos_error(&full);
        assert!(stderr.contains(expect), "expected `{expect}` in:\n{stderr}");
    }
    for (file, expect) in [
        ("malformed/duplicate_item.jsonl", "duplicate_item.jsonl:3: field `item`: item `1` of benchmark `x` (condition `none`) already appeared on line 1"),
        ("malformed/nan_score.jsonl", "nan_score.jsonl:2: "),
        ("malformed/string_score.jsonl", "string_score.jsonl:1: field `score`: invalid type"),
    ] {
        let path = fixture(file);
        let stderr = ethos_error(&["stats", "compare", "--a", &path, "--b", &fixture("compare/B.jsonl")]);
        assert!(stderr.contains(expect), "expected `{expect}` in:\n{stderr}");
    }
}

#[test]
fn several_conditions_need_a_choice() {
    let path = fixture("persistence/A.jsonl");
    let stderr = ethos_error(&["stats", "compare", "--a", &path, "--b", &path]);
    assert!(stderr.contains("several conditions") && stderr.contains("--condition"), "{stderr}");
    let got = ethos_json(&[
        "stats",
        "compare",
        "--a",
        &path,
        "--b",
        &path,
        "--condition",
        "none",
        "--bootstrap",
        "100",
        "--json",
    ]);
    assert_eq!(got["summary"]["ties"], 3, "A against itself ties on every benchmark");
}

#[test]
fn incomplete_orientation_or_capability_and_bad_flags_are_user_errors() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let orientation = dir.path().join("O.csv");
    std::fs::write(&orientation, "eval,direction\na,higher\n").unwrap();
    let capability = dir.path().join("C.csv");
    std::fs::write(&capability, "model,cap\nm1,1\nm2,2\n").unwrap();
    let good = fixture("malformed/good.csv");
    let stderr =
        ethos_error(&["stats", "structure", "--matrix", &good, "--orientation", orientation.to_str().unwrap()]);
    assert!(stderr.contains("O.csv: no direction for evaluation(s) b"), "{stderr}");
    let stderr = ethos_error(&["stats", "structure", "--matrix", &good, "--capability", capability.to_str().unwrap()]);
    assert!(stderr.contains("C.csv: no row for model(s) m3 of the matrix"), "{stderr}");
    let a = fixture("compare/A.jsonl");
    let stderr = ethos_error(&["stats", "compare", "--a", &a, "--b", &a, "--alpha", "2"]);
    assert!(stderr.contains("2 is not in (0, 1]"), "{stderr}");
    let stderr = ethos_error(&["stats", "compare", "--a", &a, "--b", &a, "--bootstrap", "0"]);
    assert!(stderr.contains("must be at least 1"), "{stderr}");
}
