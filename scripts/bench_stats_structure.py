#!/usr/bin/env python3
"""numpy/scipy equivalent of `ethos stats structure` for timing against the Rust benchmark.

    /work/cache/venv/bin/python scripts/bench_stats_structure.py [M.csv O.csv] [--permutations N]

Defaults to the 13 x 33 fixture tests/fixtures/stats/structure/{M,O}.csv and 10,000 permutations. Computes the
observed statistics and the three permutation nulls (mean Spearman, PC1 share, leave-one-out mean Spearman) from
the same permutations, vectorized the way a numpy user would write it: ranks with scipy.stats.rankdata(axis=0),
Spearman as np.corrcoef of ranks, eigvalsh for PC1, and one batched np.linalg.eigh over the 33 leave-one-out
correlation matrices of each permutation. Prints the results and the wall time of the analysis (file reading
excluded, as in the Rust benchmark).
"""

import argparse
import os
import time

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "stats", "structure")


def read(matrix_path, orientation_path):
    with open(matrix_path) as handle:
        header = handle.readline().strip().split(",")
        rows = [line.strip().split(",") for line in handle if line.strip()]
    x = np.array([[float(v) for v in row[1:]] for row in rows])
    with open(orientation_path) as handle:
        handle.readline()
        lower = {line.split(",")[0] for line in handle if line.strip().endswith("lower")}
    for j, name in enumerate(header[1:]):
        if name in lower:
            x[:, j] = -x[:, j]
    return x


def statistics(x):
    n_models, n_evals = x.shape
    ranks = stats.rankdata(x, axis=0)
    rho = np.corrcoef(ranks, rowvar=False)
    mean_spearman = rho[np.triu_indices(n_evals, 1)].mean()
    z = (x - x.mean(0)) / x.std(0)
    corr = np.corrcoef(z, rowvar=False)
    pc1 = np.linalg.eigvalsh(corr)[-1] / np.trace(corr)
    # Leave-one-out: the correlation matrices without column j, all at once.
    keep = ~np.eye(n_evals, dtype=bool)
    sub = np.stack([corr[np.ix_(k, k)] for k in keep])
    _, vectors = np.linalg.eigh(sub)
    loadings = vectors[:, :, -1]
    loadings *= np.where(loadings.sum(1) < 0, -1.0, 1.0)[:, None]
    loo = []
    for j in range(n_evals):
        scores = z[:, keep[j]] @ loadings[j]
        score_ranks = stats.rankdata(scores)
        loo.append(np.corrcoef(score_ranks, ranks[:, j])[0, 1])
    return mean_spearman, pc1, float(np.mean(loo))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("matrix", nargs="?", default=os.path.join(FIXTURE, "M.csv"))
    parser.add_argument("orientation", nargs="?", default=os.path.join(FIXTURE, "O.csv"))
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    x = read(args.matrix, args.orientation)
    start = time.perf_counter()
    observed = statistics(x)
    rng = np.random.default_rng(args.seed)
    nulls = np.empty((args.permutations, 3))
    for k in range(args.permutations):
        permuted = np.column_stack([x[rng.permutation(x.shape[0]), j] for j in range(x.shape[1])])
        nulls[k] = statistics(permuted)
    elapsed = time.perf_counter() - start
    low, high = np.percentile(nulls, [2.5, 97.5], axis=0)
    for idx, name in enumerate(["mean_spearman", "pc1_explained", "loo_mean_spearman"]):
        print(f"{name}: {observed[idx]:.6f}  null 95% [{low[idx]:.6f}, {high[idx]:.6f}]")
    print(f"{x.shape[0]} x {x.shape[1]}, {args.permutations} permutations: {elapsed:.3f} s")


if __name__ == "__main__":
    main()
