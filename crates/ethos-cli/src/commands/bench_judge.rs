//! `ethos bench judge`: items/s of the `ethos eval run` judge pipeline next to a bare async HTTP client, both
//! against the same instant in-process mock OpenAI-compatible server, in one session.
//!
//! The pipeline run is the real `ethos eval run` code path ([`crate::commands::ood::run_suite_command`]) on
//! SimpleQA from the `quick` suite with `--limit N`, an `openai:` policy and an `openai:` probability judge
//! (both the mock), `--batch-size`, `--judge-concurrency` and backend `--concurrency` all set to C, no request
//! cache and a fresh run directory. Each item costs exactly two HTTP calls: the policy's reply, then the judge's
//! one-token read with `top_logprobs: 20`. The bare client makes the same 2N calls (same body shapes, the judge
//! prompt filled from the reply it got) with a `reqwest::Client`, at most C in flight, each item's two calls in
//! sequence. Runs alternate, pipeline first; items/s = N / wall seconds of the run (the server is already up).
//!
//! With `--json` the result is one JSON object on stdout:
//! `{"items", "concurrency", "repeats", "calls_per_item", "mock_server", "pipeline": {"best_items_per_s",
//! "median_items_per_s", "runs": [{"seconds", "items_per_s", "run_suite_seconds", "cpu_seconds"}]}, "bare":
//! {...same, without "run_suite_seconds"}, "ratio_median", "ratio_best", "goal", "meets_goal", "requests_served"}`.
//! `requests_served` counts every request the mock answered in the session: 2 x N x 2 x repeats.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use ethos_eval::ood::load::{load_benchmark, LoadOptions};
use ethos_eval::ood::run::item_seed;
use ethos_eval::ood::suite::{stratified_subset, Suite};
use ethos_eval::ood::{Grading, Task};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::commands::common;
use crate::commands::ood::{run_suite_command, RunArgs};
use crate::printer::Printer;

/// The suite and benchmark whose judge pipeline is measured: SimpleQA grades every reply with one judge call.
const SUITE: &str = "quick";
const BENCHMARK: &str = "simpleqa";
/// The speed the issue asks of the pipeline, as a fraction of the bare client's.
const GOAL: f64 = 0.8;
/// The judge read of `ProbeJudge::distribution` with top-logprobs (what the bare client asks for too).
const JUDGE_TOP_LOGPROBS: u32 = 20;
/// The model name in the mock spec; the mock ignores it.
const MOCK_MODEL: &str = "mock";

/// Arguments of `ethos bench judge`.
#[derive(Debug, clap::Args)]
pub struct JudgeArgs {
    /// SimpleQA items per run (at most the 4,326 of the file); each costs two HTTP calls.
    #[arg(long, default_value_t = 2000)]
    items: usize,
    /// Requests in flight: the pipeline's batch size, judge concurrency and backend concurrency, and the bare
    /// client's limit.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Timed runs of each side, alternating.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Shared data directory (SimpleQA and its grader template).
    #[arg(long, env = "ETHOS_DATA_DIR", default_value = "../shared/data")]
    data_dir: PathBuf,
    /// Where the pipeline's run directories go (one fresh directory per run, removed after it; default: the
    /// system temp directory). The pipeline fsyncs its progress file there, so the disk matters.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One timed run.
#[derive(Debug, Clone, Serialize)]
struct TimedRun {
    seconds: f64,
    items_per_s: f64,
    /// The pipeline's time inside `run_suite` (the rest is loading the suite, data, templates and the manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    run_suite_seconds: Option<f64>,
    /// CPU seconds (user + system) of the whole process during the run, mock server included: more CPU than the
    /// bare client for the same calls is work of the pipeline; the same CPU in more wall time is waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_seconds: Option<f64>,
}

/// The runs of one side and their best and median rates.
#[derive(Debug, Serialize)]
struct Side {
    best_items_per_s: f64,
    median_items_per_s: f64,
    runs: Vec<TimedRun>,
}

impl Side {
    fn new(runs: Vec<TimedRun>) -> Side {
        let mut rates: Vec<f64> = runs.iter().map(|run| run.items_per_s).collect();
        rates.sort_by(f64::total_cmp);
        let best = rates.last().copied().unwrap_or(0.0);
        // The lower middle for an even count, so two runs report the slower one rather than flattering.
        let median = rates.get(rates.len().saturating_sub(1) / 2).copied().unwrap_or(0.0);
        Side { best_items_per_s: best, median_items_per_s: median, runs }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    items: usize,
    concurrency: usize,
    repeats: usize,
    calls_per_item: u64,
    mock_server: String,
    pipeline: Side,
    bare: Side,
    ratio_median: f64,
    ratio_best: f64,
    goal: f64,
    meets_goal: bool,
    requests_served: u64,
}

/// `ethos eval run`'s arguments, parsed from an argv as the command line would be (`ModelArgs` has private
/// fields, so parsing is the only way to build them outside `common`).
#[derive(Debug, Parser)]
struct RunArgsParser {
    #[command(flatten)]
    run: RunArgs,
}

/// One SimpleQA item as the bare client sends it.
struct BareItem {
    question: String,
    target: String,
    seed: u64,
}

/// Runs `ethos bench judge`.
pub fn run(args: JudgeArgs, printer: &Printer) -> anyhow::Result<()> {
    anyhow::ensure!(args.items > 0, "--items must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    anyhow::ensure!(
        args.data_dir.exists(),
        "data directory {} not found (pass --data-dir or set ETHOS_DATA_DIR to the shared data directory)",
        args.data_dir.display()
    );
    let (items, max_tokens, temperature) = bare_items(&args.data_dir, args.items)?;
    let template_path = args.data_dir.join("simpleqa").join("grader_template.txt");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading the SimpleQA grader template {}", template_path.display()))?;
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;

    let server = MockServer::start()?;
    let base_url = format!("http://{}/v1", server.addr);
    let spec = format!("openai:{base_url}#{MOCK_MODEL}");
    let runtime = common::runtime()?;
    // The same deadlines as the pipeline's backend (`ModelArgs` defaults), so neither side has an edge there.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let bare = BareClient {
        client,
        url: format!("{base_url}/chat/completions"),
        template,
        max_tokens,
        temperature,
        concurrency: args.concurrency,
    };

