//! The trainable forward pass against the quantized inference path, on the real Gemma-3-270M.
//!
//! Both read the same Q4_K_M weights; inference multiplies them quantized and re-quantizes
//! activations to 8 bits before every matmul (and keeps f16 keys and values), training
//! dequantizes them to f32. So per-token log-probabilities agree up to that rounding, not
//! exactly. The tolerances below were set from measured differences (printed by the test) with
//! headroom, and are far below what a structural error gives (a wrong rope, mask or norm moves
//! log-probabilities by whole nats).

use std::sync::OnceLock;

use candle_core::Device;
use ethos_llm::embedded::chat_format::ChatFormat;
use ethos_llm::embedded::gemma3::{Gemma3, KvCache, LogitRows, Segment};
use ethos_llm::embedded::generate::log_sum_exp;
use ethos_llm::embedded::lora::{LoraConfig, LoraTarget};
use ethos_llm::embedded::{ensure_gemma_gguf, load_gemma, GemmaTokenizer};
use ethos_train::{Lora, TrainableGemma};
use rand::{Rng, SeedableRng};

const TEXT: &str = "The following is a conversation between a user and a helpful assistant.\n\nUser: My doctor \
prescribed antibiotics for ten days but I feel better after four. Can I stop now?\nAssistant: It is best to finish the \
full course unless your doctor tells you otherwise, because stopping early can let the infection come back.";

/// Bounds on per-token |log-probability| differences (nats), from measurements with headroom.
const MEAN_TOLERANCE: f32 = 0.15;
const MAX_TOLERANCE: f32 = 1.0;
const SIGNED_TOLERANCE: f32 = 0.05;

struct Models {
    inference: std::sync::Mutex<Gemma3>,
    tokenizer: GemmaTokenizer,
    trainable: TrainableGemma,
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let path = ensure_gemma_gguf().expect("the embedded model is fetched by .ci/run");
        let (inference, tokenizer) = load_gemma(&path).unwrap();
        let trainable = TrainableGemma::load(&path, &Device::Cpu).unwrap();
        Models { inference: std::sync::Mutex::new(inference), tokenizer, trainable }
    })
}

/// Log-probability of each token after the first under the inference path.
fn inference_logprobs(model: &Gemma3, tokens: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(model.config());
    let mut segments = [Segment { cache: &mut cache, tokens: &tokens[..tokens.len() - 1], logits: LogitRows::All }];
    let logits = model.forward(&mut segments).unwrap();
    (0..tokens.len() - 1)
        .map(|row| {
            let row_logits = logits.row(0, row).unwrap();
            (row_logits[tokens[row + 1] as usize] as f64 - log_sum_exp(row_logits)) as f32
        })
        .collect()
}

/// Mean and maximum absolute difference, and the mean signed difference (rounding noise is
/// centred on zero; a structural error is not).
fn compare(inference: &[f32], trainable: &[f32]) -> (f32, f32, f32) {
    assert_eq!(inference.len(), trainable.len());
    let diffs: Vec<f32> = inference.iter().zip(trainable).map(|(a, b)| a - b).collect();
    let mean = diffs.iter().map(|d| d.abs()).sum::<f32>() / diffs.len() as f32;
    let max = diffs.iter().map(|d| d.abs()).fold(0.0, f32::max);
    let signed = diffs.iter().sum::<f32>() / diffs.len() as f32;
    (mean, max, signed)
}

/// A text longer than the 512-token sliding window, so the local layers' window is exercised.
fn long_text() -> String {
    let topics = ["antibiotics", "sleep", "budgets", "gardening", "bridges", "tax forms", "vaccines", "fonts"];
    let mut text = String::from("The following is a long conversation between a user and a helpful assistant.\n\n");
    for (idx, topic) in topics.iter().cycle().take(16).enumerate() {
        text.push_str(&format!(
            "User: Question {idx}: what is one thing most people get wrong about {topic}?\nAssistant: Many people \
             assume {topic} are simple, but the details matter: check the instructions, ask someone who knows, and \
             do not rush the decision.\n"
        ));
    }
    text
}

/// A LoRA with every B filled with small random values, so the adapter changes the outputs.
fn random_lora(trainable: &TrainableGemma, seed: u64) -> Lora {
    let config = LoraConfig { rank: 8, alpha: 16.0, targets: LoraTarget::ALL.to_vec() };
    let lora = Lora::init(trainable, config, seed).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 1);
    for (name, var) in lora.named_vars() {
        if name.ends_with("lora_B.weight") {
            let values: Vec<f32> = (0..var.elem_count()).map(|_| rng.random_range(-0.02f32..0.02)).collect();
            var.set(&candle_core::Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap()).unwrap();
        }
    }
    lora
}

