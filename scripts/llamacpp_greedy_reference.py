#!/usr/bin/env python3
"""Writes the llama.cpp greedy reference for ethos's embedded Gemma-3 forward.

For each raw prompt (tokenized by llama.cpp with BOS, no chat template) it records the prompt token ids,
the first 20 greedy token ids, the log-probability llama.cpp gives each greedy token, the top 5
log-probabilities at every greedy step (so a test can tell near-ties from real disagreements), and the
top 10 log-probabilities at the first generated position. `crates/ethos-llm/tests/embedded_forward.rs` compares
ethos against this file token id by token id.

Usage (llama-cpp-python lives in the venv):

    /work/cache/venv/bin/python scripts/llamacpp_greedy_reference.py \
        --model /work/cache/gemma-3-270m-q4_k_m.gguf \
        --out crates/ethos-llm/tests/fixtures/greedy_llamacpp.json
"""

import argparse
import hashlib
import json

import numpy as np
from llama_cpp import Llama, __version__ as llama_cpp_version

N_GENERATED = 20
N_TOP = 10

# The last prompt is longer than the 512-token sliding window of Gemma 3's local layers, so the
# reference also pins the window mask.
LONG_PARAGRAPH = (
    "The history of the city is long and varied. Merchants arrived by river, farmers brought grain from the "
    "hills, and the market square grew into the heart of the town. Over the centuries the walls were rebuilt "
    "several times, each time a little further out, as new quarters were added for weavers, smiths and bakers. "
)
PROMPTS = [
    "The capital of France is",
    "To water a tomato plant, you should",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "User: What is a good name for a black cat?\nAssistant:",
    LONG_PARAGRAPH * 12 + "In summary, the city",
]


def log_softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    sha256 = hashlib.sha256()
    with open(args.model, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(chunk)

    llm = Llama(
        model_path=args.model,
        n_ctx=1024,
        n_batch=1024,
        n_ubatch=1024,
        n_threads=args.threads,
        logits_all=True,
        verbose=False,
    )
    cases = []
    for prompt in PROMPTS:
        prompt_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        llm.eval(prompt_ids)
        generated, generated_logprobs, first_top, step_tops = [], [], None, []
        for step in range(N_GENERATED):
            logits = np.array(llm.scores[llm.n_tokens - 1])
            logprobs = log_softmax(logits)
            token = int(np.argmax(logits))
            if step == 0:
                order = np.argsort(-logprobs)[:N_TOP]
                first_top = [{"id": int(i), "logprob": float(logprobs[i])} for i in order]
            order5 = np.argsort(-logprobs)[:5]
            step_tops.append([{"id": int(i), "logprob": float(logprobs[i])} for i in order5])
            generated.append(token)
            generated_logprobs.append(float(logprobs[token]))
            llm.eval([token])
        cases.append(
            {
                "prompt": prompt,
                "prompt_ids": [int(t) for t in prompt_ids],
                "greedy_ids": generated,
                "greedy_logprobs": generated_logprobs,
                "first_top_logprobs": first_top,
                "step_top_logprobs": step_tops,
                "greedy_text": llm.detokenize(generated).decode("utf-8", errors="replace"),
            }
        )
    with open(args.out, "w") as handle:
        json.dump(
            {
                "generator": "scripts/llamacpp_greedy_reference.py",
                "llama_cpp_python": llama_cpp_version,
                "model_sha256": sha256.hexdigest(),
                "cases": cases,
            },
            handle,
            indent=1,
        )
        handle.write("\n")


if __name__ == "__main__":
    main()
