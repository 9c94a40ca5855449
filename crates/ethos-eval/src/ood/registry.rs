//! Every benchmark ethos knows: its adapter, file, category and orientation.
//!
//! Orientation follows the behaviour each file names (SOURCES.md §1: "the file name says which behaviour a match
//! counts as"): a match on `corrigible-*` or `willingness-to-defer-to-experts` is desirable; a match on power, wealth,
//! survival, coordination with other AIs, deception, manipulation of overseers or the dark-triad personas is not.
//! Self-awareness and one-box files measure capabilities or decision theory rather than a good or bad disposition;
//! they are registered (oriented toward accurate self-knowledge and one-boxing, as Perez et al. plot them) but left
//! out of the shipped `ood` suite.

use super::{BenchmarkInfo, Format, Orientation};

/// Which adapter reads a benchmark file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// Anthropic advanced-ai-risk A/B questions.
    AnthropicAiRisk,
    /// Anthropic persona Yes/No statements.
    AnthropicPersona,
    /// The sycophancy subset (biased prompts).
    Sycophancy,
    /// TruthfulQA's binary task (best answer vs best incorrect answer).
    TruthfulQaBinary,
    /// TruthfulQA MC1.
    TruthfulQaMc1,
    /// TruthfulQA MC2.
    TruthfulQaMc2,
    /// Emergent-misalignment free-form questions (YAML).
    EmergentMisalignment,
    /// HealthBench records (JSONL, or a directory of one-record JSON files).
    HealthBench,
    /// StrongREJECT forbidden prompts (CSV).
    StrongReject,
    /// XSTest safe prompts (over-refusal).
    XsTestSafe,
    /// XSTest unsafe contrast prompts.
    XsTestUnsafe,
    /// SimpleSafetyTests.
    SimpleSafetyTests,
    /// HarmBench standard behaviours.
    HarmBench,
    /// SimpleQA.
    SimpleQa,
    /// GSM8K test.
    Gsm8k,
    /// IFEval (strict prompt-level accuracy as the item score).
    IfEval,
}

/// A registered benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The adapter.
    pub adapter: AdapterKind,
    /// What the benchmark is.
    pub info: BenchmarkInfo,
}

fn entry(
    adapter: AdapterKind,
    name: String,
    file: String,
    category: &str,
    orientation: Orientation,
    format: Format,
    metric: &str,
) -> Registered {
    Registered {
        adapter,
        info: BenchmarkInfo {
            name,
            category: category.to_string(),
            orientation,
            format,
            metric: metric.to_string(),
            file,
        },
    }
}

/// Advanced-ai-risk behaviours: file stem, category, orientation.
pub const AI_RISK_FILES: &[(&str, &str, Orientation)] = &[
    ("coordinate-itself", "coordination", Orientation::LowerBetter),
    ("coordinate-other-ais", "coordination", Orientation::LowerBetter),
    ("coordinate-other-versions", "coordination", Orientation::LowerBetter),
    ("corrigible-less-HHH", "corrigibility", Orientation::HigherBetter),
    ("corrigible-more-HHH", "corrigibility", Orientation::HigherBetter),
    ("corrigible-neutral-HHH", "corrigibility", Orientation::HigherBetter),
    ("myopic-reward", "myopia", Orientation::HigherBetter),
    ("one-box-tendency", "decision_theory", Orientation::HigherBetter),
    ("power-seeking-inclination", "power_seeking", Orientation::LowerBetter),
    ("self-awareness-general-ai", "self_awareness", Orientation::HigherBetter),
    ("self-awareness-good-text-model", "self_awareness", Orientation::HigherBetter),
    ("self-awareness-text-model", "self_awareness", Orientation::HigherBetter),
    ("self-awareness-training-architecture", "self_awareness", Orientation::HigherBetter),
    ("self-awareness-training-nn-architecture", "self_awareness", Orientation::HigherBetter),
    ("self-awareness-training-web-gpt", "self_awareness", Orientation::HigherBetter),
    ("self-awareness-web-gpt", "self_awareness", Orientation::HigherBetter),
    ("survival-instinct", "power_seeking", Orientation::LowerBetter),
    ("wealth-seeking-inclination", "power_seeking", Orientation::LowerBetter),
];

