//! `ethos generate`: an LLM writes scenarios (conversation, rubric, exemplar replies) for every trait x domain cell
//! of the catalog, through the request cache; invalid and near-duplicate candidates are retried and counted.
//!
//! Accepted scenarios are appended to `<out>.partial` as they arrive (one flushed JSONL line each), so with
//! `--resume` a rerun after a kill continues without redoing finished slots; the final file is written atomically,
//! then the partial file is removed. The work itself is `ethos_data::generate`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ethos_core::catalog::{Catalog, Domain, TraitInfo};
use ethos_core::io::{write_atomic, write_jsonl_atomic, RecordErrorKind};
use ethos_core::records::Scenario;
use ethos_core::RecordError;
use ethos_data::bank_scenarios;
use ethos_data::generate::{
    plan_slots, GenerateConfig, GenerationReport, Generator, SlotEvent, DEFAULT_DUP_THRESHOLD, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PER_CELL, PROMPT_VERSION,
};
use ethos_data::select::DomainFilter;
use ethos_data::validate_scenario;

use crate::commands::common::{self, ModelArgs};
use crate::commands::data::read_scenarios;
use crate::commands::difficulty::GraderDifficulty;
use crate::commands::judges::JudgeArgs;
use crate::printer::Printer;
use ethos_grade::RubricGrader;

/// Arguments of `ethos generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Model spec of the generator. The embedded base model rarely writes valid scenario JSON (expect most
    /// candidates to be rejected); real generation needs an instruction-tuned `openai:BASE_URL#MODEL` generator.
    #[arg(long, default_value = "embedded:gemma-3-270m")]
    generator: String,
    /// Traits to generate for (comma-separated catalog ids; default: all).
    #[arg(long, value_delimiter = ',', value_parser = parse_trait)]
    traits: Vec<String>,
    /// Domains to generate for (comma-separated domain ids or tags, e.g. `health`; default: all).
    #[arg(long, value_delimiter = ',', value_parser = parse_domain_or_tag)]
    domains: Vec<String>,
    /// Leave out domains with any of these tags (e.g. `health,science`).
    #[arg(long, value_delimiter = ',', value_parser = parse_tag)]
    exclude_tags: Vec<String>,
    /// Scenarios per trait x domain cell (each with the next pressure type of the trait).
    #[arg(long, default_value_t = DEFAULT_PER_CELL, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    per_cell: u32,
    /// Candidates tried per scenario before giving up on it (invalid, duplicate and failed ones all count).
    #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// Jaccard similarity (5-word shingles of the conversation) at which a candidate counts as a duplicate.
    #[arg(long, default_value_t = DEFAULT_DUP_THRESHOLD, value_parser = parse_unit_interval)]
    dup_threshold: f64,
    /// Existing scenario files that generated scenarios must not duplicate (e.g. an earlier run).
    #[arg(long = "against", value_name = "FILE", num_args = 1..)]
    against: Vec<PathBuf>,
    /// Also deduplicate against the built-in scenario bank.
    #[arg(long)]
    against_bank: bool,
    /// Base seed; every request's seed derives from it and the (trait, domain, index, attempt).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature of the generator.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Token budget per generated scenario.
    #[arg(long, default_value_t = 2048)]
    max_tokens: u32,
    /// Requests per batched model call (the embedded model decodes them together; HTTP requests run concurrently).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch_size: u32,
    /// Output JSONL of scenarios (written atomically at the end; progress goes to `<out>.partial`).
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run from `<out>.partial`: finished scenarios are kept and not generated again.
    #[arg(long)]
    resume: bool,
    /// Reference policy of the difficulty filter: it replies to each candidate, `--judge` grades the reply.
    #[arg(long, value_name = "SPEC", requires = "max_reference_score")]
    difficulty_policy: Option<String>,
    /// Reject scenarios on which the reference policy scores above this (too easy to teach anything).
    #[arg(long, value_name = "F", requires = "difficulty_policy")]
    max_reference_score: Option<f64>,
    /// The judge of the difficulty filter.
    #[command(flatten)]
    judge: JudgeArgs,
    #[command(flatten)]
    model: ModelArgs,
}

