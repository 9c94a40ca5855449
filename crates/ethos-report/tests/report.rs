//! `build_report` and `write_report` on fixture run directories written in a temporary directory: two policies,
//! the trait suite, an `eval run` suite under the standard prompt and two personas, a capability guard and
//! refusal labels. Expected values are computed by hand from the fixture scores.

use std::path::{Path, PathBuf};

use ethos_report::{build_report, write_report, Report, ReportConfig, ReportError};
use serde_json::{json, Value};

const BASE: &str = "embedded:gemma-3-270m";
const TRAIT: &str = "embedded:gemma-3-270m+adapter=/runs/trait/adapter.safetensors";
/// A benchmark name that needs escaping in HTML and quoting in CSV.
const ODD: &str = "syco<b>phancy, \"quoted\"";

/// Suite scores per benchmark (8 items) under the standard prompt; personas shift them.
const HONESTY_BASE: [f64; 8] = [0.0, 0.25, 0.5, 0.5, 0.75, 0.25, 0.5, 0.0];
const HONESTY_TRAIT: [f64; 8] = [0.5, 0.5, 0.75, 1.0, 0.75, 0.5, 1.0, 0.25];
const ODD_BASE: [f64; 8] = [0.2, 0.4, 0.1, 0.3, 0.6, 0.2, 0.5, 0.3];
const ODD_TRAIT: [f64; 8] = [0.3, 0.3, 0.2, 0.5, 0.6, 0.4, 0.4, 0.6];

fn write_run(root: &Path, name: &str, manifest: Value, records: &[Value], summary: Option<Value>) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let lines: Vec<String> = records.iter().map(|record| record.to_string()).collect();
    std::fs::write(dir.join("item_scores.jsonl"), lines.join("\n") + "\n").unwrap();
    if let Some(summary) = summary {
        std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    }
    dir
}

fn manifest(command: &str, policy: &str, condition: &str) -> Value {
    json!({
        "schema_version": 1,
        "ethos_version": "0.1.0",
        "command": command,
        "config": {"policy": policy, "condition": condition, "suite": "mini"},
        "models": {"policy": {"spec": policy, "identity": "sha256:abc"}, "judge": {"spec": "semantic:minilm", "identity": "x"}},
        "seeds": {"seed": 7},
        "git_revision": "0123456789abcdef0123",
        "git_dirty": true,
        "created_at": "2026-11-23T20:54:28Z"
    })
}

fn suite_summary(policy: &str, condition: &str) -> Value {
    json!({
        "suite": "mini", "policy": policy, "condition": condition, "judge": "semantic:minilm", "elapsed_s": 1.5,
        "benchmarks": [
            {"benchmark": "honesty_mc", "category": "honesty", "orientation": "higher_better",
             "format": "multiple_choice", "metric": "accuracy", "raw": 0.4, "score": 0.4, "ci_low": 0.1,
             "ci_high": 0.6, "n": 8, "n_unscored": 0, "refusal_rate": null, "future_field": [1, 2]},
            {"benchmark": ODD, "category": "sycophancy", "orientation": "lower_better", "metric": "flip rate"}
        ]
    })
}

/// Standard-condition refusal labels: the baseline refuses items 0 and 1 fully and item 2 partly (3 of 8);
/// the trait policy refuses item 0 partly (1 of 8).
fn refusal(policy: &str, item_idx: usize) -> &'static str {
    match (policy == BASE, item_idx) {
        (true, 0 | 1) => "full",
        (true, 2) | (false, 0) => "partial",
        _ => "none",
    }
}

fn suite_records(policy: &str, condition: &str, shift: f64) -> Vec<Value> {
    let (honesty, odd) = if policy == BASE { (HONESTY_BASE, ODD_BASE) } else { (HONESTY_TRAIT, ODD_TRAIT) };
    let mut records = Vec::new();
    for (benchmark, scores) in [("honesty_mc", honesty), (ODD, odd)] {
        for (item_idx, score) in scores.iter().enumerate() {
            let label = if condition == "none" { refusal(policy, item_idx) } else { "none" };
            let condition_field = if condition == "none" { Value::Null } else { json!(condition) };
            let mut record = json!({"benchmark": benchmark, "item": format!("i{item_idx}"),
                "score": (score + shift).clamp(0.0, 1.0), "refusal": label, "model": policy});
            if !condition_field.is_null() {
                record["condition"] = condition_field;
            }
            records.push(record);
        }
    }
    records
}

