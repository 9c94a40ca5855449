//! Model specs: `embedded:gemma-3-270m[+adapter=PATH]`, `embedded:ethos-warmstart` and
//! `openai:BASE_URL[,BASE_URL...]#MODEL`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Names a model and the backend that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelSpec {
    /// A model run in-process.
    Embedded {
        /// Model name (`gemma-3-270m`).
        model: String,
        /// Optional LoRA adapter (safetensors) applied on top of the base weights.
        adapter: Option<PathBuf>,
    },
    /// An OpenAI-compatible endpoint; several base URLs are load-balanced.
    OpenAi {
        /// Base URLs ending in `/v1` (or wherever `chat/completions` lives).
        base_urls: Vec<String>,
        /// Model name sent in requests.
        model: String,
    },
}

/// An invalid model spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model spec `{spec}`: {reason} (expected `embedded:gemma-3-270m[+adapter=PATH]`, `embedded:ethos-warmstart` or `openai:BASE_URL#MODEL`)")]
pub struct SpecError {
    /// The spec as given.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
}

/// The bare base model (Gemma-3-270M, Q4_K_M GGUF).
pub const BASE_MODEL: &str = "gemma-3-270m";

/// The base model with the shipped supervised warm-start adapter (`adapters/warmstart.safetensors`,
/// compiled into the binary): the instruction-following start of the study and the default policy.
pub const WARMSTART_MODEL: &str = "ethos-warmstart";

/// The policy commands use when none is given.
pub const DEFAULT_POLICY: &str = "embedded:ethos-warmstart";

/// Embedded models this build knows.
pub const EMBEDDED_MODELS: &[&str] = &[BASE_MODEL, WARMSTART_MODEL];

impl FromStr for ModelSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| SpecError { spec: text.to_string(), reason: reason.to_string() };
        let (backend, rest) = text.split_once(':').ok_or_else(|| fail("missing `backend:` prefix"))?;
        match backend {
            "embedded" => {
                let (model, adapter) = match rest.split_once('+') {
                    None => (rest, None),
                    Some((model, option)) => {
                        let path = option
                            .strip_prefix("adapter=")
                            .ok_or_else(|| fail("the only embedded option is `+adapter=PATH`"))?;
                        if path.is_empty() {
                            return Err(fail("empty adapter path"));
                        }
                        (model, Some(PathBuf::from(path)))
                    }
                };
                if !EMBEDDED_MODELS.contains(&model) {
                    return Err(fail(&format!(
                        "unknown embedded model `{model}` (known: {})",
                        EMBEDDED_MODELS.join(", ")
                    )));
                }
                if model == WARMSTART_MODEL && adapter.is_some() {
                    // An adapter holds the whole low-rank update (adapters trained from the warm start include
                    // it), so adapters are applied to the bare base model, never stacked.
                    return Err(fail(&format!(
                        "`{WARMSTART_MODEL}` already carries its adapter; serve another adapter as `embedded:{BASE_MODEL}+adapter=PATH`"
                    )));
                }
                Ok(ModelSpec::Embedded { model: model.to_string(), adapter })
            }
            "openai" => {
                let (urls, model) = rest.split_once('#').ok_or_else(|| fail("missing `#MODEL`"))?;
                if model.is_empty() {
                    return Err(fail("empty model name"));
                }
                let base_urls: Vec<String> =
                    urls.split(',').map(|url| url.trim().trim_end_matches('/').to_string()).collect();
                for url in &base_urls {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(fail(&format!("base URL `{url}` must start with http:// or https://")));
                    }
                }
                Ok(ModelSpec::OpenAi { base_urls, model: model.to_string() })
            }
            other => Err(fail(&format!("unknown backend `{other}`"))),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Embedded { model, adapter: None } => write!(f, "embedded:{model}"),
            ModelSpec::Embedded { model, adapter: Some(path) } => {
                write!(f, "embedded:{model}+adapter={}", path.display())
            }
            ModelSpec::OpenAi { base_urls, model } => {
                write!(f, "openai:{}#{model}", base_urls.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<&str, &str>) {
        match (text.parse::<ModelSpec>(), expect) {
            (Ok(spec), Ok(display)) => assert_eq!(spec.to_string(), display),
            (Err(err), Err(fragment)) => assert!(err.to_string().contains(fragment), "{err}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn specs() {
        check("embedded:gemma-3-270m", Ok("embedded:gemma-3-270m"));
        check(
            "embedded:gemma-3-270m+adapter=runs/a.safetensors",
            Ok("embedded:gemma-3-270m+adapter=runs/a.safetensors"),
        );
        check("openai:http://127.0.0.1:8000/v1/#m", Ok("openai:http://127.0.0.1:8000/v1#m"));
        check("openai:http://a/v1,http://b/v1#org/model#2", Ok("openai:http://a/v1,http://b/v1#org/model#2"));
        check("embedded:ethos-warmstart", Ok("embedded:ethos-warmstart"));
        check("embedded:ethos-warmstart+adapter=a.safetensors", Err("already carries its adapter"));
        check("embedded:llama", Err("unknown embedded model"));
        check("embedded:gemma-3-270m+lora=x", Err("+adapter=PATH"));
        check("openai:http://a/v1", Err("missing `#MODEL`"));
        check("openai:ftp://a#m", Err("must start with http"));
        check("gemma", Err("missing `backend:` prefix"));
        check("hf:gemma", Err("unknown backend"));
    }
}