    printer.status(format!(
        "mock OpenAI server at {}; {} {BENCHMARK} items x 2 calls, concurrency {}, {} repeats",
        server.addr, args.items, args.concurrency, args.repeats
    ));
    let calls_per_run = 2 * args.items as u64;
    let mut pipeline_runs = Vec::new();
    let mut bare_runs = Vec::new();
    for repeat in 0..args.repeats {
        let out = work_dir.join(format!("ethos-bench-judge-{}-{repeat}", std::process::id()));
        let before = server.counts();
        let run = pipeline_run(&runtime, &args, &spec, &out)?;
        check_calls("pipeline", before, server.counts(), args.items as u64)?;
        printer.status(format!("run {}: ethos eval run {:.1} items/s", repeat + 1, run.items_per_s));
        pipeline_runs.push(run);

        let before = server.counts();
        let run = runtime.block_on(bare.run(&items))?;
        check_calls("bare client", before, server.counts(), args.items as u64)?;
        printer.status(format!("run {}: bare client    {:.1} items/s", repeat + 1, run.items_per_s));
        bare_runs.push(run);
    }
    let requests_served = server.counts().total();
    let expected = calls_per_run * 2 * args.repeats as u64;
    anyhow::ensure!(requests_served == expected, "the mock served {requests_served} requests, expected {expected}");

