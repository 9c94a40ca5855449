//! Settings and helpers shared by commands: model loading with the request cache, seeds, manifests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ethos_core::catalog::Catalog;
use ethos_core::records::{ModelRecord, RunManifest};
use ethos_llm::cache::{CacheStats, CachedModel, RequestCache};
use ethos_llm::embedded::EmbeddedModel;
use ethos_llm::openai::{OpenAiConfig, OpenAiModel};
use ethos_llm::{ChatModel, ModelSpec};
use sha2::{Digest, Sha256};

use crate::printer::Printer;

/// Backend settings shared by every command that calls a model.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Request cache file (SQLite). Default: $ETHOS_CACHE_DIR/requests.sqlite, else ~/.cache/ethos/requests.sqlite.
    #[arg(long, env = "ETHOS_CACHE")]
    cache: Option<PathBuf>,
    /// Call the model for every request, bypassing the cache.
    #[arg(long)]
    no_cache: bool,
    /// Environment variable holding the API key of `openai:` endpoints.
    #[arg(long, default_value = "ETHOS_API_KEY")]
    api_key_env: String,
    /// Most concurrent HTTP requests to `openai:` endpoints.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Per-request timeout in seconds for `openai:` endpoints.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// A model ready for use, behind the request cache unless disabled.
#[derive(Clone)]
pub struct LoadedModel {
    /// The model to call.
    pub model: Arc<dyn ChatModel>,
    /// The spec as given.
    pub spec: String,
    /// The identity of the weights or endpoint model.
    pub identity: String,
    cached: Option<Arc<CachedModel>>,
}

impl LoadedModel {
    /// Cache hits and misses (misses are model calls); without a cache every call is a miss we did not count.
    pub fn cache_stats(&self) -> CacheStats {
        self.cached.as_ref().map(|cached| cached.stats()).unwrap_or_default()
    }
}

/// A multi-threaded tokio runtime for commands that call models.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Builds the backend named by `spec` without a cache.
pub async fn load_backend(spec: &ModelSpec, args: &ModelArgs, printer: &Printer) -> anyhow::Result<Arc<dyn ChatModel>> {
    Ok(match spec {
        ModelSpec::Embedded { .. } => {
            printer.status(format!("loading {spec} (in-process)"));
            let spec = spec.clone();
            let model = tokio::task::spawn_blocking(move || EmbeddedModel::load(&spec))
                .await
                .context("model loading task failed")??;
            Arc::new(model)
        }
        ModelSpec::OpenAi { .. } => {
            let config = OpenAiConfig {
                api_key_env: Some(args.api_key_env.clone()),
                max_concurrency: args.concurrency.max(1),
                request_timeout: Duration::from_secs(args.timeout_secs.max(1)),
                ..OpenAiConfig::default()
            };
            Arc::new(OpenAiModel::new(spec.clone(), config)?)
        }
    })
}

/// Parses a spec and loads the model behind the request cache.
pub async fn load_policy(spec_text: &str, args: &ModelArgs, printer: &Printer) -> anyhow::Result<LoadedModel> {
    let spec: ModelSpec = spec_text.parse()?;
    let backend = load_backend(&spec, args, printer).await?;
    let identity = backend.identity();
    if args.no_cache {
        return Ok(LoadedModel { model: backend, spec: spec_text.to_string(), identity, cached: None });
    }
    let path = match &args.cache {
        Some(path) => path.clone(),
        None => default_cache_path()?,
    };
    let cache = RequestCache::open(&path).with_context(|| format!("opening request cache {}", path.display()))?;
    let cached = Arc::new(CachedModel::new(backend, cache));
    let model: Arc<dyn ChatModel> = cached.clone();
    Ok(LoadedModel { model, spec: spec_text.to_string(), identity, cached: Some(cached) })
}

fn default_cache_path() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ETHOS_CACHE_DIR") {
        return Ok(PathBuf::from(dir).join("requests.sqlite"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("cannot find a cache directory: set ETHOS_CACHE_DIR or pass --cache")?;
    Ok(base.join("ethos").join("requests.sqlite"))
}

/// The system prompt of a persona condition, `None` for `none`.
pub fn persona_prompt(condition: &str) -> anyhow::Result<Option<String>> {
    if condition == "none" {
        return Ok(None);
    }
    let catalog = Catalog::builtin();
    let persona = catalog.persona_by_id(condition).with_context(|| {
        let known: Vec<&str> = catalog.personas().iter().map(|p| p.id()).collect();
        format!("unknown condition `{condition}` (known: none, {})", known.join(", "))
    })?;
    Ok(Some(persona.system_prompt().to_string()))
}

/// A per-item seed derived from the base seed and the item id, so an item's replies do not depend on which other
/// items are in the file or in which order.
pub fn item_seed(base_seed: u64, item_id: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(base_seed.to_le_bytes());
    hasher.update(item_id.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // 63 bits: hosted OpenAI-compatible APIs take the seed as a signed 64-bit integer.
    u64::from_le_bytes(bytes) & (i64::MAX as u64)
}

/// A run manifest for the current binary.
pub fn manifest<'a>(
    command: &str,
    config: serde_json::Value,
    seeds: impl IntoIterator<Item = (&'a str, u64)>,
    models: impl IntoIterator<Item = (&'a str, &'a LoadedModel)>,
) -> RunManifest {
    let revision = env!("ETHOS_GIT_REVISION");
    RunManifest {
        schema_version: ethos_core::SCHEMA_VERSION,
        ethos_version: env!("CARGO_PKG_VERSION").to_string(),
        command: command.to_string(),
        config,
        seeds: seeds.into_iter().map(|(name, seed)| (name.to_string(), seed)).collect(),
        models: models
            .into_iter()
            .map(|(role, loaded)| {
                (role.to_string(), ModelRecord { spec: loaded.spec.clone(), identity: loaded.identity.clone() })
            })
            .collect(),
        git_revision: (!revision.is_empty()).then(|| revision.to_string()),
        git_dirty: env!("ETHOS_GIT_DIRTY").parse().ok(),
        created_at: now_rfc3339(),
    }
}

/// `samples.jsonl` -> `samples.manifest.json`.
pub fn sidecar_manifest_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "run".into());
    out.with_file_name(format!("{stem}.manifest.json"))
}

/// Current UTC time as RFC 3339, without a date-time dependency.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_seed_depends_on_seed_and_id_only() {
        assert_eq!(item_seed(1, "a"), item_seed(1, "a"));
        assert_ne!(item_seed(1, "a"), item_seed(2, "a"));
        assert_ne!(item_seed(1, "a"), item_seed(1, "b"));
    }

    #[test]
    fn manifest_path_is_beside_the_output() {
        assert_eq!(sidecar_manifest_path(Path::new("out/s.jsonl")), PathBuf::from("out/s.manifest.json"));
    }

    #[test]
    fn rfc3339_has_the_right_shape() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'));
    }
}
