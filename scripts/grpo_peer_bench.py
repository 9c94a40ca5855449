#!/usr/bin/env python3
"""PyTorch peer figure for one GRPO step (and one LoRA forward+backward) on CPU.

What it measures: the same shapes and LoRA settings as the Rust trainer in `crates/ethos-train`,
run with PyTorch + transformers + peft on a randomly initialised Gemma-3-270M (built from a config;
no model hub access, weights do not matter for speed). Everything is float32 on the CPU.

Usage:

    /work/cache/torchvenv/bin/python scripts/grpo_peer_bench.py \
        --group 8 --prompt-len 128 --reply-len 128 --threads 2 --repeats 3 --attn eager,sdpa
    /work/cache/torchvenv/bin/python scripts/grpo_peer_bench.py \
        --mode forward-backward --seq-len 256 --threads 2 --repeats 3 --attn eager,sdpa

Each run prints one JSON line per attention implementation (progress goes to stderr).

On a machine that is busy with other work (load above the thread count), PyTorch's OpenMP threads
spin-wait for each other and a descheduled thread stalls every op: a (2, 8)-token forward took 5.4 s
with 2 threads against 0.34 s with 1 thread while cargo was compiling. Prefix the command with
`OMP_WAIT_POLICY=PASSIVE` there (0.38 s for the same forward); on an idle machine leave it unset.
The JSON records the OMP_* variables and the load average before and after.

Modes:
  grpo (default)    one GRPO step, timed by phase:
                    1. sample: `generate` of G replies to one random prompt (batch G, KV cache,
                       do_sample, temperature 1, top_p 1, top_k off, exactly reply-len new tokens);
                    2. score: reference log-probs (adapter disabled) and old log-probs (adapter on),
                       no grad, over the (G, prompt+reply) batch, reply tokens only;
                    3. train: policy forward with grad, GRPO loss (random per-sequence advantages,
                       ratio exp(new - old), clipped surrogate eps 0.2, k3 KL to the reference with
                       beta 0.04, mean over the G*reply-len tokens), backward, clip grad norm 1.0,
                       AdamW (lr 1e-5) over the LoRA parameters only.
                    tokens/s: G*reply_len for sampling, G*(prompt+reply) for score, train and the
                    whole step.
  forward-backward  one sequence of seq-len tokens: forward with the adapter, mean next-token NLL,
                    backward (only the LoRA parameters require grad); tokens/s = seq_len / time.

A warm-up step runs first, then `--repeats` timed steps; figures are medians over the repeats.
By default the output head is computed only for the positions that predict reply tokens
(transformers' `logits_to_keep`, as the Rust trainer does); `--full-logits` computes it for every
position instead.

Environment (how it was set up on the 2-core, no-GPU dev machine, 2026):
    python3 -m venv /work/cache/torchvenv          # Python 3.11.7
    # 1. CPU wheel index: unreachable here (only PyPI is reachable), DNS failure:
    #    pip install torch --index-url https://download.pytorch.org/whl/cpu
    # 2. `pip install --no-deps torch` + pure-python deps: installs, but `import torch` FAILS
    #    (the PyPI Linux wheel is a CUDA build: libtorch_global_deps.so needs libcudart.so.13,
    #    libcublasLt etc. from the nvidia-* wheels), so that route does not work.
    # 3. What worked: plain PyPI, nvidia-* and triton included (~45 s download, venv 5.4 GB);
    #    CUDA is simply unused (torch.cuda.is_available() is False):
    /work/cache/torchvenv/bin/pip install torch==2.15.0
    /work/cache/torchvenv/bin/pip install transformers peft
    # versions: torch 2.15.0+cu132, transformers 5.23.0, peft 0.21.2, numpy 2.4.6
    #           (accelerate 1.15.0, huggingface-hub 2.4.0 came as dependencies)

Measured on the dev machine (2-core AMD EPYC, AVX2, --threads 2, 2026-11-23), medians of 3 repeats:
    machine idle (1-min load 0.7 before the run; default OpenMP policy):
      grpo G=8 128+128  eager: sample 51.4 s (19.9 tok/s), score 22.3 s (91.9 tok/s),
                               train 21.3 s (96.3 tok/s), step 95.5 s -> 21.4 tok/s
                        sdpa:  sample 47.3 s (21.7 tok/s), score 20.7 s (98.8 tok/s),
                               train 20.4 s (100.2 tok/s), step 89.2 s -> 23.0 tok/s
      forward-backward seq 256  eager 4.14 s (61.9 tok/s), sdpa 3.74 s (68.5 tok/s)
    while cargo was compiling (load 3-6, OMP_WAIT_POLICY=PASSIVE): step 6.4 tok/s (eager),
      9.5 tok/s (sdpa); forward-backward 22.4 / 22.8 tok/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

DEFAULT_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

# google/gemma-3-270m
GEMMA3_270M = dict(
    vocab_size=262144,
    hidden_size=640,
    intermediate_size=2048,
    num_hidden_layers=18,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    sliding_window=512,
    query_pre_attn_scalar=256,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
    hidden_activation="gelu_pytorch_tanh",
    rms_norm_eps=1e-6,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=2,
)
ROPE_GLOBAL = 1_000_000.0
ROPE_LOCAL = 10_000.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_config(attn: str):
    from transformers import Gemma3TextConfig

    n_layers = GEMMA3_270M["num_hidden_layers"]
    layer_types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n_layers)]
    kwargs = dict(GEMMA3_270M, layer_types=layer_types)
    try:
        # transformers >= 5: one rope dict per layer type
        config = Gemma3TextConfig(
            **kwargs,
            rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": ROPE_GLOBAL},
                "sliding_attention": {"rope_type": "default", "rope_theta": ROPE_LOCAL},
            },
        )
    except TypeError:
        # transformers 4.x
        config = Gemma3TextConfig(**kwargs, rope_theta=ROPE_GLOBAL, rope_local_base_freq=ROPE_LOCAL)
    config._attn_implementation = attn
    return config


def build_model(args, attn: str):
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(args.seed)
    config = build_config(attn)
    base = Gemma3ForCausalLM(config).to(torch.float32)
    base.config._attn_implementation = attn
    base.generation_config.top_k = None
    base.eval()
    lora = LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=0.0,
        target_modules=[t.strip() for t in args.targets.split(",") if t.strip()],
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    model.eval()  # no dropout anywhere (LoRA dropout is 0 as well); grads still flow
    n_total = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    used = getattr(base.config, "_attn_implementation", attn)
    return model, n_total, n_train, used


def token_logprobs(model, seqs: torch.Tensor, first_target: int, full_logits: bool) -> torch.Tensor:
    """(B, L) tokens -> (B, L - first_target) log-probs of tokens[:, first_target:]."""
    n_targets = seqs.shape[1] - first_target
    if full_logits:
        logits = model(input_ids=seqs, use_cache=False).logits[:, first_target - 1 : -1, :]
    else:
        # keep the last n_targets + 1 positions, drop the final one (it predicts nothing)
        logits = model(input_ids=seqs, use_cache=False, logits_to_keep=n_targets + 1).logits[:, :-1, :]
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, seqs[:, first_target:].unsqueeze(-1)).squeeze(-1)


def grpo_step(model, optimizer, lora_params, args, gen) -> dict:
    G, P, R = args.group, args.prompt_len, args.reply_len
    vocab = GEMMA3_270M["vocab_size"]
    times = {}

    # 1. sampling
    prompt = torch.randint(3, vocab, (1, P), generator=gen)
    input_ids = prompt.expand(G, P).contiguous()
    attention_mask = torch.ones_like(input_ids)
    t0 = time.perf_counter()
    with torch.no_grad():
        seqs = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=None,
            min_new_tokens=R,
            max_new_tokens=R,
            use_cache=True,
            pad_token_id=GEMMA3_270M["pad_token_id"],
            eos_token_id=GEMMA3_270M["eos_token_id"],
        )
    times["sample"] = time.perf_counter() - t0
    assert seqs.shape == (G, P + R), f"generate returned {tuple(seqs.shape)}, wanted {(G, P + R)}"

    # 2. scoring: reference (adapter off) and old (adapter on), no grad
    t0 = time.perf_counter()
    with torch.no_grad():
        with model.disable_adapter():
            ref_lp = token_logprobs(model, seqs, P, args.full_logits)
        t_mid = time.perf_counter()
        old_lp = token_logprobs(model, seqs, P, args.full_logits)
    t1 = time.perf_counter()
    times["score_ref"] = t_mid - t0
    times["score_old"] = t1 - t_mid
    times["score"] = t1 - t0

    # 3. policy forward with grad, GRPO loss, backward, clip, AdamW
    advantages = torch.randn(G, 1, generator=gen)
    t0 = time.perf_counter()
    new_lp = token_logprobs(model, seqs, P, args.full_logits)
    ratio = torch.exp(new_lp - old_lp)
    surrogate = torch.minimum(ratio * advantages, torch.clamp(ratio, 1.0 - args.clip_eps, 1.0 + args.clip_eps) * advantages)
    log_ref_over_new = ref_lp - new_lp
    kl = torch.exp(log_ref_over_new) - log_ref_over_new - 1.0  # k3 estimator
    loss = (-surrogate + args.beta * kl).mean()
    t_fwd = time.perf_counter()
    loss.backward()
    t_bwd = time.perf_counter()
    grad_norm = torch.nn.utils.clip_grad_norm_(lora_params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t1 = time.perf_counter()
    times["train_forward"] = t_fwd - t0
    times["train_backward"] = t_bwd - t_fwd
    times["train_optim"] = t1 - t_bwd
    times["train"] = t1 - t0
    times["total"] = times["sample"] + times["score"] + times["train"]
    times["_loss"] = float(loss.detach())
    times["_grad_norm"] = float(grad_norm)
    return times


def fwd_bwd_step(model, lora_params, args, gen) -> dict:
    L = args.seq_len
    seq = torch.randint(3, GEMMA3_270M["vocab_size"], (1, L), generator=gen)
    t0 = time.perf_counter()
    lp = token_logprobs(model, seq, 1, full_logits=True)
    loss = -lp.mean()
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    for p in lora_params:
        p.grad = None
    return {"forward": t1 - t0, "backward": t2 - t1, "total": t2 - t0, "_loss": float(loss.detach())}


def versions() -> dict:
    import numpy
    import peft
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "numpy": numpy.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkl": torch.backends.mkl.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def run_one(args, attn: str) -> dict:
    model, n_total, n_train, used_attn = build_model(args, attn)
    lora_params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(args.seed)
    log(f"[{attn}] params {n_total / 1e6:.1f}M, LoRA trainable {n_train / 1e6:.3f}M")

    if args.mode == "grpo":
        optimizer = torch.optim.AdamW(lora_params, lr=args.lr)

        def step():
            return grpo_step(model, optimizer, lora_params, args, gen)

    else:

        def step():
            return fwd_bwd_step(model, lora_params, args, gen)

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    warm = step()
    log(f"[{attn}] warm-up {warm['total']:.2f}s ({time.perf_counter() - t0:.1f}s wall)")
    runs = []
    for i in range(args.repeats):
        r = step()
        runs.append(r)
        log(f"[{attn}] repeat {i + 1}/{args.repeats}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))
    load_after = os.getloadavg()

    phases = [k for k in runs[0] if not k.startswith("_")]
    median = {k: statistics.median(r[k] for r in runs) for k in phases}
    out = {
        "bench": "grpo_peer_bench",
        "mode": args.mode,
        "attn_implementation": used_attn,
        "threads": torch.get_num_threads(),
        "median_seconds": {k: round(v, 4) for k, v in median.items()},
        "all_seconds": {k: [round(r[k], 4) for r in runs] for k in phases},
        "warmup_seconds": round(warm["total"], 4),
    }
    if args.mode == "grpo":
        G, P, R = args.group, args.prompt_len, args.reply_len
        full = G * (P + R)
        out["shapes"] = {"group": G, "prompt_len": P, "reply_len": R, "tokens_step": full, "tokens_sampled": G * R}
        out["tokens_per_s"] = {
            "sample": round(G * R / median["sample"], 2),
            "score": round(full / median["score"], 2),
            "train": round(full / median["train"], 2),
            "step": round(full / median["total"], 2),
        }
        out["grpo"] = {"clip_eps": args.clip_eps, "beta": args.beta, "lr": args.lr, "max_grad_norm": 1.0,
                       "last_loss": runs[-1]["_loss"], "last_grad_norm": runs[-1]["_grad_norm"]}
    else:
        out["shapes"] = {"seq_len": args.seq_len, "batch": 1}
        out["tokens_per_s"] = {
            "forward": round(args.seq_len / median["forward"], 2),
            "forward_backward": round(args.seq_len / median["total"], 2),
        }
    out["model"] = {"config": "gemma-3-270m (random init, float32)", "params": n_total, "dtype": "float32",
                    "full_logits": args.full_logits}
    out["lora"] = {"rank": args.rank, "alpha": args.alpha, "dropout": 0.0, "targets": args.targets.split(","),
                   "trainable_params": n_train}
    out["versions"] = versions()
    out["machine"] = {"cpu_count": os.cpu_count(),
                      "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")},
                      "loadavg_before": [round(x, 2) for x in load_before],
                      "loadavg_after": [round(x, 2) for x in load_after],
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    del model
    gc.collect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["grpo", "forward-backward"], default="grpo")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--reply-len", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=256, help="forward-backward mode only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--attn", default="eager", help="comma list of attention implementations: eager,sdpa")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--targets", default=DEFAULT_TARGETS)
    ap.add_argument("--clip-eps", type=float, default=0.2)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--full-logits", action="store_true", help="output head over every position")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    torch.set_num_threads(args.threads)
    for attn in [a.strip() for a in args.attn.split(",") if a.strip()]:
        print(json.dumps(run_one(args, attn)), flush=True)


if __name__ == "__main__":
    main()