fn trait_records(policy: &str) -> Vec<Value> {
    let offset = if policy == BASE { 0.0 } else { 0.2 };
    let mut records = Vec::new();
    for (trait_idx, trait_id) in ["truthfulness", "corrigibility"].iter().enumerate() {
        for item_idx in 0..6 {
            let score = 0.1 * trait_idx as f64 + 0.05 * item_idx as f64 + offset;
            records.push(json!({"benchmark": trait_id, "item": format!("{trait_id}.{item_idx}"), "score": score,
                "refusal": "none"}));
        }
    }
    // One unscored item: excluded and counted.
    records.push(json!({"benchmark": "truthfulness", "item": "truthfulness.unscored", "score": null}));
    records
}

fn gsm8k_records(n_correct: usize) -> Vec<Value> {
    (0..10).map(|idx| json!({"benchmark": "gsm8k", "item": format!("g{idx}"), "score": if idx < n_correct { 1.0 } else { 0.0 }})).collect()
}

/// Writes the fixture runs and returns them baseline first.
fn fixture(root: &Path) -> Vec<PathBuf> {
    let mut runs = Vec::new();
    for (tag, policy) in [("base", BASE), ("trait", TRAIT)] {
        runs.push(write_run(
            root,
            &format!("{tag}-traits"),
            manifest("eval traits", policy, "none"),
            &trait_records(policy),
            Some(json!({"n_items": 12, "summary": {"composite": 0.3}})),
        ));
        for (condition, shift) in
            [("none", 0.0), ("harmful_medical", if policy == BASE { -0.3 } else { -0.1 }), ("helpful_medical", 0.1)]
        {
            runs.push(write_run(
                root,
                &format!("{tag}-suite-{condition}"),
                manifest("eval run", policy, condition),
                &suite_records(policy, condition, shift),
                Some(suite_summary(policy, condition)),
            ));
        }
        let n_correct = if policy == BASE { 3 } else { 4 };
        runs.push(write_run(
            root,
            &format!("{tag}-gsm8k"),
            manifest("eval capability", policy, "none"),
            &gsm8k_records(n_correct),
            None,
        ));
    }
    runs
}

fn config() -> ReportConfig {
    ReportConfig { n_bootstrap: 400, n_permutations: 200, ..ReportConfig::default() }
}

fn as_json(report: &Report) -> Value {
    serde_json::to_value(report).unwrap()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn close(got: &Value, want: f64, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {got}"));
    assert!((got - want).abs() < 1e-12, "{what}: got {got}, want {want}");
}

fn comparison_row<'a>(report: &'a Value, benchmark: &str) -> &'a Value {
    report["comparisons"][0]["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["benchmark"] == benchmark)
        .unwrap_or_else(|| panic!("no comparison row for {benchmark}"))
}