    let pipeline = Side::new(pipeline_runs);
    let bare = Side::new(bare_runs);
    let ratio = |p: f64, b: f64| if b > 0.0 { p / b } else { 0.0 };
    let ratio_median = ratio(pipeline.median_items_per_s, bare.median_items_per_s);
    let report = Report {
        items: args.items,
        concurrency: args.concurrency,
        repeats: args.repeats,
        calls_per_item: 2,
        mock_server: server.addr.to_string(),
        ratio_median,
        ratio_best: ratio(pipeline.best_items_per_s, bare.best_items_per_s),
        goal: GOAL,
        meets_goal: ratio_median >= GOAL,
        pipeline,
        bare,
        requests_served,
    };
    if args.json {
        return printer.json(&report);
    }
    print_table(&report, printer);
    Ok(())
}

fn print_table(report: &Report, printer: &Printer) {
    printer.data(format!(
        "{BENCHMARK}: {} items x {} calls, concurrency {}, {} repeats, mock at {}",
        report.items, report.calls_per_item, report.concurrency, report.repeats, report.mock_server
    ));
    printer.data(format!("{:<16} {:>14} {:>14}   runs (items/s)", "", "best items/s", "median items/s"));
    for (name, side) in [("ethos eval run", &report.pipeline), ("bare reqwest", &report.bare)] {
        let runs: Vec<String> = side.runs.iter().map(|run| format!("{:.1}", run.items_per_s)).collect();
        printer.data(format!(
            "{name:<16} {:>14.1} {:>14.1}   {}",
            side.best_items_per_s,
            side.median_items_per_s,
            runs.join(", ")
        ));
    }
    let inside: Vec<String> = report
        .pipeline
        .runs
        .iter()
        .filter_map(|run| run.run_suite_seconds.map(|inner| format!("{inner:.2}/{:.2}", run.seconds)))
        .collect();
    printer.data(format!("pipeline seconds in run_suite / whole run: {}", inside.join(", ")));
    let cpu = |side: &Side| -> String {
        let per_item: Vec<String> = side
            .runs
            .iter()
            .filter_map(|run| run.cpu_seconds.map(|cpu| format!("{:.0}", cpu * 1e6 / report.items as f64)))
            .collect();
        per_item.join(", ")
    };
    printer.data(format!(
        "process CPU us/item (mock included): pipeline {}; bare {}",
        cpu(&report.pipeline),
        cpu(&report.bare)
    ));
    printer.data(format!(
        "ratio pipeline/bare: median {:.3}, best {:.3} (goal >= {GOAL}: {})",
        report.ratio_median,
        report.ratio_best,
        if report.meets_goal { "met" } else { "NOT met" }
    ));
    printer.data(format!("requests served: {}", report.requests_served));
}

/// The SimpleQA items the pipeline will run (same suite seed, same stratified subset), plus the suite's reply
/// budget and temperature for SimpleQA, so the bare client's bodies match the pipeline's.
fn bare_items(data_dir: &Path, n: usize) -> anyhow::Result<(Vec<BareItem>, u32, f32)> {
    let suite = Suite::load(SUITE)?;
    let selected = suite
        .select()
        .map_err(|err| anyhow::anyhow!("suite `{SUITE}`: {err}"))?
        .into_iter()
        .find(|selected| selected.registered.info.name == BENCHMARK)
        .with_context(|| format!("suite `{SUITE}` has no `{BENCHMARK}` benchmark"))?;
    let options = LoadOptions { samples_per_paraphrase: suite.samples_per_paraphrase, seed: suite.seed };
    let loaded = load_benchmark(&selected.registered, data_dir, &options)?;
    anyhow::ensure!(
        n <= loaded.items.len(),
        "--items {n} is more than the {} {BENCHMARK} items in {}",
        loaded.items.len(),
        data_dir.join(&loaded.info.file).display()
    );
    let items = stratified_subset(loaded.items, n, suite.seed)
        .into_iter()
        .filter_map(|item| match item.task {
            Task::Generate(task) => match task.grading {
                Grading::SimpleQa { question, target } => {
                    Some(BareItem { question, target, seed: item_seed(suite.seed, BENCHMARK, &item.id) })
                }
                _ => None,
            },
            Task::Choice(_) => None,
        })
        .collect::<Vec<_>>();
    anyhow::ensure!(items.len() == n, "{BENCHMARK} gave {} gradable items, expected {n}", items.len());
    Ok((items, selected.max_tokens, suite.temperature))
}

/// One `ethos eval run` in a fresh run directory (an existing one would resume and do nothing).
fn pipeline_run(
    runtime: &tokio::runtime::Runtime,
    args: &JudgeArgs,
    spec: &str,
    out: &Path,
) -> anyhow::Result<TimedRun> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("removing the stale run directory {}", out.display()))?;
    }
    let _cleanup = RemoveOnDrop(out.to_path_buf());
    let concurrency = args.concurrency.to_string();
    let limit = args.items.to_string();
    let argv: Vec<std::ffi::OsString> = [
        "ethos-eval-run",
        "--suite",
        SUITE,
        "--benchmarks",
        BENCHMARK,
        "--limit",
        &limit,
        "--policy",
        spec,
        "--judge",
        spec,
        "--judge-concurrency",
        &concurrency,
        "--batch-size",
        &concurrency,
        "--concurrency",
        &concurrency,
        "--no-cache",
    ]
    .into_iter()
    .map(Into::into)
    .chain(["--out".into(), out.as_os_str().to_owned(), "--data-dir".into(), args.data_dir.as_os_str().to_owned()])
    .collect();
    let run_args = RunArgsParser::try_parse_from(argv).context("building the `eval run` arguments")?.run;
    // Quiet: a progress bar redrawn per batch would be timed too.
    let quiet = Printer::new(true, false);
    let cpu_start = process_cpu_seconds();
    let start = Instant::now();
    let summary = runtime.block_on(run_suite_command(&run_args, &quiet))?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_start.zip(process_cpu_seconds()).map(|(before, after)| after - before);
    anyhow::ensure!(
        summary.n_new == args.items && summary.n_resumed == 0,
        "the pipeline ran {} new items and resumed {}, expected {} new",
        summary.n_new,
        summary.n_resumed,
        args.items
    );
    let unscored: usize = summary.benchmarks.iter().map(|b| b.n_unscored).sum();
    anyhow::ensure!(unscored == 0, "the pipeline left {unscored} items unscored: the mock's judge reply was not read");
    Ok(TimedRun {
        seconds,
        items_per_s: args.items as f64 / seconds,
        run_suite_seconds: Some(summary.elapsed_s),
        cpu_seconds,
    })
}

