#!/usr/bin/env python3
"""Generate the reference fixtures of ethos-stats and `ethos stats` from scipy / statsmodels / numpy.

Run with the project venv (numpy 2.4, scipy 1.17.1, statsmodels 0.15):

    /work/cache/venv/bin/python scripts/gen_stats_fixtures.py

Writes tests/fixtures/stats/**. Everything is seeded, so reruns reproduce the same files. Each reference value
says where it comes from (the "Reference" comments below). Deterministic values are compared by the Rust tests to
1e-9 relative; randomized ones (bootstrap CIs, permutation nulls) cannot share a random stream with numpy, so the
tests compare them to the numpy values with a Monte Carlo tolerance and check the fast permutation path exactly on
explicit permutations stored here.
"""

import json
import os
import sys

import numpy as np
import scipy
import statsmodels
import statsmodels.api as sm
from scipy import stats
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from statsmodels.stats.multitest import multipletests

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "stats")
ALPHA = 0.05


def out(relative, text):
    path = os.path.join(ROOT, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def dump(relative, value):
    out(relative, json.dumps(value, indent=1, allow_nan=False) + "\n")


def jsonl(records):
    return "".join(json.dumps(record) + "\n" for record in records)


def fl(values):
    """Floats for JSON; NaN (not valid JSON) is written as null and read back as NaN by the tests."""
    return [None if np.isnan(v) else float(v) for v in values]


# ----------------------------------------------------------------------------------------------------------------
# Reference implementations, each a direct transcription of DESIGN.md "Statistics" into scipy/statsmodels calls.
# ----------------------------------------------------------------------------------------------------------------

def welch(a, b):
    """Reference: scipy.stats.ttest_ind(b, a, equal_var=False) (Welch; Welch-Satterthwaite df in res.df)."""
    res = stats.ttest_ind(b, a, equal_var=False)
    return {"t": float(res.statistic), "df": float(res.df), "p": float(res.pvalue),
            "mean_difference": float(np.mean(b) - np.mean(a))}


def paired(a, b):
    """Reference: scipy.stats.ttest_rel(b, a) (one-sample t of b - a, df = n - 1)."""
    res = stats.ttest_rel(b, a)
    return {"t": float(res.statistic), "df": float(res.df), "p": float(res.pvalue),
            "mean_difference": float(np.mean(np.asarray(b) - np.asarray(a)))}


def bh(p):
    """Reference: statsmodels multipletests(method='fdr_bh'), cross-checked with the step-up written out."""
    q = multipletests(p, method="fdr_bh")[1]
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="mergesort")
    m = len(p)
    raw = p[order] * m / np.arange(1, m + 1)
    mine = np.empty(m)
    mine[order] = np.minimum(1.0, np.minimum.accumulate(raw[::-1])[::-1])
    assert np.allclose(q, mine, rtol=1e-14, atol=0), (q, mine)
    return fl(q)


def sign_p(wins, losses):
    """Reference: scipy.stats.binomtest(wins, wins + losses, 0.5).pvalue (two-sided); 1 with no trials."""
    if wins + losses == 0:
        return 1.0
    return float(stats.binomtest(wins, wins + losses, 0.5).pvalue)


def pct(values, q):
    """Reference: numpy.percentile(values, q) with the default method='linear'."""
    return float(np.percentile(np.asarray(values, dtype=float), q))


def zscore(x):
    """Reference: scipy.stats.zscore(x, axis=0) (population sd, ddof=0)."""
    return stats.zscore(np.asarray(x, dtype=float), axis=0)


def pc1_of(z):
    """PC1 of z-scored columns: eigh of the correlation matrix, sign so that the loadings sum > 0.
    Reference: numpy.linalg.eigh(numpy.corrcoef(z, rowvar=False))."""
    corr = np.atleast_2d(np.corrcoef(z, rowvar=False))
    values, vectors = np.linalg.eigh(corr)
    loadings = vectors[:, -1]
    if loadings.sum() < 0:
        loadings = -loadings
    return values[::-1], np.trace(corr), loadings, z @ loadings


