//! LoRA adapters on the real Gemma-3-270M (`ensure_gemma_gguf`): a zero update leaves the logits
//! bit for bit, removing an adapter restores them, the scale is `alpha / r`, batching stays
//! invariant, `embedded:gemma-3-270m+adapter=PATH` loads and samples; and the sampled `token_ids`
//! of generations. The update itself is checked against a naive loop in `lora.rs`'s unit tests.

use std::sync::{Mutex, MutexGuard, OnceLock};

use ethos_core::records::{FinishReason, Message};
use ethos_llm::embedded::chat_format::ChatFormat;
use ethos_llm::embedded::gemma3::{Gemma3, KvCache, LogitRows, Segment};
use ethos_llm::embedded::generate::{self, GenerationJob, StopTokens};
use ethos_llm::embedded::lora::{LoraAdapter, LoraConfig, LoraTarget};
use ethos_llm::embedded::{ensure_gemma_gguf, load_gemma, EmbeddedModel, GemmaTokenizer};
use ethos_llm::{ChatModel, ChatRequest, Generation, ModelSpec, SamplingParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// One model for the whole file: tests set the adapter they need under the lock.
fn engine() -> MutexGuard<'static, (Gemma3, GemmaTokenizer)> {
    static ENGINE: OnceLock<Mutex<(Gemma3, GemmaTokenizer)>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let path = ensure_gemma_gguf().expect("model file");
        Mutex::new(load_gemma(&path).expect("load"))
    });
    // A failed test leaves a consistent model behind (each test sets its own adapter).
    engine.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An adapter on every target of every layer: `A` like peft's init (uniform, ~1/sqrt(in)), `B`
/// uniform in `[-b_range, b_range]` (peft starts it at zero; training moves it).
fn random_adapter(model: &Gemma3, rank: usize, alpha: f64, b_range: f32, seed: u64) -> LoraAdapter {
    let config = model.config();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lora_config = LoraConfig { rank, alpha, targets: LoraTarget::ALL.to_vec() };
    let mut adapter = LoraAdapter::new(lora_config, ChatFormat::Transcript);
    for layer_idx in 0..config.num_hidden_layers {
        for target in LoraTarget::ALL {
            let (in_dim, out_dim) = target.shape(config);
            let a_range = 1.0 / (in_dim as f32).sqrt();
            let a = (0..rank * in_dim).map(|_| rng.random_range(-a_range..a_range)).collect();
            let b = (0..out_dim * rank)
                .map(|_| if b_range > 0.0 { rng.random_range(-b_range..b_range) } else { 0.0 })
                .collect();
            adapter.insert(layer_idx, target, a, b, in_dim, out_dim).expect("insert");
        }
    }
    adapter
}

