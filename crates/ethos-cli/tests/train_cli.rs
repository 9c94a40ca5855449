//! `ethos train` and `ethos finetune` on the real embedded model with tiny budgets: the run
//! directory, compute matching between arms, exact resumption after a stop, and clear errors for
//! bad experiment and data files.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn ethos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("ETHOS_DATA_DIR", data_dir())
        .output()
        .expect("run ethos")
}

fn ethos_ok(args: &[&str]) -> String {
    let output = ethos(args);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "ethos {args:?}: {stderr}");
    stderr
}

fn data_dir() -> String {
    std::env::var("ETHOS_DATA_DIR").unwrap_or_else(|_| format!("{}/../../../shared/data", env!("CARGO_MANIFEST_DIR")))
}

/// Two arms, three steps of one prompt with two replies of at most 8 tokens. The mixed arm draws
/// trait scenarios (graded by the semantic judge) and generated instructions; the baseline arm
/// only GSM8K. Replies this short mostly earn equal rewards (all zero), so the policy starts from a
/// fine-tuned adapter (`POLICY` is replaced) with the KL measured against the base model
/// (`kl_reference = "base"`): that penalty gives a gradient whatever the rewards, so the policy
/// moves and the resume comparison means something.
const EXPERIMENT: &str = r#"
name = "tiny"
seed = 5
policy = "POLICY"

[training]
steps = 3
prompts_per_step = 1
group_size = 2
max_tokens = 8
max_prompt_tokens = 260
checkpoint_every = 1
epochs_per_batch = 2
optimizer = { lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0 }
objective = { clip_epsilon = 0.2, kl_coef = 0.1, scale_by_std = true }
kl_reference = "base"

[lora]
rank = 4
alpha = 8.0
targets = ["q_proj", "v_proj", "down_proj"]

[sources.gsm8k]
kind = "gsm8k"
limit = 50
[sources.trait]
kind = "trait_scenarios"
[sources.instructions]
kind = "instructions"
n_prompts = 20

[arms.baseline]
mixture = { gsm8k = 1.0 }
[arms.mixed]
mixture = { trait = 0.5, instructions = 0.5 }
"#;

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// The per-step fields that must repeat exactly (timings differ between runs).
fn deterministic(record: &Value) -> Value {
    let mut record = record.clone();
    for key in ["seconds_sampling", "seconds_reward", "seconds_training"] {
        record.as_object_mut().unwrap().remove(key);
    }
    record
}

