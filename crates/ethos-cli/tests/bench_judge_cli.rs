//! `ethos bench judge` end to end on a few SimpleQA items: the command runs `ethos eval run` and the bare client
//! against its in-process mock server and reports both rates and the requests served. No timing assertions: speed
//! targets belong to the benchmark itself, not to tests on a shared machine.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The shared data directory: `ETHOS_DATA_DIR`, else `../shared/data` from the workspace root.
fn data_dir() -> PathBuf {
    match std::env::var_os("ETHOS_DATA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

#[test]
fn bench_judge_reports_both_rates_and_every_request() {
    let data = data_dir();
    if !data.join("simpleqa").join("simple_qa_test_set.csv").exists() {
        eprintln!("skipping: no SimpleQA under {} (set ETHOS_DATA_DIR to the shared data directory)", data.display());
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(["bench", "judge", "--items", "50", "--repeats", "1", "--json", "--work-dir"])
        .arg(work.path())
        .env("ETHOS_DATA_DIR", &data)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("ethos binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}: {stderr}", output.status.code());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!("stdout is not one JSON object ({err}): {}", String::from_utf8_lossy(&output.stdout))
    });
    for side in ["pipeline", "bare"] {
        let rate = report[side]["median_items_per_s"].as_f64().unwrap_or_default();
        assert!(rate > 0.0, "{side} rate {rate}: {report}");
        assert_eq!(report[side]["runs"].as_array().map(Vec::len), Some(1), "{report}");
    }
    assert!(report["ratio_median"].as_f64().is_some_and(|ratio| ratio > 0.0), "{report}");
    // 50 items x 2 calls (policy + judge), once by the pipeline and once by the bare client.
    assert_eq!(report["requests_served"].as_u64(), Some(2 * 50 * 2), "{report}");
    // The run directory was removed after the run.
    let left: Vec<_> = std::fs::read_dir(work.path()).expect("read work dir").flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "run directories left behind: {left:?}");
}