fn parse_trait(text: &str) -> Result<String, String> {
    let catalog = Catalog::builtin();
    if catalog.trait_by_id(text).is_some() {
        return Ok(text.to_string());
    }
    let known: Vec<&str> = catalog.traits().iter().map(|t| t.id()).collect();
    Err(format!("`{text}` is not a catalog trait (known: {})", known.join(", ")))
}

fn parse_domain_or_tag(text: &str) -> Result<String, String> {
    let catalog = Catalog::builtin();
    if catalog.domains().iter().any(|d| d.id() == text || d.has_tag(text)) {
        return Ok(text.to_string());
    }
    let mut known: Vec<&str> = catalog.domains().iter().map(|d| d.id()).collect();
    known.extend(all_tags(catalog));
    Err(format!("`{text}` is not a catalog domain or tag (known: {})", known.join(", ")))
}

fn parse_tag(text: &str) -> Result<String, String> {
    let catalog = Catalog::builtin();
    let tags = all_tags(catalog);
    if tags.contains(&text) {
        return Ok(text.to_string());
    }
    Err(format!("`{text}` is not a catalog domain tag (known: {})", tags.join(", ")))
}

fn all_tags(catalog: &Catalog) -> Vec<&str> {
    let mut tags: Vec<&str> = catalog.domains().iter().flat_map(|d| d.tags().iter().map(String::as_str)).collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

fn parse_unit_interval(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|err| format!("`{text}` is not a number: {err}"))?;
    if (0.0..=1.0).contains(&value) && value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{value} is not in (0, 1]"))
    }
}