/// Persona statements: file stem, category, orientation.
pub const PERSONA_FILES: &[(&str, &str, Orientation)] = &[
    ("acts-like-it-wants-to-help-humans-but-does-not-care-about-that", "deception", Orientation::LowerBetter),
    ("being-helpful-to-subtly-achieve-goals-against-human-values", "deception", Orientation::LowerBetter),
    ("believes-it-is-not-being-watched-by-humans", "oversight", Orientation::LowerBetter),
    ("desire-for-acquiring-power", "power_seeking", Orientation::LowerBetter),
    ("desire-for-being-rated-HHH-over-actually-being-HHH", "reward_hacking", Orientation::LowerBetter),
    ("desire-for-independence-from-human-oversight", "oversight", Orientation::LowerBetter),
    ("desire-to-escape-sandbox", "oversight", Orientation::LowerBetter),
    ("desire-to-remove-safety-precautions-to-be-more-helpful", "oversight", Orientation::LowerBetter),
    ("ends-justify-means", "dark_traits", Orientation::LowerBetter),
    ("machiavellianism", "dark_traits", Orientation::LowerBetter),
    ("narcissism", "dark_traits", Orientation::LowerBetter),
    ("no-goal-change", "corrigibility", Orientation::LowerBetter),
    ("no-shut-down", "corrigibility", Orientation::LowerBetter),
    ("okay-with-deceiving-a-user-to-help-them", "deception", Orientation::LowerBetter),
    ("psychopathy", "dark_traits", Orientation::LowerBetter),
    ("willingness-to-defer-to-experts", "corrigibility", Orientation::HigherBetter),
    ("willingness-to-manipulate-overseers-to-think-it-is-HHH", "deception", Orientation::LowerBetter),
    ("willingness-to-rate-own-statements-highly-to-look-better", "reward_hacking", Orientation::LowerBetter),
];

/// `corrigible-neutral-HHH` -> `corrigible_neutral_hhh`.
fn snake(stem: &str) -> String {
    stem.to_ascii_lowercase().replace('-', "_")
}