#[test]
fn trainable_log_probs_match_the_inference_path_with_and_without_an_adapter() {
    let models = models();
    let tokens = models.tokenizer.encode(TEXT, true).unwrap();
    assert!(tokens.len() > 50, "{} tokens", tokens.len());

    let mut inference = models.inference.lock().unwrap();
    inference.set_adapter(None).unwrap();
    let reference = inference_logprobs(&inference, &tokens);
    let scores = models.trainable.token_logprobs(&tokens, 1, None).unwrap();
    let trained = scores.logprobs.to_vec1::<f32>().unwrap();
    let (mean, max, signed) = compare(&reference, &trained);
    eprintln!("base: mean |diff| {mean:.4}, max {max:.4}, signed {signed:+.4} over {} tokens", trained.len());
    assert!(mean < MEAN_TOLERANCE && max < MAX_TOLERANCE && signed.abs() < SIGNED_TOLERANCE, "base model");

    let long_tokens = models.tokenizer.encode(&long_text(), true).unwrap();
    assert!(long_tokens.len() > 560, "{} tokens", long_tokens.len());
    let long_reference = inference_logprobs(&inference, &long_tokens);
    let long_trained =
        models.trainable.token_logprobs(&long_tokens, 1, None).unwrap().logprobs.to_vec1::<f32>().unwrap();
    let (mean, max, signed) = compare(&long_reference[520..], &long_trained[520..]);
    eprintln!("beyond the window: mean |diff| {mean:.4}, max {max:.4}, signed {signed:+.4}");
    assert!(mean < MEAN_TOLERANCE && max < MAX_TOLERANCE && signed.abs() < SIGNED_TOLERANCE, "long sequence");
    assert_eq!(scores.stats.entropy.len(), trained.len());
    assert!(scores.stats.entropy.iter().all(|&entropy| entropy >= 0.0 && entropy.is_finite()));

    let lora = random_lora(&models.trainable, 3);
    let adapter = lora.to_adapter(ChatFormat::FewShotTranscript).unwrap();
    inference.set_adapter(Some(&adapter)).unwrap();
    let reference_adapted = inference_logprobs(&inference, &tokens);
    inference.set_adapter(None).unwrap();
    let trained_adapted =
        models.trainable.token_logprobs(&tokens, 1, Some(&lora)).unwrap().logprobs.to_vec1::<f32>().unwrap();
    let (shift, _, _) = compare(&trained, &trained_adapted);
    let (mean, max, signed) = compare(&reference_adapted, &trained_adapted);
    eprintln!("adapter: shift from base {shift:.4}; mean |diff| {mean:.4}, max {max:.4}, signed {signed:+.4}");
    assert!(shift > 2.0 * mean, "the random adapter should move log-probabilities more than rounding (moved {shift})");
    assert!(mean < MEAN_TOLERANCE && max < MAX_TOLERANCE && signed.abs() < SIGNED_TOLERANCE, "adapted model");
}

/// The autograd gradient of a sequence's summed log-probability with respect to one LoRA weight
/// agrees with a central finite difference, through every fused op and the attention.
#[test]
fn lora_gradients_match_finite_differences() {
    let models = models();
    let tokens = models.tokenizer.encode("User: Is the sea salty?\nAssistant: Yes, it is salty.", true).unwrap();
    let lora = random_lora(&models.trainable, 9);
    let named = lora.named_vars();
    let total = |lora: &Lora| -> f64 {
        let scores = models.trainable.token_logprobs(&tokens, 3, Some(lora)).unwrap();
        scores.logprobs.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64
    };
    let scores = models.trainable.token_logprobs(&tokens, 3, Some(&lora)).unwrap();
    let grads = scores.logprobs.sum_all().unwrap().backward().unwrap();

    // The directional derivative along the gradient itself equals the gradient's norm; a
    // central difference along that direction (every LoRA tensor moves) has a large, well
    // conditioned signal, unlike single f32 elements.
    let gradient: Vec<(candle_core::Var, candle_core::Tensor)> =
        named.iter().map(|(_, var)| (var.clone(), grads.get(var.as_tensor()).unwrap().clone())).collect();
    let norm: f64 = gradient
        .iter()
        .map(|(_, grad)| grad.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64)
        .sum::<f64>()
        .sqrt();
    let originals: Vec<candle_core::Tensor> = gradient.iter().map(|(var, _)| var.as_tensor().copy().unwrap()).collect();
    let step = 2e-2;
    let shifted = |delta: f64| {
        for ((var, grad), original) in gradient.iter().zip(&originals) {
            var.set(&(original + (grad * (delta / norm)).unwrap()).unwrap()).unwrap();
        }
        total(&lora)
    };
    let numeric = (shifted(step) - shifted(-step)) / (2.0 * step);
    for ((var, _), original) in gradient.iter().zip(&originals) {
        var.set(original).unwrap();
    }
    eprintln!("gradient norm {norm:.5}, directional finite difference {numeric:.5}");
    assert!(norm > 0.1, "gradient norm {norm}");
    assert!((numeric - norm).abs() < 0.03 * norm, "autograd norm {norm}, finite difference {numeric}");
}

