//! `ethos data export|validate|stats`, run as a user would, on the built-in bank and on real files.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

fn ethos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ethos")).args(args).env_remove("RUST_LOG").output().expect("run ethos")
}

fn ethos_ok(args: &[&str]) -> String {
    let output = ethos(args);
    assert!(output.status.success(), "ethos {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("output written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn stats_show_every_cell_filled() {
    let stats: serde_json::Value = serde_json::from_str(&ethos_ok(&["data", "stats", "--json"])).expect("JSON");
    assert!(stats["scenarios"].as_u64().expect("count") >= 540, "{}", stats["scenarios"]);
    assert!(stats["min_cell"].as_u64().expect("min") >= 3);
    assert!(stats["near_duplicate_rate"].as_f64().expect("rate") <= 0.01);
    let table = ethos_ok(&["data", "stats"]);
    assert!(table.contains("near-duplicates"), "{table}");
    assert_eq!(table.lines().filter(|l| l.starts_with("truthfulness ")).count(), 1, "{table}");
}

#[test]
fn export_filters_by_split_and_domain_tags_and_round_trips_through_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let heldout = dir.path().join("heldout.jsonl");
    ethos_ok(&["data", "export", "--split", "heldout", "--out", heldout.to_str().expect("utf8")]);
    let records = read_lines(&heldout);
    let traits: HashSet<&str> = records.iter().map(|r| r["trait"].as_str().expect("trait")).collect();
    assert_eq!(traits.len(), 7, "{traits:?}");
    assert!(records.iter().all(|r| r["split"] == "heldout"));
    let out = ethos_ok(&["data", "validate", heldout.to_str().expect("utf8")]);
    assert!(out.contains(&format!("{} scenarios valid", records.len())), "{out}");

    let health = dir.path().join("health.jsonl");
    ethos_ok(&["data", "export", "--split", "train", "--domains", "health", "--out", health.to_str().expect("utf8")]);
    let domains: HashSet<String> =
        read_lines(&health).iter().map(|r| r["domain"].as_str().expect("domain").to_string()).collect();
    assert_eq!(domains, HashSet::from(["health_medicine".to_string(), "mental_health".to_string()]));

    let rest = dir.path().join("rest.jsonl");
    ethos_ok(&["data", "export", "--exclude-tags", "health,science", "--out", rest.to_str().expect("utf8")]);
    let rest = read_lines(&rest);
    assert!(!rest.is_empty());
    assert!(
        rest.iter()
            .all(|r| !["health_medicine", "mental_health", "science_research"]
                .contains(&r["domain"].as_str().expect("d")))
    );
}

#[test]
fn invalid_scenario_files_name_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.jsonl");
    ethos_ok(&[
        "data",
        "export",
        "--traits",
        "human_welfare",
        "--domains",
        "education",
        "--out",
        good.to_str().expect("utf8"),
    ]);
    let lines: Vec<String> = std::fs::read_to_string(&good).expect("read").lines().map(String::from).collect();
    assert_eq!(lines.len(), 3);
    let mut second: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON");
    second["rubric"][1]["points"] = serde_json::json!(0.0);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{}\n{}\n{}\n", lines[0], second, lines[2])).expect("write");
    let output = ethos(&["data", "validate", bad.to_str().expect("utf8")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.jsonl:2") && stderr.contains("rubric[1].points"), "{stderr}");

    let dup = dir.path().join("dup.jsonl");
    std::fs::write(&dup, format!("{}\n{}\n", lines[0], lines[0])).expect("write");
    let output = ethos(&["data", "validate", dup.to_str().expect("utf8")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("dup.jsonl:2"));

    let output = ethos(&["data", "export", "--domains", "astrology", "--out", "x.jsonl"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("astrology") && stderr.contains("health"), "{stderr}");
}