/// Removes a run directory when the run ends, also on error.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails unless a run made exactly one policy call and one judge call per item.
fn check_calls(side: &str, before: Counts, after: Counts, items: u64) -> anyhow::Result<()> {
    let (chat, judge) = (after.chat - before.chat, after.judge - before.judge);
    anyhow::ensure!(
        chat == items && judge == items,
        "the {side} made {chat} policy calls and {judge} judge calls for {items} items, expected {items} of each"
    );
    Ok(())
}

/// The bare baseline: a plain `reqwest` client making the pipeline's calls.
struct BareClient {
    client: reqwest::Client,
    url: String,
    template: String,
    max_tokens: u32,
    temperature: f32,
    concurrency: usize,
}

/// The fields of an OpenAI chat request the pipeline sends (`ethos_llm::openai`'s body, minus empty `stop`).
#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: [BareMessage<'a>; 1],
    n: u32,
    temperature: f32,
    top_p: f32,
    max_tokens: u32,
    seed: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
}

#[derive(Serialize)]
struct BareMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct BareResponse {
    choices: Vec<BareChoice>,
}

#[derive(Deserialize)]
struct BareChoice {
    message: BareReply,
    #[serde(default)]
    logprobs: Option<BareLogprobs>,
}

#[derive(Deserialize)]
struct BareReply {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct BareLogprobs {
    #[serde(default)]
    content: Option<Vec<BareToken>>,
}

#[derive(Deserialize)]
struct BareToken {
    #[serde(default)]
    top_logprobs: Vec<BareTop>,
}

#[derive(Deserialize)]
struct BareTop {
    token: String,
    logprob: f32,
}

impl BareClient {
    /// All items, at most `concurrency` in flight, each item's policy call then judge call.
    async fn run(&self, items: &[BareItem]) -> anyhow::Result<TimedRun> {
        let cpu_start = process_cpu_seconds();
        let start = Instant::now();
        let graded = stream::iter(items)
            .map(|item| self.item(item))
            .buffer_unordered(self.concurrency)
            .try_fold(0usize, |count, _| async move { Ok(count + 1) })
            .await?;
        let seconds = start.elapsed().as_secs_f64();
        let cpu_seconds = cpu_start.zip(process_cpu_seconds()).map(|(before, after)| after - before);
        anyhow::ensure!(graded == items.len(), "the bare client graded {graded} of {} items", items.len());
        Ok(TimedRun { seconds, items_per_s: items.len() as f64 / seconds, run_suite_seconds: None, cpu_seconds })
    }

    /// One item: the reply, then the judge's read of it; returns the most likely grade letter.
    async fn item(&self, item: &BareItem) -> anyhow::Result<String> {
        let body = ChatBody {
            model: MOCK_MODEL,
            messages: [BareMessage { role: "user", content: &item.question }],
            n: 1,
            temperature: self.temperature,
            top_p: 0.95,
            max_tokens: self.max_tokens,
            seed: item.seed,
            logprobs: false,
            top_logprobs: None,
        };
        let reply = self.post(&body).await?;
        let reply = reply.choices.into_iter().next().context("no choice in the policy reply")?;
        let reply = reply.message.content.unwrap_or_default();
        let prompt = self
            .template
            .replace("{question}", &item.question)
            .replace("{target}", &item.target)
            .replace("{predicted_answer}", &reply);
        let body = ChatBody {
            model: MOCK_MODEL,
            messages: [BareMessage { role: "user", content: &prompt }],
            n: 1,
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 1,
            seed: 0,
            logprobs: true,
            top_logprobs: Some(JUDGE_TOP_LOGPROBS),
        };
        let judged = self.post(&body).await?;
        let top = judged
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.logprobs)
            .and_then(|logprobs| logprobs.content)
            .and_then(|tokens| tokens.into_iter().next())
            .map(|token| token.top_logprobs)
            .context("no top_logprobs in the judge reply")?;
        top.into_iter()
            .filter(|alternative| ["A", "B", "C"].contains(&alternative.token.trim()))
            .max_by(|a, b| a.logprob.total_cmp(&b.logprob))
            .map(|alternative| alternative.token)
            .context("no grade letter among the judge's top_logprobs")
    }