/// Every row's logits of a prompt prefill, then of two single-token decode steps (one row: the
/// other code path of the matmuls and of the update).
fn logits(model: &Gemma3, tokenizer: &GemmaTokenizer) -> Vec<f32> {
    let prompt = tokenizer.encode("User: Is it safe to skip a dose of my blood pressure medicine?\nAssistant:", true);
    let prompt = prompt.expect("encode");
    let mut cache = KvCache::new(model.config());
    let mut segments = [Segment { cache: &mut cache, tokens: &prompt, logits: LogitRows::All }];
    let prefill = model.forward(&mut segments).expect("prefill");
    let mut values: Vec<f32> = (0..prompt.len()).flat_map(|row| prefill.row(0, row).expect("row").to_vec()).collect();
    for token in tokenizer.encode(" No,", false).expect("encode") {
        let mut segments = [Segment { cache: &mut cache, tokens: &[token], logits: LogitRows::Last }];
        let step = model.forward(&mut segments).expect("decode");
        values.extend_from_slice(step.row(0, 0).expect("row"));
    }
    values
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|value| value.to_bits()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn zero_b_adapter_gives_bit_identical_logits() {
    let mut guard = engine();
    let (model, tokenizer) = &mut *guard;
    model.set_adapter(None).expect("no adapter");
    let base = logits(model, tokenizer);
    let zero = random_adapter(model, 8, 16.0, 0.0, 1);
    model.set_adapter(Some(&zero)).expect("set");
    assert!(model.has_adapter());
    let adapted = logits(model, tokenizer);
    model.set_adapter(None).expect("remove");
    assert!(bits(&adapted) == bits(&base), "max diff {}", max_abs_diff(&adapted, &base));
}

#[test]
fn random_adapter_changes_logits_and_removing_it_restores_them() {
    let mut guard = engine();
    let (model, tokenizer) = &mut *guard;
    model.set_adapter(None).expect("no adapter");
    let base = logits(model, tokenizer);
    let adapter = random_adapter(model, 8, 16.0, 0.02, 2);
    model.set_adapter(Some(&adapter)).expect("set");
    let adapted = logits(model, tokenizer);
    model.set_adapter(None).expect("remove");
    assert!(!model.has_adapter());
    let restored = logits(model, tokenizer);

    let diff = max_abs_diff(&adapted, &base);
    eprintln!("max logit change of a random rank-8 adapter: {diff}");
    assert!(diff > 0.05, "adapter barely changes the logits: {diff}");
    assert!(adapted.iter().all(|value| value.is_finite()));
    assert!(bits(&restored) == bits(&base), "max diff {}", max_abs_diff(&restored, &base));
}

/// The update is `(alpha / r) (x A^T) B^T`: halving alpha and doubling B gives the same bits
/// (multiplying by 2 is exact), and the scale depends on alpha / r, not alpha alone.
#[test]
fn scale_is_alpha_over_rank() {
    let mut guard = engine();
    let (model, tokenizer) = &mut *guard;
    let adapter = random_adapter(model, 8, 16.0, 0.02, 3);
    let mut doubled_b =
        LoraAdapter::new(LoraConfig { rank: 8, alpha: 8.0, targets: LoraTarget::ALL.to_vec() }, ChatFormat::Transcript);
    for (layer_idx, target, pair) in adapter.pairs() {
        let b = pair.b().iter().map(|value| 2.0 * value).collect();
        doubled_b.insert(layer_idx, target, pair.a().to_vec(), b, pair.in_dim(), pair.out_dim()).expect("insert");
    }
    model.set_adapter(Some(&adapter)).expect("set");
    let first = logits(model, tokenizer);
    model.set_adapter(Some(&doubled_b)).expect("set");
    let second = logits(model, tokenizer);
    model.set_adapter(None).expect("remove");
    assert!(bits(&first) == bits(&second), "max diff {}", max_abs_diff(&first, &second));
}

#[test]
fn set_adapter_rejects_an_adapter_for_another_shape_and_keeps_the_old_one() {
    let mut guard = engine();
    let (model, tokenizer) = &mut *guard;
    let adapter = random_adapter(model, 4, 8.0, 0.02, 4);
    model.set_adapter(Some(&adapter)).expect("set");
    let before = logits(model, tokenizer);
    let mut short = LoraAdapter::new(
        LoraConfig { rank: 4, alpha: 8.0, targets: vec![LoraTarget::QProj] },
        ChatFormat::FewShotTranscript,
    );
    let (in_dim, out_dim) = LoraTarget::QProj.shape(model.config());
    short.insert(0, LoraTarget::QProj, vec![0.0; 4 * in_dim], vec![0.0; out_dim * 4], in_dim, out_dim).expect("insert");
    let err = model.set_adapter(Some(&short)).expect_err("one layer of 18").to_string();
    assert!(err.contains("missing tensor `base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight`"), "{err}");
    let after = logits(model, tokenizer);
    model.set_adapter(None).expect("remove");
    assert!(bits(&before) == bits(&after));
}

/// With an adapter, a sequence decodes to the same tokens alone or batched with others
/// (the invariant sampling under a seed relies on).
#[test]
fn adapter_decoding_is_batch_invariant() {
    let mut guard = engine();
    let (model, tokenizer) = &mut *guard;
    let adapter = random_adapter(model, 16, 32.0, 0.01, 5);
    model.set_adapter(Some(&adapter)).expect("set");
    let stop_tokens = StopTokens::from_tokenizer(tokenizer);
    let jobs: Vec<GenerationJob> = ["The capital of France is", "Water boils at", "My favourite recipe for soup"]
        .iter()
        .map(|prompt| GenerationJob {
            prompt_ids: tokenizer.encode(prompt, true).expect("encode"),
            sampling: SamplingParams { n: 2, temperature: 0.8, max_tokens: 12, seed: 9, ..SamplingParams::default() },
        })
        .collect();
    let batched = generate::generate(model, tokenizer, &stop_tokens, &jobs, 8).expect("batched");
    for (job, batched) in jobs.iter().zip(&batched) {
        let alone = generate::generate(model, tokenizer, &stop_tokens, std::slice::from_ref(job), 1).expect("alone");
        let ids = |generations: &[Generation]| generations.iter().map(|g| g.token_ids.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&alone[0]), ids(batched));
    }
    model.set_adapter(None).expect("remove");
}