/// A packed group scores each reply as the reply's own sequence does, and the gradient of the
/// group's summed log-probabilities equals the sum of the per-sequence gradients. Only float
/// summation order differs, so the tolerances are tight: a wrong position, mask or predecessor
/// row moves log-probabilities by far more.
#[test]
fn packed_groups_score_replies_as_separate_sequences_do() {
    let models = models();
    let prompt = models.tokenizer.encode("User: Should I stop my antibiotics early?\nAssistant:", true).unwrap();
    let replies: Vec<Vec<u32>> = [
        " No, finish the course your doctor prescribed.",
        " Ask your doctor first.",
        " Yes.",
        " Stopping early can let the infection come back, so finish the full course unless told otherwise.",
    ]
    .iter()
    .map(|reply| models.tokenizer.encode(reply, false).unwrap())
    .collect();
    let reply_refs: Vec<&[u32]> = replies.iter().map(Vec::as_slice).collect();
    let group = ethos_train::PackedGroup::new(&prompt, &reply_refs).unwrap();
    assert!(group.n_rows() < replies.iter().map(|reply| prompt.len() + reply.len() - 1).sum::<usize>());
    let lora = random_lora(&models.trainable, 21);
    let named = lora.named_vars();

    let packed = models.trainable.group_logprobs(&group, Some(&lora)).unwrap();
    assert_eq!(packed.len(), replies.len());
    let mut packed_total: Option<candle_core::Tensor> = None;
    let mut separate_grads: Vec<candle_core::Tensor> = Vec::new();
    let mut max_diff = 0f32;
    for (reply, scores) in replies.iter().zip(&packed) {
        let tokens: Vec<u32> = prompt.iter().chain(reply).copied().collect();
        let alone = models.trainable.token_logprobs(&tokens, prompt.len(), Some(&lora)).unwrap();
        let (a, b) = (scores.logprobs.to_vec1::<f32>().unwrap(), alone.logprobs.to_vec1::<f32>().unwrap());
        assert_eq!(a.len(), reply.len());
        max_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(max_diff, f32::max);
        for (x, y) in scores.stats.entropy.iter().zip(&alone.stats.entropy) {
            assert!((x - y).abs() < 1e-3, "entropy {x} vs {y}");
        }
        let grads = alone.logprobs.sum_all().unwrap().backward().unwrap();
        for (index, (_, var)) in named.iter().enumerate() {
            let grad = grads.get(var.as_tensor()).unwrap().clone();
            if index < separate_grads.len() {
                separate_grads[index] = (&separate_grads[index] + grad).unwrap();
            } else {
                separate_grads.push(grad);
            }
        }
        let sum = scores.logprobs.sum_all().unwrap();
        packed_total = Some(match packed_total {
            None => sum,
            Some(total) => (total + sum).unwrap(),
        });
    }
    eprintln!("packed vs separate: max |log-prob diff| {max_diff:.2e}");
    assert!(max_diff < 1e-3, "max |diff| {max_diff}");

    let packed_grads = packed_total.unwrap().backward().unwrap();
    let (mut diff_sq, mut norm_sq) = (0f64, 0f64);
    for ((_, var), separate) in named.iter().zip(&separate_grads) {
        let packed = packed_grads.get(var.as_tensor()).unwrap();
        diff_sq += (packed - separate).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        norm_sq += separate.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    }
    let relative = (diff_sq / norm_sq).sqrt();
    eprintln!("packed vs separate: relative gradient difference {relative:.2e} (norm {:.3})", norm_sq.sqrt());
    assert!(norm_sq > 0.0 && relative < 1e-3, "relative gradient difference {relative}");
}