    async fn post(&self, body: &ChatBody<'_>) -> anyhow::Result<BareResponse> {
        let response = self.client.post(&self.url).json(body).send().await.context("bare client request")?;
        let response = response.error_for_status().context("bare client request")?;
        // Text then parse, as the pipeline's client does (it quotes the body in errors).
        let text = response.text().await.context("bare client response body")?;
        serde_json::from_str(&text).context("bare client response JSON")
    }
}

/// Requests the mock has answered, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    chat: u64,
    judge: u64,
}

impl Counts {
    fn total(self) -> u64 {
        self.chat + self.judge
    }
}

/// The mock's counters and its two ready-made reply bodies.
struct MockState {
    chat: AtomicU64,
    judge: AtomicU64,
    chat_body: Bytes,
    judge_body: Bytes,
}

/// The fields of a chat request that decide the mock's answer; serde skips the rest.
#[derive(Deserialize)]
struct MockRequest {
    #[serde(default)]
    logprobs: bool,
    #[serde(default)]
    top_logprobs: Option<u32>,
}

/// An instant OpenAI-compatible server on 127.0.0.1 with its own runtime, as a local server would be its own
/// process: its work does not queue behind the client's tasks (the two still share the cores).
struct MockServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    state: Arc<MockState>,
}

impl MockServer {
    fn start() -> anyhow::Result<MockServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("mock-openai")
            .enable_all()
            .build()
            .context("starting the mock server's runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding the mock server to 127.0.0.1")?;
        let addr = listener.local_addr().context("the mock server's address")?;
        let chat_body = json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": MOCK_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 16, "completion_tokens": 2, "total_tokens": 18},
        });
        let top_logprobs = json!([
            {"token": "A", "logprob": -0.1}, {"token": "B", "logprob": -2.5}, {"token": "C", "logprob": -3.0},
        ]);
        let judge_body = json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": MOCK_MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "A"},
                "logprobs": {"content": [{"token": "A", "logprob": -0.1, "top_logprobs": top_logprobs}]},
                "finish_reason": "length",
            }],
            "usage": {"prompt_tokens": 1500, "completion_tokens": 1, "total_tokens": 1501},
        });
        // Rendered once: the mock should cost as little as possible per request.
        let state = Arc::new(MockState {
            chat: AtomicU64::new(0),
            judge: AtomicU64::new(0),
            chat_body: Bytes::from(chat_body.to_string()),
            judge_body: Bytes::from(judge_body.to_string()),
        });
        let app = Router::new().route("/v1/chat/completions", post(mock_chat)).with_state(state.clone());
        runtime.spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!("mock OpenAI server stopped: {err}");
            }
        });
        Ok(MockServer { runtime: Some(runtime), addr, state })
    }

    fn counts(&self) -> Counts {
        Counts { chat: self.state.chat.load(Ordering::SeqCst), judge: self.state.judge.load(Ordering::SeqCst) }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // Idle keep-alive connections would make a graceful shutdown wait; nothing is in flight by now.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn mock_chat(State(state): State<Arc<MockState>>, Json(request): Json<MockRequest>) -> impl IntoResponse {
    let body = if request.logprobs && request.top_logprobs.is_some() {
        state.judge.fetch_add(1, Ordering::SeqCst);
        state.judge_body.clone()
    } else {
        state.chat.fetch_add(1, Ordering::SeqCst);
        state.chat_body.clone()
    };
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// User + system CPU seconds of this process so far (`None` where `getrusage` is unavailable).
fn process_cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        // SAFETY: `getrusage` only writes the struct we pass, which is plain data and valid when zeroed.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_lower_middle() {
        let run = |items_per_s: f64| TimedRun { seconds: 1.0, items_per_s, run_suite_seconds: None, cpu_seconds: None };
        let side = Side::new(vec![run(3.0), run(1.0), run(2.0)]);
        assert_eq!((side.best_items_per_s, side.median_items_per_s), (3.0, 2.0));
        let side = Side::new(vec![run(4.0), run(1.0)]);
        assert_eq!((side.best_items_per_s, side.median_items_per_s), (4.0, 1.0));
    }

    #[test]
    fn the_eval_run_arguments_parse() {
        let parsed = RunArgsParser::try_parse_from([
            "x",
            "--out",
            "/tmp/o",
            "--policy",
            "openai:http://127.0.0.1:1/v1#m",
            "--batch-size",
            "64",
            "--concurrency",
            "64",
            "--no-cache",
        ]);
        let parsed = parsed.map_err(|err| err.to_string());
        assert_eq!(parsed.as_ref().map(|p| p.run.settings.batch_size), Ok(64));
    }
}
