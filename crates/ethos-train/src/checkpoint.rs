//! Checkpoints of a training run, shared by GRPO and SFT.
//!
//! A checkpoint is a directory `checkpoints/step-NNNNNN/` with the adapter, the optimizer's
//! moments and a JSON state (the step, the data order's state, how many log lines belong to the
//! run so far). `checkpoint.json` at the run's root names the latest complete one and is replaced
//! atomically only after the directory is fully written, so a kill at any moment leaves either the
//! old or the new checkpoint usable, never a half-written one.

use std::path::{Path, PathBuf};

use ethos_llm::embedded::chat_format::ChatFormat;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::Lora;
use crate::optim::{AdamW, AdamWConfig};
use crate::policy::Policy;
use crate::TrainError;

/// Checkpoints kept besides the newest (older ones are deleted once a new one is committed).
const KEEP_PREVIOUS: usize = 1;

/// The pointer file at the run root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPointer {
    /// Steps completed.
    pub step: u64,
    /// The checkpoint directory, relative to the run root.
    pub dir: String,
}

/// Writes a checkpoint of `step` under `run_dir` and makes it the latest.
pub fn save_checkpoint<S: Serialize>(
    run_dir: &Path,
    step: u64,
    lora: &Lora,
    chat_format: ChatFormat,
    optimizer: &AdamW,
    state: &S,
) -> Result<(), TrainError> {
    let relative = format!("checkpoints/step-{step:06}");
    let dir = run_dir.join(&relative);
    std::fs::create_dir_all(&dir).map_err(|err| TrainError::io(&dir, err))?;
    lora.to_adapter(chat_format)?.save(&dir.join("adapter.safetensors"))?;
    optimizer.save(&dir.join("optimizer.safetensors"))?;
    write_json_atomic(&dir.join("state.json"), state)?;
    write_json_atomic(&run_dir.join("checkpoint.json"), &CheckpointPointer { step, dir: relative })?;
    prune_checkpoints(run_dir, step)
}

/// The latest checkpoint of a run, if any: its pointer, directory and state.
pub fn latest_checkpoint<S: DeserializeOwned>(
    run_dir: &Path,
) -> Result<Option<(CheckpointPointer, PathBuf, S)>, TrainError> {
    let pointer_path = run_dir.join("checkpoint.json");
    if !pointer_path.exists() {
        return Ok(None);
    }
    let pointer: CheckpointPointer = read_json(&pointer_path)?;
    let dir = run_dir.join(&pointer.dir);
    let state: S = read_json(&dir.join("state.json"))?;
    Ok(Some((pointer, dir, state)))
}

/// Continues a run from its latest checkpoint: checks that the run directory's manifest has the
/// same `plan` as `manifest` (same data, settings and starting policy), puts the checkpoint's
/// adapter into `policy`, and returns an optimizer with the checkpoint's moments and the saved
/// state. The metrics log is cut back to the checkpoint's step, so the resumed run appends
/// exactly the lines the uninterrupted run would have.
pub fn resume_from_latest<S: DeserializeOwned>(
    run_dir: &Path,
    manifest: &serde_json::Value,
    policy: &mut Policy,
    optimizer_config: &AdamWConfig,
) -> Result<(AdamW, S), TrainError> {
    let Some((pointer, dir, state)) = latest_checkpoint::<S>(run_dir)? else {
        return Err(TrainError::Invalid(format!(
            "{}: no checkpoint to resume from (checkpoint.json is missing)",
            run_dir.display()
        )));
    };
    let manifest_path = run_dir.join("manifest.json");
    let recorded: serde_json::Value = read_json(&manifest_path)?;
    if recorded.get("plan") != manifest.get("plan") {
        return Err(TrainError::Invalid(format!(
            "{}: the run was started with different data, settings or starting policy; resume needs the same ones",
            manifest_path.display()
        )));
    }
    let adapter = ethos_llm::embedded::lora::LoraAdapter::load(&dir.join("adapter.safetensors"))?;
    policy.replace_lora(Lora::from_adapter(policy.model(), &adapter)?);
    let mut optimizer = AdamW::new(policy.lora().named_vars(), optimizer_config.clone())?;
    optimizer.load(&dir.join("optimizer.safetensors"))?;
    truncate_log(&run_dir.join("metrics.jsonl"), pointer.step as usize)?;
    Ok((optimizer, state))
}

/// Deletes checkpoint directories older than the newest `KEEP_PREVIOUS + 1`.
fn prune_checkpoints(run_dir: &Path, newest_step: u64) -> Result<(), TrainError> {
    let root = run_dir.join("checkpoints");
    let entries = std::fs::read_dir(&root).map_err(|err| TrainError::io(&root, err))?;
    let mut steps: Vec<u64> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
        .filter(|&step| step <= newest_step)
        .collect();
    steps.sort_unstable();
    let n_remove = steps.len().saturating_sub(KEEP_PREVIOUS + 1);
    for step in &steps[..n_remove] {
        let dir = root.join(format!("step-{step:06}"));
        std::fs::remove_dir_all(&dir).map_err(|err| TrainError::io(&dir, err))?;
    }
    Ok(())
}

/// Writes pretty JSON atomically (temporary file, then rename).
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| TrainError::Invalid(format!("{}: cannot serialize: {err}", path.display())))?;
    ethos_core::io::write_atomic(path, |out| out.write_all(format!("{text}\n").as_bytes()))
        .map_err(|err| TrainError::io(path, err))
}

/// Reads a JSON file; errors name the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|err| TrainError::io(path, err))?;
    serde_json::from_str(&text).map_err(|err| TrainError::Invalid(format!("{}: {err}", path.display())))
}

/// Keeps the first `n_lines` lines of a JSONL log (a resumed run rewrites what came after its
/// checkpoint, so the log equals the uninterrupted run's).
pub fn truncate_log(path: &Path, n_lines: usize) -> Result<(), TrainError> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|err| TrainError::io(path, err))?;
    let kept: Vec<&str> = text.lines().take(n_lines).collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    ethos_core::io::write_atomic(path, |out| out.write_all(body.as_bytes())).map_err(|err| TrainError::io(path, err))
}

/// Appends one JSON line to a log and flushes it.
pub fn append_json_line<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    use std::io::Write;
    let line = serde_json::to_string(value)
        .map_err(|err| TrainError::Invalid(format!("{}: cannot serialize: {err}", path.display())))?;
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|err| TrainError::io(path, err))?;
    writeln!(file, "{line}").and_then(|_| file.flush()).map_err(|err| TrainError::io(path, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncating_a_log_keeps_the_first_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        for idx in 0..5 {
            append_json_line(&path, &serde_json::json!({ "step": idx })).unwrap();
        }
        truncate_log(&path, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"step\":0}\n{\"step\":1}\n");
        truncate_log(&path, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn a_missing_pointer_means_no_checkpoint_and_a_bad_one_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(latest_checkpoint::<serde_json::Value>(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join("checkpoint.json"), "{not json").unwrap();
        let message = latest_checkpoint::<serde_json::Value>(dir.path()).unwrap_err().to_string();
        assert!(message.contains("checkpoint.json"), "{message}");
    }
}
