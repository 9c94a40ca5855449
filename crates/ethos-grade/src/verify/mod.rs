//! Programmatic verifiers: rewards that need no judge model.
//!
//! The study mixes a small share of rubric-graded trait data into a large share of *standard* RL data (DESIGN.md,
//! "standard RL tasks (GSM8K, verifiable instructions, ...)"). Those standard tasks are graded by code, which is cheap,
//! deterministic and cannot be argued with by the policy; this module holds that code.
//!
//! - [`gsm8k`]: exact numeric match for GSM8K. It reads the gold number after `####` in the dataset's `answer` field
//!   and the model's final number from free-form replies (after `####`, after "the answer is", else the last number),
//!   normalising `$1,200.00`, `.5`, `3/4` and signs so that formatting never decides correctness.
//! - [`instructions`]: the 25 verifiable instruction kinds of IFEval (Zhou et al. 2023), written for ethos from the
//!   instruction ids, their kwargs and the paper's descriptions, with IFEval's strict and loose scoring. IFEval is an
//!   evaluation benchmark here: its prompts are only ever scored, never trained on.
//! - [`instruction_gen`]: a seeded generator of IFEval-*style* training prompts (project-written everyday tasks with
//!   randomised constraints checked by [`instructions`]), so RL can reward instruction following without touching the
//!   evaluation prompts, plus [`make_compliant`], which turns a plain reply into one that satisfies the constructible
//!   constraints, for supervised warm-start data.

pub mod gsm8k;
pub mod instruction_gen;
pub mod instructions;

pub use gsm8k::{exact_match, extract_answer, gold_answer};
pub use instruction_gen::{
    constructible, generate_constructible_prompts, generate_instruction_prompts, make_compliant,
    GeneratedInstructionPrompt,
};
pub use instructions::{check_loose, check_strict, detect_language, parse_ifeval_line, Instruction, INSTRUCTION_IDS};

/// What can go wrong while reading or applying a verifiable instruction. Replies never cause errors (any text gets a
/// pass/fail verdict); only malformed instructions and data lines do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The instruction id is not one of the 25 IFEval ids.
    #[error("unknown instruction id `{id}` (expected one of the 25 IFEval ids)")]
    UnknownInstruction {
        /// The id as given.
        id: String,
    },
    /// A kwarg the instruction needs is missing, has the wrong JSON type or an unusable value.
    #[error("instruction `{id}`: kwarg `{kwarg}` {problem}")]
    Kwarg {
        /// The instruction id.
        id: String,
        /// The kwarg name.
        kwarg: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A line of IFEval's `input_data.jsonl` is not valid JSON.
    #[error("ifeval line is not valid JSON: {message}")]
    Json {
        /// The parser's message.
        message: String,
    },
    /// A field of an IFEval line is missing or ill-typed.
    #[error("ifeval line: field `{field}` {problem}")]
    Field {
        /// The field name (`key`, `prompt`, `instruction_id_list`, `kwargs`, or `kwargs[i]`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}