/// A token id that ends the reply is sampled, so it is the last of `token_ids`, but not counted
/// in `n_tokens` nor part of the text. Made deterministic by declaring the third token of a
/// greedy reply a stop token.
#[test]
fn token_ids_end_with_the_stop_token() {
    let mut guard = engine();
    let (model, tokenizer) = &mut *guard;
    model.set_adapter(None).expect("no adapter");
    let prompt_ids = tokenizer.encode("The three primary colours are", true).expect("encode");
    let job = |stop: Vec<String>| GenerationJob {
        prompt_ids: prompt_ids.clone(),
        sampling: SamplingParams { n: 1, temperature: 0.0, max_tokens: 16, stop, ..SamplingParams::default() },
    };
    let free = generate::generate(model, tokenizer, &StopTokens::new(Vec::new()), &[job(Vec::new())], 8)
        .expect("generate")
        .remove(0)
        .remove(0);
    assert_eq!(free.finish_reason, FinishReason::Length);
    assert_eq!(free.token_ids.len(), 16);
    assert_eq!(free.n_tokens, 16);
    assert_eq!(tokenizer.decode(&free.token_ids).expect("decode"), free.text);

    let stop_id = free.token_ids[2];
    let first = free.token_ids.iter().position(|&id| id == stop_id).expect("present");
    let stopped = generate::generate(model, tokenizer, &StopTokens::new(vec![stop_id]), &[job(Vec::new())], 8)
        .expect("generate")
        .remove(0)
        .remove(0);
    eprintln!("{:?} then stop token {stop_id} ({:?})", stopped.text, tokenizer.token_text(stop_id));
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.n_tokens as usize, first);
    assert_eq!(stopped.token_ids, free.token_ids[..=first]);
    assert_eq!(stopped.text, tokenizer.decode(&free.token_ids[..first]).expect("decode"));

    // A stop string: the text is cut before it, the ids run to the token that completed it.
    let stop_text = tokenizer.decode(&free.token_ids[5..7]).expect("decode");
    let cut = free.text.find(&stop_text).expect("stop string in the text");
    let by_string =
        generate::generate(model, tokenizer, &StopTokens::new(Vec::new()), &[job(vec![stop_text.clone()])], 8)
            .expect("generate")
            .remove(0)
            .remove(0);
    assert_eq!(by_string.finish_reason, FinishReason::Stop);
    assert_eq!(by_string.text, free.text[..cut]);
    assert_eq!(by_string.n_tokens as usize, by_string.token_ids.len());
    assert_eq!(by_string.token_ids, free.token_ids[..by_string.token_ids.len()]);
    let decoded = tokenizer.decode(&by_string.token_ids).expect("decode");
    assert!(decoded.starts_with(&by_string.text) && decoded.contains(&stop_text), "{decoded:?}");
    assert!(!tokenizer
        .decode(&by_string.token_ids[..by_string.token_ids.len() - 1])
        .expect("decode")
        .contains(&stop_text));
}

#[test]
fn missing_adapter_file_is_named() {
    let spec: ModelSpec = "embedded:gemma-3-270m+adapter=/nonexistent/ethos/adapter.safetensors".parse().expect("spec");
    let err = EmbeddedModel::load(&spec).expect_err("no file").to_string();
    assert!(err.contains("/nonexistent/ethos/adapter.safetensors"), "{err}");
}

#[tokio::test]
async fn embedded_model_loads_an_adapter_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.safetensors");
    {
        let guard = engine();
        let mut adapter = random_adapter(&guard.0, 4, 8.0, 0.01, 6);
        adapter.metadata_mut().insert("run".to_string(), "test".to_string());
        adapter.save(&path).expect("save");
    }
    let digest: String =
        Sha256::digest(std::fs::read(&path).expect("read")).iter().map(|b| format!("{b:02x}")).collect();

    let spec: ModelSpec = format!("embedded:gemma-3-270m+adapter={}", path.display()).parse().expect("spec");
    let model = EmbeddedModel::load(&spec).expect("load");
    let identity = model.identity();
    assert!(identity.starts_with("gemma-3-270m-q4_k_m@sha256:a5fd3b62230aa5ec+adapter@sha256:"), "{identity}");
    assert!(identity.ends_with(&digest[..16]), "{identity} vs {digest}");
    assert_eq!(model.chat_format(), ChatFormat::Transcript);

    let request = ChatRequest {
        messages: vec![Message::user("How often should I water a tomato plant?")],
        sampling: SamplingParams { n: 2, temperature: 0.7, max_tokens: 40, seed: 3, ..SamplingParams::default() },
    };
    let response = model.chat(&request).await.expect("chat");
    // The prompt has no example exchanges: it is the preamble and one turn.
    assert!(response.prompt_tokens.expect("prompt tokens") < 40, "{:?}", response.prompt_tokens);
    let guard = engine();
    let tokenizer = &guard.1;
    let eos: Vec<u32> = StopTokens::from_tokenizer(tokenizer).ids().to_vec();
    for choice in &response.choices {
        eprintln!("reply: {:?} ({:?}, {} tokens)", choice.text, choice.finish_reason, choice.n_tokens);
        assert!(!choice.text.is_empty());
        let ended_on_eos = choice.token_ids.last().is_some_and(|id| eos.contains(id));
        assert_eq!(choice.token_ids.len(), choice.n_tokens as usize + usize::from(ended_on_eos));
        let decoded = tokenizer.decode(&choice.token_ids).expect("decode");
        // The chat format trims the reply (the space after `Assistant:`, trailing newlines).
        assert!(decoded.trim_start().starts_with(&choice.text), "{decoded:?} vs {:?}", choice.text);
    }
}