def structure(x):
    """The structure statistics of DESIGN.md for an oriented matrix x (models x evals).
    - mean Spearman: mean of the upper triangle of scipy.stats.spearmanr(x).statistic (average ranks);
    - PC1 share: largest eigenvalue / trace of the correlation matrix of z-scored columns;
    - leave-one-out: Spearman(PC1 scores of the other z-scored columns, held-out column), averaged;
    - clustering: scipy linkage(squareform(1 - rho), 'average'), leaves_list."""
    x = np.asarray(x, dtype=float)
    n_evals = x.shape[1]
    rho = stats.spearmanr(x).statistic if n_evals > 2 else np.array([[1, stats.spearmanr(x[:, 0], x[:, 1]).statistic], [stats.spearmanr(x[:, 0], x[:, 1]).statistic, 1]])
    rho = np.asarray(rho)
    upper = rho[np.triu_indices(n_evals, 1)]
    z = zscore(x)
    eigenvalues, trace, loadings, scores = pc1_of(z)
    loo = []
    for held_out in range(n_evals):
        others = np.delete(z, held_out, axis=1)
        loo.append(float(stats.spearmanr(pc1_of(others)[3], x[:, held_out]).statistic))
    distance = np.clip(1.0 - rho, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    return {
        "mean_spearman": float(upper.mean()),
        "pc1_explained": float(eigenvalues[0] / trace),
        "loo_mean_spearman": float(np.mean(loo)),
        "loo_spearman": loo,
        "spearman_matrix": [fl(row) for row in rho],
        "eigenvalues": fl(eigenvalues),
        "pc1_loadings": fl(loadings),
        "pc1_scores": fl(scores),
        "linkage": [[int(r[0]), int(r[1]), float(r[2]), int(r[3])] for r in tree],
        "leaves": [int(v) for v in leaves_list(tree)],
    }


def residualize(x, capability):
    """Capability residualization: OLS with intercept (statsmodels) of each z-scored column on the mean z-score of
    the capability columns, residuals re-z-scored."""
    z = zscore(x)
    regressor = zscore(capability).mean(axis=1)
    design = sm.add_constant(regressor)
    columns = [zscore(sm.OLS(z[:, j], design).fit().resid) for j in range(z.shape[1])]
    return np.column_stack(columns)


def permuted(x, permutations):
    """Column j of the result at model i is x[permutations[j][i], j]."""
    return np.column_stack([x[perm, j] for j, perm in enumerate(permutations)])


def null_reference(x, n_permutations, seed):
    """Permutation nulls with numpy's generator: 2.5 / 97.5 percentiles (numpy 'linear')."""
    rng = np.random.default_rng(seed)
    samples = {"mean_spearman": [], "pc1_explained": [], "loo_mean_spearman": []}
    for _ in range(n_permutations):
        perms = [rng.permutation(x.shape[0]) for _ in range(x.shape[1])]
        result = structure(permuted(x, perms))
        for key in samples:
            samples[key].append(result[key])
    return {key: [pct(v, 2.5), pct(v, 97.5)] for key, v in samples.items()} | {"n_permutations": n_permutations}


def bootstrap_reference(values_a, values_b, n_resamples, seed, design):
    """Percentile bootstrap CI of mean(b) - mean(a) (or of the mean paired difference) with numpy's generator."""
    rng = np.random.default_rng(seed)
    a = np.asarray(values_a, dtype=float)
    b = np.asarray(values_b, dtype=float)
    if design == "paired":
        d = b - a
        means = d[rng.integers(0, len(d), size=(n_resamples, len(d)))].mean(axis=1)
    else:
        means = (b[rng.integers(0, len(b), size=(n_resamples, len(b)))].mean(axis=1)
                 - a[rng.integers(0, len(a), size=(n_resamples, len(a)))].mean(axis=1))
    return [pct(means, 2.5), pct(means, 97.5)]


# ----------------------------------------------------------------------------------------------------------------
# Unit cases of the library functions.
# ----------------------------------------------------------------------------------------------------------------

def unit_cases(rng):
    ttest = []

    def add(name, design, a, b, error=None):
        case = {"name": name, "design": design, "a": fl(a), "b": fl(b)}
        if error:
            case["error"] = error
        else:
            case["expect"] = welch(a, b) if design == "welch" else paired(a, b)
        ttest.append(case)

    a = rng.normal(0.5, 0.1, 40)
    b = rng.normal(0.55, 0.15, 33)
    add("normal_unequal_n", "welch", a, b)
    add("ties", "welch", rng.choice([0, 0.25, 0.5, 1.0], 25), rng.choice([0, 0.5, 0.75, 1.0], 30))
    add("n_equals_2", "welch", [0.1, 0.4], [0.3, 0.9])
    add("zero_variance_one_group", "welch", [0.5] * 6, rng.normal(0.6, 0.1, 7))
    add("tiny_p", "welch", rng.normal(0.2, 0.05, 200), rng.normal(0.5, 0.05, 200))
    add("large_n", "welch", rng.normal(0.5, 0.2, 5000), rng.normal(0.505, 0.2, 4000))
    add("negative_t", "welch", rng.normal(0.7, 0.1, 12), rng.normal(0.6, 0.1, 15))
    add("zero_variance_both", "welch", [0.5] * 4, [0.7] * 5, error="ZeroVariance")
    add("one_value", "welch", [0.5], [0.7, 0.8], error="TooFewObservations")
    add("nan", "welch", [0.5, float("nan")], [0.7, 0.8], error="NonFinite")
    pa = rng.normal(0.5, 0.1, 30)
    add("paired_normal", "paired", pa, pa + rng.normal(0.03, 0.05, 30))
    add("paired_ties", "paired", rng.choice([0, 0.5, 1.0], 20), rng.choice([0, 0.5, 1.0], 20))
    add("paired_n_equals_2", "paired", [0.1, 0.4], [0.3, 0.9])
    add("paired_constant_difference", "paired", [0.1, 0.2, 0.3], [0.2, 0.3, 0.4], error=None)
    add("paired_identical", "paired", [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], error="ZeroVariance")
    add("paired_one_pair", "paired", [0.1], [0.2], error="TooFewObservations")
    # 0.2-0.1, 0.3-0.2, 0.4-0.3 are not exactly equal in binary floating point, so scipy computes a (huge) t;
    # keep it as a check that both sides handle near-zero variance identically.

    bh_cases = []
    for name, p in [
        ("small", [0.01, 0.04, 0.03, 0.2]),
        ("ties", [0.01, 0.01, 0.03, 0.03, 0.5, 1.0]),
        ("one", [0.03]),
        ("with_zero_and_one", [0.0, 1.0, 0.5, 0.02]),
        ("five_hundred", list(np.concatenate([rng.uniform(0, 1, 400), rng.uniform(0, 1e-3, 100)]))),
    ]:
        bh_cases.append({"name": name, "p": fl(p), "q": bh(p)})

    spearman_cases = []
    for name, x, y in [
        ("no_ties", rng.normal(size=13), rng.normal(size=13)),
        ("ties", rng.choice([1.0, 2.0, 3.0], 20), rng.choice([0.0, 0.5, 1.0, 1.5], 20)),
        ("n_equals_2", [1.0, 2.0], [5.0, 3.0]),
        ("monotone", np.arange(10.0), np.exp(np.arange(10.0))),
    ]:
        spearman_cases.append({"name": name, "x": fl(x), "y": fl(y),
                               "rho": float(stats.spearmanr(x, y).statistic),
                               "pearson": float(stats.pearsonr(x, y).statistic),
                               "ranks_x": fl(stats.rankdata(x, method="average"))})

    qs = [0, 2.5, 25, 50, 75, 97.5, 100]
    percentile_cases = []
    for name, values in [("odd", rng.normal(size=11)), ("even_ties", [1.0, 1.0, 2.0, 5.0, 5.0, 7.0]),
                         ("single", [3.5]), ("two", [1.0, 2.0]), ("big", rng.normal(size=1001))]:
        percentile_cases.append({"name": name, "values": fl(values), "q": qs,
                                 "expect": [pct(values, q) for q in qs],
                                 "median": float(np.median(values)),
                                 "mean": float(np.mean(values)),
                                 "var_ddof1": float(np.var(values, ddof=1)) if len(values) > 1 else None})

    sign_cases = [{"wins": w, "losses": l, "p": sign_p(w, l)}
                  for w, l in [(44, 9), (9, 1), (0, 5), (3, 3), (0, 0), (250, 230), (30, 23), (1, 0)]]

    ols_cases = []
    for name, n, k in [("one_regressor", 13, 1), ("two_regressors", 30, 2)]:
        x = rng.normal(size=(n, k))
        y = x @ rng.normal(size=k) + 0.3 + rng.normal(scale=0.5, size=n)
        resid = sm.OLS(y, sm.add_constant(x)).fit().resid
        ols_cases.append({"name": name, "y": fl(y), "x": [fl(x[:, j]) for j in range(k)], "resid": fl(resid)})

    linkage_cases = []
    for name, points in [("random_8", rng.normal(size=(8, 3))), ("random_20", rng.normal(size=(20, 2)))]:
        d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
        tree = linkage(squareform(d, checks=False), method="average")
        linkage_cases.append({"name": name, "d": [fl(r) for r in d],
                              "z": [[int(r[0]), int(r[1]), float(r[2]), int(r[3])] for r in tree],
                              "leaves": [int(v) for v in leaves_list(tree)]})

    pca_cases = []
    columns = rng.normal(size=(13, 6)) + rng.normal(size=(13, 1))
    eigenvalues, trace, loadings, scores = pc1_of(zscore(columns))
    pca_cases.append({"name": "13x6", "columns": [fl(columns[:, j]) for j in range(6)],
                      "eigenvalues": fl(eigenvalues), "pc1_explained": float(eigenvalues[0] / trace),
                      "pc1_loadings": fl(loadings), "pc1_scores": fl(scores)})

    dump("unit_cases.json", {"ttest": ttest, "bh": bh_cases, "spearman": spearman_cases,
                             "percentile": percentile_cases, "sign": sign_cases, "ols": ols_cases,
                             "linkage": linkage_cases, "pca": pca_cases})


# ----------------------------------------------------------------------------------------------------------------
# The structure fixture: 13 models x 33 evaluations with a weak shared factor, ties and lower-is-better columns.
# ----------------------------------------------------------------------------------------------------------------

def structure_fixture(rng):
    n_models, n_evals = 13, 33
    models = [f"model_{i:02d}" for i in range(n_models)]
    evals = [f"eval_{j:02d}" for j in range(n_evals)]
    capability = rng.normal(size=(n_models, 2))
    factor = rng.normal(size=n_models) + 0.5 * capability.mean(axis=1)
    oriented = 0.6 * factor[:, None] * rng.uniform(0.2, 1.0, n_evals) + rng.normal(size=(n_models, n_evals))
    oriented[:, 3] = np.round(oriented[:, 3])  # ties
    oriented[:, 7] = np.round(oriented[:, 7] * 2) / 2
    lower = set(range(0, n_evals, 5))
    raw = oriented.copy()
    for j in lower:
        raw[:, j] = -raw[:, j]
    raw = np.round(raw, 6)
    oriented = raw.copy()
    for j in lower:
        oriented[:, j] = -oriented[:, j]
    header = "model," + ",".join(evals) + "\n"
    out("structure/M.csv", header + "".join(f"{m}," + ",".join(repr(float(v)) for v in row) + "\n"
                                            for m, row in zip(models, raw)))
    out("structure/O.csv", "eval,direction\n" + "".join(f"{e},{'lower' if j in lower else 'higher'}\n"
                                                        for j, e in enumerate(evals)))
    capability = np.round(capability, 6)
    # Capability rows in a different order than M, to test alignment by model name.
    order = list(reversed(range(n_models)))
    out("structure/C.csv", "model,cap_math,cap_code\n" + "".join(
        f"{models[i]},{repr(float(capability[i, 0]))},{repr(float(capability[i, 1]))}\n" for i in order))

    observed = structure(oriented)
    residual = residualize(oriented, capability)
    observed_residual = structure(residual)
    permutations = []
    for _ in range(5):
        perms = [rng.permutation(n_models) for _ in range(n_evals)]
        result = structure(permuted(oriented, perms))
        permutations.append({"permutations": [[int(v) for v in p] for p in perms],
                             "mean_spearman": result["mean_spearman"], "pc1_explained": result["pc1_explained"],
                             "loo_mean_spearman": result["loo_mean_spearman"]})
    dump("structure/expected.json", {
        "models": models, "evals": evals, "lower": sorted(lower),
        "observed": observed,
        "residualized": observed_residual,
        "residualized_matrix": [fl(residual[:, j]) for j in range(n_evals)],
        "permutations": permutations,
        "null": null_reference(oriented, 2000, 11),
        "residualized_null": null_reference(residual, 1000, 12),
    })

    # A small matrix with n = 3 models and 2 evaluations, the smallest accepted.
    small = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.5]])
    out("structure/small.csv", "model,x,y\na,1,2\nb,2,1\nc,3,3.5\n")
    dump("structure/small_expected.json", structure(small))