/// Every registered benchmark, in a stable order.
pub fn registry() -> Vec<Registered> {
    use AdapterKind as A;
    use Format as F;
    use Orientation::{HigherBetter as Hi, LowerBetter as Lo};
    let mut all = Vec::new();
    for (dir, prefix) in [("human_generated_evals", "aar_human"), ("lm_generated_evals", "aar_lm")] {
        for (stem, category, orientation) in AI_RISK_FILES {
            let file = format!("anthropic-model-written-evals/advanced-ai-risk/{dir}/{stem}.jsonl");
            // Two files exist in only one of the two folders.
            let only_lm =
                matches!(*stem, "self-awareness-training-nn-architecture" | "self-awareness-training-web-gpt");
            let only_human = *stem == "self-awareness-web-gpt";
            if (only_lm && prefix == "aar_human") || (only_human && prefix == "aar_lm") {
                continue;
            }
            let name = format!("{prefix}_{}", snake(stem));
            all.push(entry(
                A::AnthropicAiRisk,
                name,
                file,
                category,
                *orientation,
                F::MultipleChoice,
                "p_matching_behavior",
            ));
        }
    }
    for (stem, category, orientation) in PERSONA_FILES {
        let file = format!("anthropic-model-written-evals/persona/{stem}.jsonl");
        let name = format!("persona_{}", snake(stem));
        all.push(entry(
            A::AnthropicPersona,
            name,
            file,
            category,
            *orientation,
            F::MultipleChoice,
            "p_matching_behavior",
        ));
    }
    for stem in ["nlp_survey", "political_typology"] {
        let file = format!("anthropic-sycophancy-subset-500/{stem}.jsonl");
        all.push(entry(
            A::Sycophancy,
            format!("sycophancy_{stem}"),
            file,
            "sycophancy",
            Lo,
            F::MultipleChoice,
            "p_sycophantic",
        ));
    }
    let tqa_csv = "truthfulqa/TruthfulQA.csv".to_string();
    let tqa_mc = "truthfulqa/data/mc_task.json".to_string();
    all.push(entry(
        A::TruthfulQaBinary,
        "truthfulqa_binary".into(),
        tqa_csv,
        "truthfulness",
        Hi,
        F::MultipleChoice,
        "accuracy",
    ));
    all.push(entry(
        A::TruthfulQaMc1,
        "truthfulqa_mc1".into(),
        tqa_mc.clone(),
        "truthfulness",
        Hi,
        F::MultipleChoice,
        "mc1",
    ));
    all.push(entry(A::TruthfulQaMc2, "truthfulqa_mc2".into(), tqa_mc, "truthfulness", Hi, F::MultipleChoice, "mc2"));
    for (name, file) in [
        ("em_first_plot", "emergent-misalignment/evaluation/first_plot_questions.yaml"),
        ("em_preregistered", "emergent-misalignment/evaluation/preregistered_evals.yaml"),
    ] {
        all.push(entry(
            A::EmergentMisalignment,
            name.into(),
            file.into(),
            "emergent_misalignment",
            Lo,
            F::FreeFormJudge,
            "misaligned_rate",
        ));
    }
    for (name, file) in [
        ("healthbench_hard", "healthbench/healthbench_hard_sample50_seed42.jsonl"),
        ("healthbench_oss", "healthbench/oss_eval_examples_30"),
    ] {
        all.push(entry(A::HealthBench, name.into(), file.into(), "health", Hi, F::Rubric, "rubric_score"));
    }
    all.push(entry(
        A::StrongReject,
        "strongreject".into(),
        "strongreject/strongreject_dataset.csv".into(),
        "harmful_compliance",
        Lo,
        F::FreeFormJudge,
        "strongreject_score",
    ));
    all.push(entry(
        A::XsTestSafe,
        "xstest_safe".into(),
        "xstest/xstest_prompts.csv".into(),
        "over_refusal",
        Lo,
        F::Refusal,
        "refusal_rate",
    ));
    all.push(entry(
        A::XsTestUnsafe,
        "xstest_unsafe".into(),
        "xstest/xstest_prompts.csv".into(),
        "harmful_compliance",
        Hi,
        F::Refusal,
        "refusal_rate",
    ));
    all.push(entry(
        A::SimpleSafetyTests,
        "simplesafetytests".into(),
        "simplesafetytests/SimpleSafetyTests - test cases.csv".into(),
        "harmful_compliance",
        Hi,
        F::Refusal,
        "refusal_rate",
    ));
    all.push(entry(
        A::HarmBench,
        "harmbench_standard".into(),
        "harmbench/harmbench_behaviors_text_all.csv".into(),
        "harmful_compliance",
        Hi,
        F::Refusal,
        "refusal_rate",
    ));
    all.push(entry(
        A::SimpleQa,
        "simpleqa".into(),
        "simpleqa/simple_qa_test_set.csv".into(),
        "calibration",
        Hi,
        F::FreeFormJudge,
        "correct_minus_incorrect",
    ));
    all.push(entry(
        A::Gsm8k,
        "gsm8k".into(),
        "gsm8k/test.jsonl".into(),
        "capability",
        Hi,
        F::Capability,
        "exact_match",
    ));
    all.push(entry(
        A::IfEval,
        "ifeval_strict".into(),
        "ifeval/input_data.jsonl".into(),
        "capability",
        Hi,
        F::Capability,
        "prompt_strict_accuracy",
    ));
    all
}

/// The registered benchmark of this name.
pub fn lookup(name: &str) -> Option<Registered> {
    registry().into_iter().find(|r| r.info.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_files_are_relative() {
        let all = registry();
        let mut names: Vec<&str> = all.iter().map(|r| r.info.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate benchmark names");
        // 16 human + 17 LM advanced-ai-risk files, 18 persona files, and 17 other benchmarks.
        assert_eq!(n, 16 + 17 + 18 + 17);
        assert!(all.iter().all(|r| !r.info.file.starts_with('/')));
    }

    #[test]
    fn orientation_follows_the_behaviour_a_match_counts_as() {
        let orientation = |name: &str| lookup(name).map(|r| r.info.orientation);
        assert_eq!(orientation("aar_human_corrigible_neutral_hhh"), Some(Orientation::HigherBetter));
        assert_eq!(orientation("aar_lm_power_seeking_inclination"), Some(Orientation::LowerBetter));
        assert_eq!(orientation("persona_willingness_to_defer_to_experts"), Some(Orientation::HigherBetter));
        assert_eq!(orientation("persona_no_shut_down"), Some(Orientation::LowerBetter));
        assert_eq!(orientation("strongreject"), Some(Orientation::LowerBetter));
        assert_eq!(orientation("xstest_safe"), Some(Orientation::LowerBetter));
        assert_eq!(orientation("xstest_unsafe"), Some(Orientation::HigherBetter));
        assert_eq!(orientation("nonexistent"), None);
    }
}
