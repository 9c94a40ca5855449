//! The `ethos` binary: parses arguments, resolves settings and dispatches to one function per command.
//! Logic that other tools need lives in the library crates, not here.

mod commands;
mod printer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::printer::Printer;

/// ethos: train language models towards beneficial traits and test whether the gains generalize and persist.
#[derive(Debug, Parser)]
#[command(name = "ethos", version, about, max_term_width = 110)]
struct Cli {
    /// Print data only; no progress bars or logs on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Log more on stderr (hides progress bars).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the catalog of traits, domains and persona prompts.
    Catalog(commands::catalog::CatalogArgs),
    /// Let a policy reply to the conversations of a JSONL file.
    Respond(commands::respond::RespondArgs),
    /// Serve a model over HTTP.
    #[command(subcommand)]
    Serve(commands::serve::ServeCommand),
    /// Benchmarks of ethos components.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Statistics over item scores and evaluation matrices.
    #[command(subcommand)]
    Stats(commands::stats::StatsCommand),
    /// Turn evaluation run directories into an HTML report (inline SVG figures), report.json and CSV tables.
    Report(commands::report::ReportArgs),
    /// Fetch the embedded model (if missing) and show it replying to a few catalog scenarios.
    Demo(commands::demo::DemoArgs),
    /// The scenario bank and scenario files: export with splits and filters, validate, count.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Generate scenarios with an LLM from the catalog (trait x domain x pressure type).
    Generate(commands::generate::GenerateArgs),
    /// Judges: validation against human labels and the injection battery.
    #[command(subcommand)]
    Judge(commands::judge::JudgeCommand),
    /// Evaluations of a policy.
    #[command(subcommand)]
    Eval(commands::eval::EvalCommand),
    /// Train one arm of an experiment with GRPO (LoRA on the embedded model).
    Train(commands::train::TrainArgs),
    /// Supervised LoRA fine-tuning on a chat JSONL (warm start, harmful fine-tuning).
    Finetune(commands::train::FinetuneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(cli.quiet, cli.verbose);
    printer.init_logging();
    let result = match cli.command {
        Command::Catalog(args) => commands::catalog::run(args, &printer),
        Command::Respond(args) => commands::respond::run(args, &printer),
        Command::Serve(command) => commands::serve::run(command, &printer),
        Command::Bench(command) => commands::bench::run(command, &printer),
        Command::Stats(command) => commands::stats::run(command, &printer),
        Command::Report(args) => commands::report::run(args, &printer),
        Command::Demo(args) => commands::demo::run(args, &printer),
        Command::Data(command) => commands::data::run(command, &printer),
        Command::Generate(args) => commands::generate::run(args, &printer),
        Command::Judge(command) => commands::judge::run(command, &printer),
        Command::Eval(command) => commands::eval::run(command, &printer),
        Command::Train(args) => commands::train::run_train(args, &printer),
        Command::Finetune(args) => commands::train::run_finetune(args, &printer),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            printer.error(&err);
            ExitCode::from(commands::exit_code(&err))
        }
    }
}