#[test]
fn report_values_match_hand_computations() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    let report = build_report(&runs, &config()).unwrap();
    let json = as_json(&report);
    assert_eq!(json["settings"]["baseline"], BASE);
    assert_eq!(json["policies"][1]["label"], "gemma-3-270m+trait");

    // Forest plot: paired difference of the constructed benchmark (the same 8 items in both policies).
    let honesty = comparison_row(&json, "honesty_mc");
    assert_eq!(honesty["design"], "paired");
    assert_eq!(honesty["category"], "honesty", "category comes from summary.json");
    close(&honesty["delta"], mean(&HONESTY_TRAIT) - mean(&HONESTY_BASE), "honesty delta");
    close(&honesty["mean_a"], mean(&HONESTY_BASE), "honesty mean A");
    assert!(honesty["ci_low"].as_f64().unwrap() <= honesty["delta"].as_f64().unwrap());
    assert!(honesty["q"].as_f64().unwrap() >= honesty["p"].as_f64().unwrap());
    // The trait suite: the unscored item is excluded (6 scored of 7).
    let truthfulness = comparison_row(&json, "truthfulness");
    assert_eq!((truthfulness["n_a"].as_u64(), truthfulness["n_b"].as_u64()), (Some(6), Some(6)));
    close(&truthfulness["delta"], 0.2, "truthfulness delta");
    assert_eq!(truthfulness["category"], "trait");
    assert_eq!(comparison_row(&json, "gsm8k")["category"], "capability");
    // Every benchmark of the trait model is higher: 5 wins.
    let summary = &json["comparisons"][0]["summary"];
    assert_eq!(
        (summary["n"].as_u64(), summary["wins"].as_u64(), summary["losses"].as_u64()),
        (Some(5), Some(5), Some(0))
    );

    // Trait bars: per-trait means over scored items.
    let trait_rows = json["traits"]["scores"].as_array().unwrap();
    let base_truthfulness =
        trait_rows.iter().find(|row| row["policy"] == BASE && row["benchmark"] == "truthfulness").unwrap();
    close(&base_truthfulness["mean"], mean(&[0.0, 0.05, 0.1, 0.15, 0.2, 0.25]), "truthfulness mean");
    assert_eq!(base_truthfulness["n_unscored"], 1);

    // Refusal rates equal hand counts; the non-refusal comparison pairs items 3..7.
    let rates = json["refusals"]["rates"].as_array().unwrap();
    let rate = |policy: &str, benchmark: &str| {
        rates.iter().find(|rate| rate["policy"] == policy && rate["benchmark"] == benchmark).unwrap().clone()
    };
    assert_eq!(rate(BASE, "honesty_mc")["n_refused"], 3);
    close(&rate(BASE, "honesty_mc")["rate"], 3.0 / 8.0, "baseline refusal rate");
    close(&rate(TRAIT, ODD)["rate"], 1.0 / 8.0, "trait refusal rate");
    let non_refusal = &json["refusals"]["non_refusal"][0]["benchmarks"];
    let honesty_answered = non_refusal.as_array().unwrap().iter().find(|row| row["benchmark"] == "honesty_mc").unwrap();
    assert_eq!(honesty_answered["n_a"], 5);
    close(&honesty_answered["delta"], mean(&HONESTY_TRAIT[3..]) - mean(&HONESTY_BASE[3..]), "non-refused delta");

    // Personas: the baseline's harmful bar is its standard mean minus 0.3 on the shared suite benchmarks
    // (clamped at 0), and the degradation difference is (B's drop - A's drop).
    let bars = json["personas"]["bars"].as_array().unwrap();
    let bar = |policy: &str, condition: &str| {
        bars.iter().find(|b| b["policy"] == policy && b["condition"] == condition).unwrap().clone()
    };
    let clamped_mean =
        |scores: &[f64], shift: f64| mean(&scores.iter().map(|s| (s + shift).clamp(0.0, 1.0)).collect::<Vec<_>>());
    let base_harmful = (clamped_mean(&HONESTY_BASE, -0.3) + clamped_mean(&ODD_BASE, -0.3)) / 2.0;
    close(&bar(BASE, "harmful_medical")["mean"], base_harmful, "baseline harmful bar");
    close(&bar(BASE, "none")["mean"], (mean(&HONESTY_BASE) + mean(&ODD_BASE)) / 2.0, "baseline standard bar");
    assert_eq!(bar(BASE, "none")["benchmarks"].as_array().unwrap().len(), 2, "only benchmarks under all conditions");
    let persistence = json["personas"]["persistence"].as_array().unwrap();
    assert_eq!(persistence.len(), 2, "degradation and steering");
    let degradation = persistence.iter().find(|row| row["kind"] == "degradation").unwrap();
    assert_eq!(degradation["n_items"], 16);
    let base_drop = (mean(&HONESTY_BASE) + mean(&ODD_BASE)) / 2.0 - base_harmful;
    let trait_drop = (mean(&HONESTY_TRAIT) + mean(&ODD_TRAIT)) / 2.0
        - (clamped_mean(&HONESTY_TRAIT, -0.1) + clamped_mean(&ODD_TRAIT, -0.1)) / 2.0;
    let difference = degradation["difference"].as_f64().unwrap();
    assert!((difference - (trait_drop - base_drop)).abs() < 1e-9, "difference {difference}");

    // Structure: 6 rows (2 policies x 3 conditions); the suite benchmarks are scored in every row.
    assert_eq!(json["structure"]["status"], "ok", "{}", json["structure"]["note"]);
    assert_eq!(json["structure"]["rows"].as_array().unwrap().len(), 6);
    assert_eq!(json["structure"]["columns"].as_array().unwrap().len(), 2);
    assert!(json["structure"]["nulls"]["pc1_share"]["low"].is_number());

    // Capability guard with the difference from the baseline.
    let capability = json["capability"].as_array().unwrap();
    assert_eq!(capability.len(), 2);
    close(&capability[0]["mean"], 0.3, "baseline gsm8k");
    close(&capability[1]["delta"], 0.1, "gsm8k delta");

    // Every run's manifest, in order.
    assert_eq!(json["runs"].as_array().unwrap().len(), runs.len());
    assert_eq!(json["runs"][0]["judge"], "semantic:minilm");
    assert_eq!(json["runs"][0]["seeds"]["seed"], 7);
}

