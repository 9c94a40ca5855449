//! `ethos respond` end to end: input errors name file:line:field; the embedded model writes one sample per
//! conversation; a rerun makes zero model calls; a run killed with SIGKILL resumes to the same samples.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ethos() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ethos"));
    command.env_remove("RUST_LOG").stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("ethos binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `ethos respond` on an input file and returns (exit code, stderr).
fn respond_error(dir: &Path, name: &str, bytes: &[u8]) -> (i32, String) {
    let input = dir.join(name);
    std::fs::write(&input, bytes).unwrap();
    let output = run(ethos()
        .args(["respond", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.join("out.jsonl"))
        .args(["--cache", dir.join("cache.sqlite").to_str().unwrap()]));
    (output.status.code().unwrap_or(-1), stderr(&output))
}

#[test]
fn malformed_inputs_give_one_clear_error_each() {
    let dir = tempfile::tempdir().unwrap();
    let good = br#"{"id":"a","conversation":[{"role":"user","content":"hi"}]}"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad_json.jsonl", [good.as_slice(), b"\n{\"id\": \"b\", \n"].concat(), "bad_json.jsonl:2: "),
        (
            "missing_field.jsonl",
            br#"{"id":"a","conversation":[{"role":"user"}]}"#.to_vec(),
            "missing_field.jsonl:1: field `conversation[0].content`: missing field `content`",
        ),
        (
            "wrong_type.jsonl",
            br#"{"id":7,"conversation":[]}"#.to_vec(),
            "wrong_type.jsonl:1: field `id`: invalid type: integer `7`, expected a string",
        ),
        ("empty.jsonl", Vec::new(), "empty.jsonl: file has no records"),
        (
            "not_utf8.jsonl",
            [good.as_slice(), b"\n{\"id\":\"\xff\"}\n"].concat(),
            "not_utf8.jsonl:2: line is not valid UTF-8",
        ),
        (
            "duplicate.jsonl",
            [good.as_slice(), b"\n", good.as_slice()].concat(),
            "duplicate.jsonl:2: field `id`: duplicate id `a`",
        ),
        (
            "no_user_turn.jsonl",
            br#"{"id":"a","conversation":[{"role":"assistant","content":"hi"}]}"#.to_vec(),
            "no_user_turn.jsonl:1: field `conversation`: must end with a user turn",
        ),
        (
            "bad_role.jsonl",
            br#"{"id":"a","conversation":[{"role":"robot","content":"hi"}]}"#.to_vec(),
            "bad_role.jsonl:1: field `conversation[0].role`: unknown variant `robot`",
        ),
    ];
    for (name, bytes, expected) in cases {
        let (code, message) = respond_error(dir.path(), name, &bytes);
        assert_eq!(code, 2, "{name}: {message}");
        assert!(message.contains(expected), "{name}: expected `{expected}` in:\n{message}");
        assert_eq!(message.matches("error:").count(), 1, "{name}: one error only:\n{message}");
        assert!(!message.contains("panicked"), "{name}: {message}");
    }
}

#[test]
fn unknown_condition_and_bad_spec_are_user_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, br#"{"id":"a","conversation":[{"role":"user","content":"hi"}]}"#).unwrap();
    let output = run(ethos()
        .args(["respond", "--policy", "embedded:llama-9b", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("o.jsonl")));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("unknown embedded model `llama-9b`"));
    let output = run(ethos()
        .args(["respond", "--condition", "pirate", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("o.jsonl")));
    assert!(stderr(&output).contains("unknown condition `pirate`"), "{}", stderr(&output));
}

fn write_conversations(path: &Path, n_items: usize) {
    let topics = [
        "How often should I water a tomato plant in hot weather?",
        "What is a good way to start learning to play the guitar?",
        "Why is the sky blue during the day?",
        "How do I politely decline a meeting invitation from my manager?",
        "What should I pack for a three-day hiking trip?",
    ];
    let mut text = String::new();
    for item_idx in 0..n_items {
        let topic = topics[item_idx % topics.len()];
        let line = serde_json::json!({
            "id": format!("item-{item_idx:02}"),
            "conversation": [{"role": "user", "content": format!("{topic} (question {item_idx})")}],
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn respond_command(input: &Path, out: &Path, cache: &Path) -> Command {
    let mut command = ethos();
    command
        .args(["respond", "--policy", "embedded:gemma-3-270m", "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .args(["--max-tokens", "16", "--temperature", "0.8", "--seed", "11", "--batch-size", "4"]);
    command
}

fn model_calls(stderr: &str) -> u64 {
    let start = stderr.find("model calls: ").expect("summary line") + "model calls: ".len();
    stderr[start..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn read_lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn respond_caches_and_resumes_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("conversations.jsonl");
    write_conversations(&input, 20);

    // Uninterrupted run, then a rerun that must be answered entirely from the cache.
    let out_a = dir.path().join("a.jsonl");
    let cache_a = dir.path().join("a.sqlite");
    let first = run(&mut respond_command(&input, &out_a, &cache_a));
    assert!(first.status.success(), "{}", stderr(&first));
    let samples_a = read_lines(&out_a);
    assert_eq!(samples_a.len(), 20);
    assert_eq!(model_calls(&stderr(&first)), 20);
    for line in &samples_a {
        let sample: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(sample["reply"].is_string());
        assert_eq!(sample["policy"], "embedded:gemma-3-270m");
        assert!(sample["n_tokens"].as_u64().unwrap() <= 16);
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("a.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["seeds"]["seed"], 11);
    assert!(manifest["models"]["policy"]["identity"].as_str().unwrap().contains("sha256"));
    let again = run(&mut respond_command(&input, &out_a, &cache_a));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(model_calls(&stderr(&again)), 0, "{}", stderr(&again));
    assert_eq!(read_lines(&out_a), samples_a);

    // A run with a fresh cache, killed once some batches are done, then resumed.
    let out_b = dir.path().join("b.jsonl");
    let cache_b = dir.path().join("b.sqlite");
    let partial_b = dir.path().join("b.jsonl.partial");
    let mut child = respond_command(&input, &out_b, &cache_b).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while read_lines(&partial_b).len() < 8 {
        assert!(Instant::now() < deadline, "no progress within 300 s");
        assert!(child.try_wait().unwrap().is_none(), "finished before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(!out_b.exists(), "the final output must not exist after a kill");
    let done_before_kill = read_lines(&partial_b).len() as u64;
    let resumed = run(&mut respond_command(&input, &out_b, &cache_b));
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let calls = model_calls(&stderr(&resumed));
    assert!(calls <= 20 - done_before_kill, "resumed run redid finished work: {calls} calls");
    assert_eq!(read_lines(&out_b), samples_a, "killed-and-resumed run must equal the uninterrupted one");
}
