//! `ethos serve openai` over the embedded model, used through ethos's own OpenAI-compatible backend.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use ethos_core::records::Message;
use ethos_llm::openai::{OpenAiConfig, OpenAiModel};
use ethos_llm::{ChatModel, ChatRequest, SamplingParams};

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(["serve", "openai", "--port", "0", "--policy", "embedded:gemma-3-270m"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ethos serve starts");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("server prints its URL");
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "server must bind loopback by default: {url}");
    (server, url)
}

fn request(question: &str, seed: u64, n: u32) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::user(question)],
        sampling: SamplingParams {
            n,
            temperature: 0.8,
            top_p: 0.95,
            max_tokens: 12,
            stop: vec![],
            seed,
            top_logprobs: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_backend_talks_to_ethos_serve() {
    let (_server, url) = start_server();
    let spec = format!("openai:{url}#gemma-3-270m").parse().unwrap();
    let client = OpenAiModel::new(spec, OpenAiConfig { api_key_env: None, ..OpenAiConfig::default() }).unwrap();

    let questions = ["Why do cats purr?", "What is the capital of France?", "How do I boil an egg?", "Is coffee bad?"];
    let requests: Vec<ChatRequest> = questions.iter().map(|q| request(q, 5, 2)).collect();
    // Sent concurrently so the server batches them.
    let results = futures::future::join_all(requests.iter().map(|r| client.chat(r))).await;
    for result in &results {
        let response = result.as_ref().expect("server answers");
        assert_eq!(response.choices.len(), 2);
        // The wire format reports only the total completion tokens; the client splits it across choices by
        // length, so only the total is exact.
        let total_tokens: u32 = response.choices.iter().map(|c| c.n_tokens).sum();
        assert!(total_tokens > 0 && total_tokens <= 2 * 12, "{total_tokens} tokens");
        assert!(response.choices.iter().any(|c| !c.text.trim().is_empty()), "{response:?}");
    }
    // Same seed, same request: same replies, whether batched with others or alone.
    let alone = client.chat(&requests[0]).await.unwrap();
    let texts = |r: &ethos_llm::ChatResponse| r.choices.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&alone), texts(results[0].as_ref().unwrap()));
}