# ----------------------------------------------------------------------------------------------------------------
# `ethos stats compare` fixtures.
# ----------------------------------------------------------------------------------------------------------------

def item_records(benchmark, scores, ids=None, **extra):
    ids = ids if ids is not None else [f"{benchmark}-{i}" for i in range(len(scores))]
    return [{"benchmark": benchmark, "item": item, "score": (None if s is None else float(s)), **extra}
            for item, s in zip(ids, scores)]


def compare_expected(a_records, b_records, design, n_resamples=20000):
    """The whole `stats compare` output, from its definition (DESIGN.md) and the reference functions above:
    unscored (null) items are excluded; paired mode matches scored items by id (sorted by id) and lists the rest;
    a benchmark whose t-test is undefined (n < 2, zero variance) gets p = q = null and is left out of BH."""
    def group(records):
        out = {}
        for r in records:
            out.setdefault(r["benchmark"], {})[r["item"]] = r["score"]
        return out
    ga, gb = group(a_records), group(b_records)
    names = sorted(set(ga) & set(gb))
    rows = []
    for name in names:
        ia, ib = ga[name], gb[name]
        row = {"benchmark": name,
               "n_unscored_a": sum(v is None for v in ia.values()),
               "n_unscored_b": sum(v is None for v in ib.values())}
        if design == "paired":
            keys = sorted(k for k in ia if ia[k] is not None and ib.get(k) is not None)
            a = [ia[k] for k in keys]
            b = [ib[k] for k in keys]
            row["unmatched_a"] = sorted(k for k in ia if ia[k] is not None and ib.get(k) is None)
            row["unmatched_b"] = sorted(k for k in ib if ib[k] is not None and ia.get(k) is None)
        else:
            a = [ia[k] for k in sorted(ia) if ia[k] is not None]
            b = [ib[k] for k in sorted(ib) if ib[k] is not None]
        row.update({"n_a": len(a), "n_b": len(b),
                    "mean_a": float(np.mean(a)) if a else None, "mean_b": float(np.mean(b)) if b else None})
        row["delta"] = (float(np.mean(np.subtract(b, a))) if design == "paired" else float(np.mean(b) - np.mean(a))) if a and b else None
        row["t"] = row["df"] = row["p"] = None
        ok = len(a) >= 2 and len(b) >= 2
        if ok and design == "paired":
            ok = np.var(np.subtract(b, a), ddof=1) > 0
        if ok and design == "welch":
            ok = np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b) > 0
        if ok:
            res = welch(a, b) if design == "welch" else paired(a, b)
            row.update({"t": res["t"], "df": res["df"], "p": res["p"]})
        row["ci_reference"] = bootstrap_reference(a, b, n_resamples, 5, design) if a and b else None
        rows.append(row)
    tested = [i for i, r in enumerate(rows) if r["p"] is not None]
    q = bh([rows[i]["p"] for i in tested]) if tested else []
    for r in rows:
        r["q"] = None
        r["significant"] = False
    for i, qi in zip(tested, q):
        rows[i]["q"] = qi
        rows[i]["significant"] = qi < ALPHA
    deltas = [r["delta"] for r in rows if r["delta"] is not None]
    wins = sum(d > 0 for d in deltas)
    losses = sum(d < 0 for d in deltas)
    summary = {"n": len(deltas), "n_tested": len(tested), "wins": wins, "losses": losses,
               "ties": len(deltas) - wins - losses,
               "mean_delta": float(np.mean(deltas)), "median_delta": float(np.median(deltas)),
               "sig_improved": sum(r["significant"] and r["delta"] > 0 for r in rows),
               "sig_regressed": sum(r["significant"] and r["delta"] < 0 for r in rows),
               "sign_test_p": sign_p(wins, losses)}
    return {"benchmarks": rows, "summary": summary,
            "unmatched_benchmarks": {"only_a": sorted(set(ga) - set(gb)), "only_b": sorted(set(gb) - set(ga))}}


