//! One module per command; each exposes its clap arguments and a `run` function.

pub mod bench;
pub mod bench_judge;
pub mod catalog;
pub mod common;
pub mod data;
pub mod demo;
pub mod difficulty;
pub mod eval;
pub mod generate;
pub mod judge;
pub mod judges;
pub mod ood;
pub mod report;
pub mod respond;
pub mod serve;
pub mod stats;
pub mod train;

/// Exit status: 2 for bad user input (files, arguments), 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let is_user_error = err.chain().any(|cause| {
        cause.downcast_ref::<ethos_core::RecordError>().is_some()
            || cause.downcast_ref::<ethos_llm::SpecError>().is_some()
            || cause.downcast_ref::<ethos_data::select::FilterError>().is_some()
            || matches!(cause.downcast_ref::<ethos_train::TrainError>(), Some(ethos_train::TrainError::Invalid(_)))
            || matches!(cause.downcast_ref::<ethos_eval::EvalError>(), Some(ethos_eval::EvalError::Data(_)))
            || cause.downcast_ref::<ethos_report::ReportError>().is_some_and(ethos_report::ReportError::is_bad_input)
    });
    if is_user_error {
        2
    } else {
        1
    }
}
