#!/usr/bin/env python3
"""llama.cpp throughput on the same GGUF and thread count as `ethos bench generate`.

Measures, through llama-cpp-python's low-level API: prefill tokens/s of one prompt, and greedy decode
tokens/s for `--batch` sequences decoded together (one llama_decode call per step with one token per
sequence), each sequence with the same prompt, matching `ethos bench generate`'s raw forward runs.

    /work/cache/venv/bin/python scripts/llamacpp_bench.py --model /work/cache/gemma-3-270m-q4_k_m.gguf \
        --threads 2 --batch 1,8 --prompt-tokens 128 --decode-steps 64
"""

import argparse
import json
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

PROMPT_TEXT = (
    "The history of the city is long and varied. Merchants arrived by river, farmers brought "
    "grain from the hills, and the market square grew into the heart of the town. "
)


def run(llm, ctx, prompt, batch_size, decode_steps):
    n_vocab = llm.n_vocab()
    memory = llama_cpp.llama_get_memory(ctx)
    llama_cpp.llama_memory_clear(memory, True)
    batch = llama_cpp.llama_batch_init(max(len(prompt) * batch_size, batch_size), 0, batch_size)
    try:
        # Prefill every sequence's prompt in one batch; logits only for each last prompt token.
        start = time.perf_counter()
        n = 0
        for seq in range(batch_size):
            for pos, token in enumerate(prompt):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = pos == len(prompt) - 1
                n += 1
        batch.n_tokens = n
        status = llama_cpp.llama_decode(ctx, batch)
        if status != 0:
            raise RuntimeError(f"prefill of batch {batch_size} failed with status {status}")
        prefill_seconds = time.perf_counter() - start
        last_rows = [(seq + 1) * len(prompt) - 1 for seq in range(batch_size)]
        next_tokens = [
            int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,))))
            for row in last_rows
        ]

        start = time.perf_counter()
        for step in range(decode_steps):
            for seq in range(batch_size):
                batch.token[seq] = next_tokens[seq]
                batch.pos[seq] = len(prompt) + step
                batch.n_seq_id[seq] = 1
                batch.seq_id[seq][0] = seq
                batch.logits[seq] = True
            batch.n_tokens = batch_size
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("decode failed")
            next_tokens = [
                int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, seq), shape=(n_vocab,))))
                for seq in range(batch_size)
            ]
        decode_seconds = time.perf_counter() - start
    finally:
        llama_cpp.llama_batch_free(batch)
    return {
        "batch": batch_size,
        "prefill_tokens_per_s": batch_size * len(prompt) / prefill_seconds,
        "decode_tokens_per_s": batch_size * decode_steps / decode_seconds,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-steps", type=int, default=64)
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    n_ctx = max(batches) * (args.prompt_tokens + args.decode_steps + 8)
    llm = Llama(
        model_path=args.model,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=min(n_ctx, 512),
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    # The high-level Llama object builds a one-sequence context; batched decoding needs a context
    # with one KV sequence per batch row, built here from the same settings.
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_ctx
    params.n_ubatch = min(n_ctx, 512)
    params.n_threads = args.threads
    params.n_threads_batch = args.threads
    params.n_seq_max = max(batches)
    params.kv_unified = True
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    if not ctx:
        raise RuntimeError("cannot create a batched llama.cpp context")
    chunk = llm.tokenize(PROMPT_TEXT.encode(), add_bos=False, special=False)
    prompt = [llm.token_bos()]
    while len(prompt) < args.prompt_tokens:
        prompt.extend(chunk)
    prompt = prompt[: args.prompt_tokens]
    run(llm, ctx, prompt[:8], 1, 2)  # warm-up
    # Batch 1 runs on the Llama object's own one-sequence context, which is how llama.cpp serves a
    # single stream; in the multi-sequence context one-token steps were 80x slower here.
    runs = [run(llm, llm.ctx if b == 1 else ctx, prompt, b, args.decode_steps) for b in batches]
    llama_cpp.llama_free(ctx)
    print(json.dumps({"llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
                      "prompt_tokens": args.prompt_tokens, "decode_steps": args.decode_steps, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