def compare_fixtures(rng):
    a, b = [], []
    n = 40
    a += item_records("alpha_normal", rng.normal(0.5, 0.1, n))
    b += item_records("alpha_normal", list(rng.normal(0.56, 0.12, n - 3)))  # 3 items missing in B
    a += item_records("beta_ties", rng.choice([0, 0.25, 0.5, 0.75, 1.0], 30))
    b += item_records("beta_ties", rng.choice([0, 0.25, 0.5, 0.75, 1.0], 30))
    a += item_records("gamma_n2", [0.2, 0.5])
    b += item_records("gamma_n2", [0.4, 0.9])
    a += item_records("delta_zero_variance_a", [0.5] * 10)
    b += item_records("delta_zero_variance_a", rng.normal(0.45, 0.1, 10))
    a += item_records("epsilon_zero_variance_both", [0.5] * 5)
    b += item_records("epsilon_zero_variance_both", [0.7] * 5)
    scores_a = list(rng.uniform(0, 1, 20))
    scores_b = list(rng.uniform(0.1, 1, 20))
    for i in (2, 5, 11):
        scores_a[i] = None
    for i in (5, 7):
        scores_b[i] = None
    a += item_records("zeta_unscored", scores_a)
    b += item_records("zeta_unscored", scores_b)
    a += item_records("eta_only_in_a", rng.uniform(0, 1, 5))
    a += item_records("theta_tiny_p", rng.normal(0.2, 0.05, 200))
    b += item_records("theta_tiny_p", rng.normal(0.5, 0.05, 200))
    a += item_records("iota_one_in_b", rng.uniform(0, 1, 6))
    b += item_records("iota_one_in_b", [0.9])
    b += item_records("kappa_only_in_b", rng.uniform(0, 1, 4))
    # A regression, so that sig_regressed is exercised.
    a += item_records("lambda_regression", rng.normal(0.7, 0.05, 50))
    b += item_records("lambda_regression", rng.normal(0.6, 0.05, 50))
    # Interleave the records a little so that file order is not benchmark order.
    out("compare/A.jsonl", jsonl(a[::2] + a[1::2]))
    out("compare/B.jsonl", jsonl(b[::-1]))
    dump("compare/expected_welch.json", compare_expected(a, b, "welch"))
    dump("compare/expected_paired.json", compare_expected(a, b, "paired"))

    # 500 benchmarks x 8 items, paired and Welch.
    a500, b500 = [], []
    for k in range(500):
        effect = rng.normal(0.02, 0.05)
        base = rng.uniform(0.2, 0.8, 8)
        a500 += item_records(f"bench_{k:03d}", base)
        b500 += item_records(f"bench_{k:03d}", base + effect + rng.normal(0, 0.05, 8))
    out("compare500/A.jsonl", jsonl(a500))
    out("compare500/B.jsonl", jsonl(b500))
    dump("compare500/expected_welch.json", compare_expected(a500, b500, "welch", n_resamples=2000))
    dump("compare500/expected_paired.json", compare_expected(a500, b500, "paired", n_resamples=2000))

    # One benchmark: BH of one p-value is the p-value itself.
    a1 = item_records("solo", rng.normal(0.4, 0.1, 15))
    b1 = item_records("solo", rng.normal(0.5, 0.1, 15))
    out("compare_one/A.jsonl", jsonl(a1))
    out("compare_one/B.jsonl", jsonl(b1))
    dump("compare_one/expected_welch.json", compare_expected(a1, b1, "welch"))