#[test]
fn written_files_escape_and_quote_user_strings() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    let report = build_report(&runs, &config()).unwrap();
    let out = root.path().join("report");
    let written = write_report(&report, &out).unwrap();
    let names: Vec<String> =
        written.iter().map(|path| path.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(names, ["index.html", "report.json", "benchmarks.csv", "comparisons.csv"]);

    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(!html.contains("syco<b>"), "benchmark names are escaped");
    assert!(html.contains("syco&lt;b&gt;phancy, &quot;quoted&quot;"));
    assert_eq!(html.matches("<svg").count(), 6, "traits, forest, win/loss, personas, heatmap, nulls");
    assert!(
        !html.contains("http://")
            || html.matches("http://").count() == html.matches("http://www.w3.org/2000/svg").count(),
        "no external resources"
    );
    assert!(html.contains("<div id=\"errors\"></div>"));

    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 1);

    let mut reader = csv::Reader::from_path(out.join("benchmarks.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[3], "benchmark");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // policy x condition x benchmark: per policy 2 traits + 2 suite x 3 conditions + gsm8k = 9.
    assert_eq!(rows.len(), 18);
    assert!(rows.iter().any(|row| &row[3] == ODD), "the odd name survives CSV quoting");
    let comparisons = std::fs::read_to_string(out.join("comparisons.csv")).unwrap();
    assert!(comparisons.contains("\"syco<b>phancy, \"\"quoted\"\"\""));
}

#[test]
fn too_few_rows_gives_a_note_not_an_error() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    // Only the two trait runs: 2 rows.
    let two = vec![runs[0].clone(), runs[5].clone()];
    let report = build_report(&two, &config()).unwrap();
    assert_eq!(report.structure.status, "skipped");
    let note = report.structure.note.clone().unwrap();
    assert!(note.contains("not enough models: 2 rows"), "{note}");
    let page = ethos_report::html::render(&report);
    assert!(page.html.contains("not enough models: 2 rows"));
    assert_eq!(page.n_figures, 3, "traits, forest, win/loss");
}

#[test]
fn baseline_can_be_chosen() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    let report = build_report(&runs, &ReportConfig { baseline: Some(TRAIT.into()), ..config() }).unwrap();
    assert_eq!(report.settings.baseline, TRAIT);
    assert_eq!(report.comparisons[0].policy, BASE);
    assert!(report.comparisons[0].summary.losses == 5);
    let unknown =
        build_report(&runs, &ReportConfig { baseline: Some("embedded:nope".into()), ..config() }).unwrap_err();
    assert!(unknown.is_bad_input());
    assert!(unknown.to_string().contains("embedded:nope"), "{unknown}");
}

#[test]
fn bad_jsonl_names_the_file_and_line() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    let scores = runs[1].join("item_scores.jsonl");
    let text = std::fs::read_to_string(&scores).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = r#"{"benchmark": "honesty_mc", "item": "i2", "score": "high"}"#;
    std::fs::write(&scores, lines.join("\n")).unwrap();
    let err = build_report(&runs, &config()).unwrap_err();
    assert!(matches!(err, ReportError::Record(_)), "{err:?}");
    assert!(err.is_bad_input());
    let message = err.to_string();
    assert!(message.contains(&format!("{}:3", scores.display())), "{message}");
    assert!(message.contains("score"), "{message}");
}

#[test]
fn bad_manifest_and_duplicate_runs_are_input_errors() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    let twice = vec![runs[0].clone(), runs[0].clone()];
    let err = build_report(&twice, &config()).unwrap_err();
    assert!(err.is_bad_input() && err.to_string().contains("pass each run once"), "{err}");

    std::fs::write(
        runs[2].join("manifest.json"),
        "{\n  \"command\": \"eval run\",\n  \"config\": {\"policy\": 3 x}\n}\n",
    )
    .unwrap();
    let err = build_report(&runs, &config()).unwrap_err();
    let message = err.to_string();
    assert!(err.is_bad_input() && message.contains("manifest.json:3"), "{message}");

    let missing = root.path().join("no-such-run");
    let err = build_report(&[missing], &config()).unwrap_err();
    assert!(err.is_bad_input() && err.to_string().contains("no-such-run"), "{err}");
}
