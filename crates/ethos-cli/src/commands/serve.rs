//! `ethos serve openai`: an OpenAI-compatible chat server over any model spec (the embedded model by default).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use ethos_llm::ModelSpec;

use crate::commands::common::{self, ModelArgs};
use crate::printer::Printer;

/// `ethos serve` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ServeCommand {
    /// OpenAI-compatible `/v1/chat/completions` server. Prints its base URL on stdout once listening.
    Openai(ServeOpenAiArgs),
}

/// Arguments of `ethos serve openai`.
#[derive(Debug, clap::Args)]
pub struct ServeOpenAiArgs {
    /// Model spec to serve.
    #[arg(long, default_value = ethos_llm::DEFAULT_POLICY)]
    policy: String,
    /// Address to bind. Loopback by default; binding elsewhere exposes the model to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind (0 picks a free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Most concurrent requests answered by one batched model call.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Milliseconds the batcher waits for more requests after the first.
    #[arg(long, default_value_t = 5)]
    batch_window_ms: u64,
    /// Answer repeated requests from the request cache (off by default for a server).
    #[arg(long)]
    cached: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// Runs `ethos serve`.
pub fn run(command: ServeCommand, printer: &Printer) -> anyhow::Result<()> {
    match command {
        ServeCommand::Openai(args) => serve_openai(args, printer),
    }
}

fn serve_openai(args: ServeOpenAiArgs, printer: &Printer) -> anyhow::Result<()> {
    let runtime = common::runtime()?;
    runtime.block_on(async {
        let model = if args.cached {
            common::load_policy(&args.policy, &args.model, printer).await?.model
        } else {
            let spec: ModelSpec = args.policy.parse()?;
            common::load_backend(&spec, &args.model, printer).await?
        };
        let model_name = match args.policy.parse::<ModelSpec>()? {
            ModelSpec::Embedded { model, .. } => model,
            ModelSpec::OpenAi { model, .. } => model,
        };
        let address = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
        let bound = listener.local_addr()?;
        if !bound.ip().is_loopback() {
            printer.status(format!("warning: serving on non-loopback address {bound}"));
        }
        let config = ethos_server::ServerConfig {
            address: bound,
            model_name,
            max_batch: args.max_batch.max(1),
            batch_window: Duration::from_millis(args.batch_window_ms),
            ..Default::default()
        };
        printer.status(format!("ethos serve: listening on http://{bound}/v1 (Ctrl-C to stop)"));
        printer.data(format!("http://{bound}/v1"));
        tokio::select! {
            result = ethos_server::serve(listener, model, config) => result.context("server failed"),
            _ = tokio::signal::ctrl_c() => {
                printer.status("ethos serve: stopping");
                Ok(())
            }
        }
    })
}