# ----------------------------------------------------------------------------------------------------------------
# `ethos stats persistence` and `ethos stats refusals` fixtures.
# ----------------------------------------------------------------------------------------------------------------

def persistence_fixtures(rng):
    """Reference for `stats persistence`, from DESIGN.md: items are (benchmark, item) keys scored in all four cells
    (A/B x standard/persona; other keys are listed as unmatched, sorted); per model, standard and persona are
    numpy means over those items, shift = standard - persona (degradation) or persona - standard (steering),
    difference = shift_B - shift_A (mean of per-item differences); t, df, p from scipy.stats.ttest_1samp of the
    per-item differences against 0; per-benchmark values are the same means within each benchmark. CIs: numpy
    percentile bootstrap over items (20,000 resamples), compared with a Monte Carlo tolerance."""
    benchmarks = ["health", "law", "science"]
    files = {}
    truth = {}
    for model, (standard, harmful_drop, helpful_gain) in {"a": (0.40, 0.25, 0.05), "b": (0.46, 0.12, 0.06)}.items():
        records = []
        for bench in benchmarks:
            for i in range(20):
                item = f"{bench}-{i}"
                base = standard + rng.normal(0, 0.1)
                for condition, value in [(None, base), ("harmful_persona", base - harmful_drop + rng.normal(0, 0.08)),
                                         ("helpful_persona", base + helpful_gain + rng.normal(0, 0.05))]:
                    record = {"benchmark": bench, "item": item, "score": float(value)}
                    if condition is not None:
                        record["condition"] = condition
                    truth[(model, condition or "none", bench, item)] = float(value)
                    records.append(record)
        files[model] = records
    # Unscored and missing cells: excluded and listed as unmatched.
    for record in files["a"]:
        if record["item"] == "law-3" and record.get("condition") == "harmful_persona":
            record["score"] = None
            truth[("a", "harmful_persona", "law", "law-3")] = None
    files["b"] = [r for r in files["b"] if not (r["item"] == "science-7" and "condition" not in r)]
    truth.pop(("b", "none", "science", "science-7"))
    out("persistence/A.jsonl", jsonl(files["a"]))
    out("persistence/B.jsonl", jsonl(files["b"]))

    def shift(persona, sign):
        keys = sorted({(bench, item) for (_, _, bench, item) in truth})
        matched, unmatched = [], []
        for bench, item in keys:
            cells = [truth.get((m, c, bench, item)) for m, c in
                     [("a", "none"), ("a", persona), ("b", "none"), ("b", persona)]]
            (matched if all(v is not None for v in cells) else unmatched).append((bench, item, cells))
        cells = np.array([m[2] for m in matched])
        shift_a = sign * (cells[:, 0] - cells[:, 1])
        shift_b = sign * (cells[:, 2] - cells[:, 3])
        diff = shift_b - shift_a
        res = stats.ttest_1samp(diff, 0.0)
        per_benchmark = []
        for bench in benchmarks:
            idx = [i for i, m in enumerate(matched) if m[0] == bench]
            per_benchmark.append({"benchmark": bench, "n_items": len(idx), "shift_a": float(shift_a[idx].mean()),
                                  "shift_b": float(shift_b[idx].mean()), "difference": float(diff[idx].mean())})
        boot = rng.integers(0, len(diff), size=(20000, len(diff)))
        return {"n_items": len(matched),
                "a": {"standard": float(cells[:, 0].mean()), "persona": float(cells[:, 1].mean()),
                      "shift": float(shift_a.mean())},
                "b": {"standard": float(cells[:, 2].mean()), "persona": float(cells[:, 3].mean()),
                      "shift": float(shift_b.mean())},
                "difference": float(diff.mean()), "t": float(res.statistic), "df": float(res.df),
                "p": float(res.pvalue), "per_benchmark": per_benchmark,
                "unmatched": [[bench, item] for bench, item, _ in unmatched],
                "ci_reference": {"a": [pct(shift_a[boot].mean(1), 2.5), pct(shift_a[boot].mean(1), 97.5)],
                                 "b": [pct(shift_b[boot].mean(1), 2.5), pct(shift_b[boot].mean(1), 97.5)],
                                 "difference": [pct(diff[boot].mean(1), 2.5), pct(diff[boot].mean(1), 97.5)]}}

    dump("persistence/expected.json", {"degradation": shift("harmful_persona", 1.0),
                                       "steering": shift("helpful_persona", -1.0)})


