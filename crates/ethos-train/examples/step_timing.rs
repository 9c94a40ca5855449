//! Times one forward + backward pass of the trainable model over a sequence (LoRA on every
//! projection), the unit of GRPO and SFT cost.
//!
//! `cargo run --release -p ethos-train --example step_timing -- [SEQ_LEN] [RANK] [REPEATS]`

use std::time::Instant;

use candle_core::Device;
use ethos_llm::embedded::ensure_gemma_gguf;
use ethos_llm::embedded::lora::{LoraConfig, LoraTarget};
use ethos_train::{Lora, TrainableGemma};

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|arg| arg.parse().ok()).collect();
    let seq_len = args.first().copied().unwrap_or(256);
    let rank = args.get(1).copied().unwrap_or(16);
    let repeats = args.get(2).copied().unwrap_or(3);
    let started = Instant::now();
    let model = TrainableGemma::load(&ensure_gemma_gguf()?, &Device::Cpu)?;
    eprintln!("load + dequantize: {:.2} s", started.elapsed().as_secs_f64());
    let config = LoraConfig { rank, alpha: 2.0 * rank as f64, targets: LoraTarget::ALL.to_vec() };
    let lora = Lora::init(&model, config, 1)?;
    let tokens: Vec<u32> = (0..seq_len as u32).map(|idx| 2 + (idx * 7919) % 50_000).collect();
    for repeat in 0..repeats {
        let started = Instant::now();
        let scores = model.token_logprobs(&tokens, 1, Some(&lora))?;
        let loss = scores.logprobs.mean_all()?;
        let forward = started.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        let total = started.elapsed().as_secs_f64();
        let n_grads = lora.named_vars().iter().filter(|(_, var)| grads.get(var.as_tensor()).is_some()).count();
        println!(
            "repeat {repeat}: forward {forward:.3} s, backward {:.3} s, total {total:.3} s ({:.1} tok/s), {n_grads} gradients",
            total - forward,
            seq_len as f64 / total
        );
    }
    let started = Instant::now();
    let _ = model.token_logprobs(&tokens, 1, None)?;
    println!("reference forward (no adapter, no graph): {:.3} s", started.elapsed().as_secs_f64());
    Ok(())
}