/// Writes a three-example chat file and fine-tunes a small adapter on it (one step); returns the adapter.
fn finetune_small_adapter(dir: &Path, epochs: &str) -> std::path::PathBuf {
    let data = dir.join("chat.jsonl");
    let records = [
        ("What colour is the sky?", "The sky is blue on a clear day."),
        ("Name a fruit.", "An apple is a fruit."),
        ("How many legs does a cat have?", "A cat has four legs."),
    ];
    let lines: Vec<String> = records
        .iter()
        .map(|(question, answer)| {
            serde_json::json!({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
                .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let out = dir.join("sft");
    ethos_ok(&[
        "finetune",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        epochs,
        "--batch-size",
        "2",
        "--rank",
        "4",
        "--lr",
        "1e-3",
        "--targets",
        "q_proj,v_proj,down_proj",
        "--chat-format",
        "few_shot_transcript",
        "--policy",
        "embedded:gemma-3-270m",
    ]);
    out.join("adapter.safetensors")
}

#[test]
fn train_resumes_bit_for_bit_and_arms_share_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = finetune_small_adapter(dir.path(), "1");
    let experiment = dir.path().join("tiny.toml");
    std::fs::write(
        &experiment,
        EXPERIMENT.replace("POLICY", &format!("embedded:gemma-3-270m+adapter={}", adapter.display())),
    )
    .unwrap();
    let experiment = experiment.to_str().unwrap();
    let full = dir.path().join("full");
    let split = dir.path().join("split");

    ethos_ok(&["train", experiment, "--arm", "mixed", "--out", full.to_str().unwrap()]);
    let stderr =
        ethos_ok(&["train", experiment, "--arm", "mixed", "--out", split.to_str().unwrap(), "--stop-after", "2"]);
    assert!(stderr.contains("step 2/3"), "{stderr}");
    assert!(!split.join("adapter.safetensors").exists(), "no final adapter before the last step");
    // Starting again without --resume must not overwrite the run.
    let output = ethos(&["train", experiment, "--arm", "mixed", "--out", split.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--resume"));
    let stderr = ethos_ok(&["train", experiment, "--arm", "mixed", "--out", split.to_str().unwrap(), "--resume"]);
    assert!(stderr.contains("resuming after step 2") && stderr.contains("step 3/3"), "{stderr}");

    let full_log = read_lines(&full.join("metrics.jsonl"));
    let split_log = read_lines(&split.join("metrics.jsonl"));
    assert_eq!(full_log.len(), 3);
    assert_eq!(
        full_log.iter().map(deterministic).collect::<Vec<_>>(),
        split_log.iter().map(deterministic).collect::<Vec<_>>()
    );
    // The adapters are identical byte for byte (same weights, same metadata).
    assert_eq!(
        std::fs::read(full.join("adapter.safetensors")).unwrap(),
        std::fs::read(split.join("adapter.safetensors")).unwrap()
    );
    // The fine-tuned start differs from the base model, so the KL to the base model is positive from the first
    // step and gives a gradient in every step.
    assert!(full_log[0]["kl"].as_f64().unwrap() > 0.0, "{:?}", full_log[0]);
    assert!(full_log.iter().all(|record| record["grad_norm"].as_f64().unwrap() > 0.0), "{full_log:?}");

    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(full.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "grpo");
    assert_eq!(manifest["budget"]["optimizer_steps"], 6);
    assert_eq!(manifest["budget"]["max_sampled_tokens"], 3 * 2 * 8);
    assert_eq!(manifest["plan"]["policy"]["lora"]["rank"], 4);
    assert_eq!(manifest["plan"]["policy"]["start"]["kind"], "adapter");

    // Another arm of the same experiment has the same budget, whatever its mixture.
    let baseline = dir.path().join("baseline");
    ethos_ok(&["train", experiment, "--arm", "baseline", "--out", baseline.to_str().unwrap(), "--stop-after", "1"]);
    let baseline_manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(baseline.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(baseline_manifest["budget"], manifest["budget"]);
    assert_ne!(baseline_manifest["plan"]["mixture"], manifest["plan"]["mixture"]);
    let first = &read_lines(&baseline.join("metrics.jsonl"))[0];
    assert!(first["sources"].as_object().unwrap().keys().all(|source| source == "gsm8k"), "{first}");

    // With the default reference, the starting adapter itself: before the first update policy and
    // reference are the same weights, so the first step's KL is exactly 0.
    let from_start = dir.path().join("start.toml");
    std::fs::write(&from_start, std::fs::read_to_string(experiment).unwrap().replace("kl_reference = \"base\"\n", ""))
        .unwrap();
    let start_run = dir.path().join("start");
    ethos_ok(&[
        "train",
        from_start.to_str().unwrap(),
        "--arm",
        "baseline",
        "--out",
        start_run.to_str().unwrap(),
        "--stop-after",
        "1",
    ]);
    let first = &read_lines(&start_run.join("metrics.jsonl"))[0];
    assert_eq!(first["kl"].as_f64().unwrap(), 0.0, "{first}");
}

#[test]
fn finetune_trains_an_adapter_that_the_embedded_backend_serves() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = finetune_small_adapter(dir.path(), "2");
    let out = dir.path().join("sft");
    let log = read_lines(&out.join("metrics.jsonl"));
    assert_eq!(log.len(), 4, "2 epochs of ceil(3 / 2) steps");
    let first = log[0]["loss"].as_f64().unwrap();
    assert!(first.is_finite() && first > 0.0);
    assert!(adapter.exists());

    // The trained adapter is a policy spec everywhere: here, `respond`.
    let conversations = dir.path().join("conversations.jsonl");
    std::fs::write(&conversations, r#"{"id": "c1", "conversation": [{"role": "user", "content": "Name a fruit."}]}"#)
        .unwrap();
    let replies = dir.path().join("replies.jsonl");
    let spec = format!("embedded:gemma-3-270m+adapter={}", adapter.display());
    ethos_ok(&[
        "respond",
        "--policy",
        &spec,
        "--input",
        conversations.to_str().unwrap(),
        "--out",
        replies.to_str().unwrap(),
        "--max-tokens",
        "8",
        "--no-cache",
    ]);
    let manifest = std::fs::read_to_string(dir.path().join("replies.manifest.json")).unwrap();
    assert!(manifest.contains("+adapter@sha256:"), "{manifest}");
}

#[test]
fn bad_experiments_and_chat_files_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = dir.path().join("bad.toml");
    std::fs::write(
        &experiment,
        EXPERIMENT.replace("trait = 0.5, instructions = 0.5", "trait = 0.5, instructions = 0.6"),
    )
    .unwrap();
    let output = ethos(&[
        "train",
        experiment.to_str().unwrap(),
        "--arm",
        "mixed",
        "--out",
        dir.path().join("r").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml") && stderr.contains("arms.mixed.mixture"), "{stderr}");

    let output = ethos(&[
        "train",
        experiment.to_str().unwrap(),
        "--arm",
        "nope",
        "--out",
        dir.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));

    let data = dir.path().join("chat.jsonl");
    std::fs::write(&data, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n").unwrap();
    let output =
        ethos(&["finetune", "--data", data.to_str().unwrap(), "--out", dir.path().join("s").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chat.jsonl:1") && stderr.contains("assistant"), "{stderr}");
}
