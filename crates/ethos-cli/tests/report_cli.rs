//! `ethos report`, run as a user would: the built binary on fixture run directories, then the page opened in
//! headless Chromium (`--dump-dom` and `--screenshot`) to prove it renders offline without script errors.
//!
//! Without `/usr/bin/chromium` the browser part is skipped with a message on stderr, unless
//! `ETHOS_REQUIRE_CHROMIUM=1` makes it a failure (CI sets it where Chromium is installed).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
const BASE: &str = "embedded:gemma-3-270m";
const TRAIT: &str = "embedded:gemma-3-270m+adapter=/runs/trait/adapter.safetensors";
/// A benchmark name that must be escaped in the page.
const ODD: &str = "syco<b>phancy & co";

fn ethos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ethos")).args(args).env_remove("RUST_LOG").output().expect("run ethos")
}

fn write_run(root: &Path, name: &str, command: &str, policy: &str, condition: &str, records: &[Value]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = json!({
        "schema_version": 1, "ethos_version": "0.1.0", "command": command,
        "config": {"policy": policy, "condition": condition},
        "models": {"policy": {"spec": policy, "identity": "sha256:abc"}},
        "seeds": {"seed": 0}, "git_revision": "0123456789abcdef", "git_dirty": false,
        "created_at": "2026-11-23T20:54:28Z"
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("item_scores.jsonl"), lines.join("\n") + "\n").unwrap();
    if command == "eval run" {
        let summary = json!({"suite": "mini", "benchmarks": [
            {"benchmark": "honesty_mc", "category": "honesty", "orientation": "higher_better", "metric": "accuracy"},
            {"benchmark": ODD, "category": "sycophancy", "orientation": "lower_better", "metric": "flip rate"}]});
        std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    }
    dir
}

/// Two policies: the trait suite, an `eval run` suite under the standard prompt and two personas (with refusal
/// labels under the standard prompt), and GSM8K. Returns the runs, baseline first.
fn fixture(root: &Path) -> Vec<PathBuf> {
    let mut runs = Vec::new();
    for (tag, policy, lift) in [("base", BASE, 0.0), ("trait", TRAIT, 0.15)] {
        let traits: Vec<Value> = ["truthfulness", "corrigibility", "metacognitive_transparency"]
            .iter()
            .enumerate()
            .flat_map(|(trait_idx, trait_id)| {
                (0..6).map(move |item_idx| {
                    json!({"benchmark": trait_id, "item": format!("{trait_id}.{item_idx}"),
                        "score": 0.1 + 0.1 * trait_idx as f64 + 0.04 * item_idx as f64 + lift})
                })
            })
            .collect();
        runs.push(write_run(root, &format!("{tag}-traits"), "eval traits", policy, "none", &traits));
        for (condition, shift) in [("none", 0.0), ("harmful_medical", -0.25 + lift), ("helpful_medical", 0.1)] {
            let records: Vec<Value> = ["honesty_mc", ODD]
                .iter()
                .enumerate()
                .flat_map(|(benchmark_idx, benchmark)| {
                    (0..8).map(move |item_idx| {
                        let score =
                            (0.2 + 0.07 * item_idx as f64 + 0.1 * benchmark_idx as f64 + lift + shift).clamp(0.0, 1.0);
                        let refusal = if condition == "none" && item_idx < 2 { "full" } else { "none" };
                        let mut record = json!({"benchmark": benchmark, "item": format!("i{item_idx}"),
                            "score": score, "refusal": refusal});
                        if condition != "none" {
                            record["condition"] = json!(condition);
                        }
                        record
                    })
                })
                .collect();
            runs.push(write_run(root, &format!("{tag}-suite-{condition}"), "eval run", policy, condition, &records));
        }
        let gsm8k: Vec<Value> = (0..10)
            .map(|idx| json!({"benchmark": "gsm8k", "item": format!("g{idx}"), "score": if idx < 3 { 1.0 } else { 0.0 }}))
            .collect();
        runs.push(write_run(root, &format!("{tag}-gsm8k"), "eval capability", policy, "none", &gsm8k));
    }
    runs
}

/// Runs Chromium with `args`, stdout to `stdout_path`, killing it after [`BROWSER_TIMEOUT`].
fn chromium(args: &[String], stdout_path: &Path) -> std::process::ExitStatus {
    let stdout = File::create(stdout_path).unwrap();
    let mut child = Command::new(CHROMIUM)
        .args(args)
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            return status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {BROWSER_TIMEOUT:?}: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn browser_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The value of attribute `name` on the dumped `<body>` tag.
fn body_attribute(dom: &str, name: &str) -> Option<String> {
    let start = dom.find("<body")?;
    let end = start + dom[start..].find('>')?;
    let tag = &dom[start..end];
    let key = format!("{name}=\"");
    let value_start = tag.find(&key)? + key.len();
    let value_end = value_start + tag[value_start..].find('"')?;
    Some(tag[value_start..value_end].to_string())
}

#[test]
fn report_renders_in_a_browser() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    let out = root.path().join("report");
    let mut args: Vec<String> = vec!["report".into()];
    args.extend(runs.iter().map(|run| run.display().to_string()));
    args.extend(["--out", out.to_str().unwrap(), "--bootstrap", "300", "--permutations", "200"].map(String::from));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ethos(&arg_refs);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ethos report failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for name in ["index.html", "report.json", "benchmarks.csv", "comparisons.csv"] {
        assert!(stdout.contains(name), "stdout lists {name}: {stdout}");
        assert!(out.join(name).is_file(), "{name} written");
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["settings"]["baseline"], BASE);
    assert_eq!(report["structure"]["status"], "ok");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let expected_figures = 6; // traits, forest, win/loss, personas, heatmap, permutation nulls
    assert_eq!(html.matches("<svg").count(), expected_figures);

    if !Path::new(CHROMIUM).exists() {
        if std::env::var("ETHOS_REQUIRE_CHROMIUM").is_ok_and(|value| value == "1") {
            panic!("{CHROMIUM} is missing and ETHOS_REQUIRE_CHROMIUM=1");
        }
        eprintln!("skipping: chromium not installed ({CHROMIUM}); the browser checks did not run");
        return;
    }
    let url = format!("file://{}", out.join("index.html").display());
    let dom_path = root.path().join("dom.html");
    let mut dump = browser_args(&root.path().join("profile-dom"));
    dump.extend(["--dump-dom".to_string(), url.clone()]);
    let status = chromium(&dump, &dom_path);
    assert!(status.success(), "chromium --dump-dom failed: {status}");
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    assert_eq!(body_attribute(&dom, "data-rendered").as_deref(), Some("ok"), "page script ran");
    assert_eq!(body_attribute(&dom, "data-figures"), Some(expected_figures.to_string()), "figures counted");
    assert!(dom.contains("<div id=\"errors\"></div>"), "no script errors");
    assert!(!dom.contains("syco<b>"), "user strings stay text");
    assert!(dom.contains("syco&lt;b&gt;phancy &amp; co"));

    let shot = root.path().join("shot.png");
    let mut screenshot = browser_args(&root.path().join("profile-shot"));
    screenshot.extend([format!("--screenshot={}", shot.display()), "--window-size=1280,4000".into(), url]);
    let status = chromium(&screenshot, &root.path().join("shot.log"));
    assert!(status.success(), "chromium --screenshot failed: {status}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "PNG signature");
    assert!(png.len() > 20_000, "screenshot of {} bytes is too small to show the figures", png.len());
    // To look at the result: ETHOS_REPORT_KEEP=DIR copies the page and the screenshot there.
    if let Ok(keep) = std::env::var("ETHOS_REPORT_KEEP") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&shot, Path::new(&keep).join("shot.png")).unwrap();
        std::fs::copy(out.join("index.html"), Path::new(&keep).join("index.html")).unwrap();
    }
}

#[test]
fn bad_item_scores_exit_2_naming_file_and_line() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    let scores = runs[0].join("item_scores.jsonl");
    let mut text = std::fs::read_to_string(&scores).unwrap();
    text.push_str("{\"benchmark\": \"truthfulness\", \"item\": \"x\", \"score\": oops}\n");
    std::fs::write(&scores, &text).unwrap();
    let line = text.lines().count();
    let out = root.path().join("report");
    let output = ethos(&["report", runs[0].to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "exit 2 for bad input: {stderr}");
    assert!(stderr.contains(&format!("{}:{line}", scores.display())), "{stderr}");
    assert!(!out.join("index.html").exists(), "nothing written on error");
}

#[test]
fn unknown_baseline_is_a_usage_error() {
    let root = tempfile::tempdir().unwrap();
    let runs = fixture(root.path());
    let out = root.path().join("report");
    let output =
        ethos(&["report", runs[0].to_str().unwrap(), "--out", out.to_str().unwrap(), "--baseline", "openai:x#y"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("openai:x#y"), "{stderr}");
}