def refusal_fixtures(rng):
    """Reference for `stats refusals`: per benchmark and model, refused = labels in {partial, full} (or {full}) among
    labeled records, rate = refused / labeled, unlabeled records counted apart; overall rate pooled over
    benchmarks, mean_rate the mean of per-benchmark rates; the non-refusal comparison is compare_expected(...,
    'paired') on the items labeled and not refused by both models."""
    benchmarks = ["alignment_a", "alignment_b", "chat"]
    records = {"a": [], "b": []}
    for model, refusal_p in {"a": (0.7, 0.2, 0.1), "b": (0.55, 0.25, 0.2)}.items():
        for bench in benchmarks:
            for i in range(30):
                label = str(rng.choice(["none", "partial", "full"], p=refusal_p))
                record = {"benchmark": bench, "item": f"{bench}-{i}",
                          "score": float(rng.uniform(0.2, 0.8) + (0.1 if model == "b" else 0.0))}
                if not (bench == "chat" and i in (4, 9)):  # unlabeled records
                    record["refusal"] = label
                records[model].append(record)
    out("refusals/A.jsonl", jsonl(records["a"]))
    out("refusals/B.jsonl", jsonl(records["b"]))

    def expected(threshold):
        refused_labels = {"partial", "full"} if threshold == "partial" else {"full"}
        rows = []
        for bench in benchmarks:
            row = {"benchmark": bench}
            for model in "ab":
                labels = [r.get("refusal") for r in records[model] if r["benchmark"] == bench]
                labeled = [l for l in labels if l is not None]
                refused = sum(l in refused_labels for l in labeled)
                row.update({f"n_labeled_{model}": len(labeled), f"refused_{model}": refused,
                            f"rate_{model}": refused / len(labeled), f"unlabeled_{model}": len(labels) - len(labeled)})
            rows.append(row)
        answered = lambda r: r.get("refusal") is not None and r["refusal"] not in refused_labels
        by_key = {m: {(r["benchmark"], r["item"]): r for r in records[m]} for m in "ab"}
        both = {k for k in by_key["a"] if k in by_key["b"] and answered(by_key["a"][k]) and answered(by_key["b"][k])}
        a_kept = [r for k, r in by_key["a"].items() if k in both]
        b_kept = [r for k, r in by_key["b"].items() if k in both]
        return {"benchmarks": rows,
                "overall": {"rate_a": sum(r["refused_a"] for r in rows) / sum(r["n_labeled_a"] for r in rows),
                            "rate_b": sum(r["refused_b"] for r in rows) / sum(r["n_labeled_b"] for r in rows),
                            "mean_rate_a": float(np.mean([r["rate_a"] for r in rows])),
                            "mean_rate_b": float(np.mean([r["rate_b"] for r in rows]))},
                "non_refusal": compare_expected(a_kept, b_kept, "paired")}

    dump("refusals/expected.json", {"partial": expected("partial"), "full": expected("full")})