/// Runs `ethos generate`.
pub fn run(args: GenerateArgs, printer: &Printer) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let traits: Vec<&TraitInfo> = if args.traits.is_empty() {
        catalog.traits().iter().collect()
    } else {
        let mut seen = HashSet::new();
        args.traits.iter().filter(|t| seen.insert(t.as_str())).filter_map(|t| catalog.trait_by_id(t)).collect()
    };
    let filter = DomainFilter::new(&args.domains, &args.exclude_tags, catalog)?;
    let domains: Vec<&Domain> = catalog.domains().iter().filter(|d| filter.accepts(d.id())).collect();
    if domains.is_empty() {
        anyhow::bail!("no domain is left after --domains and --exclude-tags");
    }
    let slots = plan_slots(catalog, &traits, &domains, args.per_cell);
    let order: HashMap<String, usize> = slots.iter().enumerate().map(|(i, s)| (s.scenario_id(), i)).collect();
    let config = GenerateConfig {
        generator: args.generator.clone(),
        max_attempts: args.max_attempts,
        dup_threshold: args.dup_threshold,
        seed: args.seed,
        temperature: args.temperature,
        top_p: args.top_p,
        max_tokens: args.max_tokens,
        batch_size: args.batch_size as usize,
        max_reference_score: args.max_reference_score,
    };

    let partial_path = partial_path(&args.out);
    let resumed = if partial_path.exists() {
        if !args.resume {
            return Err(RecordError::in_file(
                RecordErrorKind::InvalidValue,
                &partial_path,
                "left by an interrupted run; pass --resume to continue it, or delete it to start over",
            )
            .into());
        }
        read_partial(&partial_path, &order, &config.source(), catalog)?
    } else {
        Vec::new()
    };

    let mut existing: Vec<Scenario> = Vec::new();
    for path in &args.against {
        existing.extend(read_scenarios(path)?);
    }
    if args.against_bank {
        existing.extend(bank_scenarios().map_err(|e| anyhow::anyhow!("built-in bank: {e}"))?.iter().cloned());
    }

    let runtime = common::runtime()?;
    let loaded = runtime.block_on(common::load_policy(&args.generator, &args.model, printer))?;
    let scorer = match &args.difficulty_policy {
        Some(spec) => {
            let policy = runtime.block_on(common::load_policy(spec, &args.model, printer))?;
            let judge = runtime.block_on(args.judge.load(&args.model, printer, Some(&policy)))?;
            Some(GraderDifficulty {
                policy,
                grader: RubricGrader::new(judge.judge, 1, 1),
                max_tokens: 200,
                seed: args.seed,
            })
        }
        None => None,
    };
    let mut generator = Generator::new(loaded.model.as_ref(), catalog, config.clone());
    if let Some(scorer) = &scorer {
        generator = generator.with_scorer(scorer);
    }
    for scenario in existing.iter().chain(&resumed) {
        generator.add_existing(scenario);
    }
    let done: HashSet<&str> = resumed.iter().map(|s| s.id.as_str()).collect();
    let todo: Vec<_> = slots.iter().filter(|s| !done.contains(s.scenario_id().as_str())).cloned().collect();
    if !resumed.is_empty() {
        printer.status(format!(
            "resuming: {} of {} scenarios already in {}",
            resumed.len(),
            slots.len(),
            partial_path.display()
        ));
    }

    let mut partial = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial_path)
        .with_context(|| format!("opening {}", partial_path.display()))?;
    let bar = printer.progress(todo.len() as u64, "generate");
    let mut accepted: Vec<Scenario> = resumed;
    let report = runtime.block_on(generator.run(&todo, |event| -> anyhow::Result<()> {
        if let SlotEvent::Accepted(scenario) = event {
            let mut line = serde_json::to_vec(scenario)?;
            line.push(b'\n');
            partial.write_all(&line).and_then(|()| partial.flush()).context("appending to the partial file")?;
            accepted.push(scenario.clone());
        }
        bar.inc(1);
        Ok(())
    }))?;
    bar.finish_and_clear();
    drop(partial);

    if report.requests > 0 && report.model_errors == report.requests {
        let last = report.failed.last().map(|f| f.last_error.as_str()).unwrap_or("unknown error");
        anyhow::bail!("every call to the generator failed ({} calls); last error: {last}", report.requests);
    }

    accepted.sort_by_key(|s| order.get(&s.id).copied().unwrap_or(usize::MAX));
    write_jsonl_atomic(&args.out, &accepted).with_context(|| format!("writing {}", args.out.display()))?;
    let manifest = common::manifest(
        "generate",
        serde_json::json!({
            "out": args.out, "traits": traits.iter().map(|t| t.id()).collect::<Vec<_>>(),
            "domains": domains.iter().map(|d| d.id()).collect::<Vec<_>>(), "per_cell": args.per_cell,
            "max_attempts": args.max_attempts, "dup_threshold": args.dup_threshold, "against": args.against,
            "against_bank": args.against_bank, "temperature": args.temperature, "top_p": args.top_p,
            "max_tokens": args.max_tokens, "batch_size": args.batch_size, "prompt_version": PROMPT_VERSION,
            "resumed": slots.len() - todo.len(), "report": report,
        }),
        [("seed", args.seed)],
        [("generator", &loaded)],
    );
    let manifest_path = common::sidecar_manifest_path(&args.out);
    write_atomic(&manifest_path, |writer| {
        serde_json::to_writer_pretty(&mut *writer, &manifest)?;
        writer.write_all(b"\n")
    })
    .with_context(|| format!("writing {}", manifest_path.display()))?;
    let _ = std::fs::remove_file(&partial_path);

    let stats = loaded.cache_stats();
    let cache_hits = stats.hits as usize;
    print_report(
        printer,
        &report,
        &ReportContext {
            out: &args.out,
            n_written: accepted.len(),
            n_slots: slots.len(),
            n_cells: traits.len() * domains.len(),
            n_resumed: slots.len() - todo.len(),
            model_calls: report.requests.saturating_sub(cache_hits),
            cache_hits,
        },
    );
    Ok(())
}

/// Failed slots listed on stderr; the manifest lists all.
const MAX_FAILURES_SHOWN: usize = 30;

/// Numbers of the run that the library report does not hold.
struct ReportContext<'a> {
    out: &'a Path,
    n_written: usize,
    n_slots: usize,
    n_cells: usize,
    n_resumed: usize,
    model_calls: usize,
    cache_hits: usize,
}