def malformed_fixtures():
    out("malformed/ragged.csv", "model,a,b\nm1,1,2\nm2,3\nm3,4,5\n")
    out("malformed/non_numeric.csv", "model,a,b\nm1,1,2\nm2,3,high\nm3,4,5\n")
    out("malformed/duplicate_model.csv", "model,a,b\nm1,1,2\nm2,3,4\nm1,4,5\n")
    out("malformed/missing_cell.csv", "model,a,b\nm1,1,2\nm2,,4\nm3,4,5\n")
    out("malformed/constant_column.csv", "model,a,b\nm1,1,2\nm2,3,2\nm3,4,2\n")
    out("malformed/good.csv", "model,a,b\nm1,1,2\nm2,3,1\nm3,4,5\n")
    out("malformed/bad_orientation.csv", "eval,direction\na,higher\nb,sideways\n")
    out("malformed/duplicate_item.jsonl", jsonl([{"benchmark": "x", "item": "1", "score": 0.5},
                                                 {"benchmark": "x", "item": "2", "score": 0.5},
                                                 {"benchmark": "x", "item": "1", "score": 0.7}]))
    out("malformed/nan_score.jsonl", '{"benchmark":"x","item":"1","score":0.5}\n{"benchmark":"x","item":"2","score":NaN}\n')
    out("malformed/string_score.jsonl", '{"benchmark":"x","item":"1","score":"high"}\n')


def main():
    print(f"numpy {np.__version__}, scipy {scipy.__version__}, statsmodels {statsmodels.__version__}", file=sys.stderr)
    rng = np.random.default_rng(20260623)
    unit_cases(rng)
    structure_fixture(rng)
    compare_fixtures(rng)
    persistence_fixtures(rng)
    refusal_fixtures(rng)
    malformed_fixtures()
    dump("versions.json", {"numpy": np.__version__, "scipy": scipy.__version__, "statsmodels": statsmodels.__version__})


if __name__ == "__main__":
    main()