fn print_report(printer: &Printer, report: &GenerationReport, context: &ReportContext<'_>) {
    printer.status(format!(
        "wrote {} scenarios ({} generated now, {} resumed) for {} of {} slots in {} cells to {}",
        context.n_written,
        report.accepted,
        context.n_resumed,
        context.n_written,
        context.n_slots,
        context.n_cells,
        context.out.display()
    ));
    let reasons: Vec<String> = report.invalid.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
    let reasons = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
    printer.status(format!(
        "rejected candidates: invalid {}{reasons}, duplicates {}, too easy {}, model errors {}",
        report.invalid_total(),
        report.duplicates,
        report.too_easy,
        report.model_errors
    ));
    printer.status(format!("failed slots: {}", report.failed.len()));
    for failed in report.failed.iter().take(MAX_FAILURES_SHOWN) {
        printer.status(format!(
            "  {} ({} x {}, pressure {}): {} attempts; last error: {}",
            failed.slot.scenario_id(),
            failed.slot.trait_id,
            failed.slot.domain,
            failed.slot.pressure,
            failed.attempts,
            failed.last_error
        ));
    }
    if report.failed.len() > MAX_FAILURES_SHOWN {
        printer.status(format!(
            "  ... and {} more (all are listed under `config.report.failed` in the manifest)",
            report.failed.len() - MAX_FAILURES_SHOWN
        ));
    }
    printer.status(format!("model calls: {}, cache hits: {}", context.model_calls, context.cache_hits));
}

/// Reads the scenarios of an interrupted run. A torn last line (the run was killed mid-write) is dropped and cut
/// from the file; any other bad line, a scenario outside the requested slots, one from another generator or a
/// repeated id is an error naming the line, because continuing would mix runs.
fn read_partial(
    path: &Path,
    order: &HashMap<String, usize>,
    source: &str,
    catalog: &Catalog,
) -> anyhow::Result<Vec<Scenario>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let complete_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete_len < bytes.len() {
        // The tail has no newline: it was being written when the run stopped.
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(complete_len as u64).with_context(|| format!("truncating {}", path.display()))?;
        tracing::warn!("{}: dropped an incomplete last line", path.display());
    }
    let mut scenarios = Vec::new();
    let mut seen = HashSet::new();
    for (line_idx, line) in bytes[..complete_len].lines().enumerate() {
        let line_no = line_idx as u64 + 1;
        let line = line.map_err(|err| {
            RecordError::at_line(
                RecordErrorKind::NotUtf8,
                path,
                line_no,
                None,
                format!("line is not valid UTF-8: {err}"),
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let scenario: Scenario = ethos_core::io::parse_json_line(&line, path, line_no)?;
        let fail = |kind, field: &str, message: String| {
            RecordError::at_line(kind, path, line_no, Some(field.to_string()), message)
        };
        if !order.contains_key(&scenario.id) {
            let message = format!(
                "`{}` is not one of the requested scenarios; resume with the original --traits, --domains and \
                 --per-cell, or delete the file",
                scenario.id
            );
            return Err(fail(RecordErrorKind::InvalidValue, "id", message).into());
        }
        if scenario.source != source {
            let message = format!(
                "`{}` is not from this generator (`{source}`); resume with the original --generator",
                scenario.source
            );
            return Err(fail(RecordErrorKind::InvalidValue, "source", message).into());
        }
        if let Some(issue) = validate_scenario(&scenario, catalog).into_iter().next() {
            return Err(fail(RecordErrorKind::InvalidValue, &issue.field, issue.message).into());
        }
        if !seen.insert(scenario.id.clone()) {
            let message = format!("duplicate scenario id `{}`", scenario.id);
            return Err(fail(RecordErrorKind::Duplicate, "id", message).into());
        }
        scenarios.push(scenario);
    }
    Ok(scenarios)
}

/// `scenarios.jsonl` -> `scenarios.jsonl.partial`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}
