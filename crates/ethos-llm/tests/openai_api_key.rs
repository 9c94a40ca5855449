//! The API key is read from the environment, sent as `Authorization: Bearer`, and shown nowhere else.
//!
//! This binary holds a single test because it sets an environment variable, which must not race other threads.

mod common;

use common::fast_config;
use common::fault_server::{Fault, FaultServer, ServerConfig};
use ethos_core::records::Message;
use ethos_llm::openai::{OpenAiConfig, OpenAiModel};
use ethos_llm::{ChatModel, ChatRequest, ModelSpec, SamplingParams};

const KEY_ENV: &str = "ETHOS_TEST_OPENAI_API_KEY";
const KEY: &str = "sk-test-5ecret-d0-not-leak";

fn request(text: &str) -> ChatRequest {
    ChatRequest { messages: vec![Message::user(text)], sampling: SamplingParams::default() }
}

#[test]
fn api_key_is_sent_as_bearer_and_never_shown() {
    // Set before the runtime starts any thread.
    std::env::set_var(KEY_ENV, KEY);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let server = FaultServer::start(ServerConfig {
            fail_first_attempts: 0,
            fault_fraction: 0.0,
            faults: vec![Fault::ServerError],
            ..ServerConfig::default()
        })
        .await;
        let spec: ModelSpec = format!("openai:{}#m", server.base_url).parse().expect("valid spec");
        let config = OpenAiConfig { api_key_env: Some(KEY_ENV.into()), max_retries: 1, ..fast_config() };
        let model = OpenAiModel::new(spec.clone(), config.clone()).expect("model");
        assert!(model.has_api_key());

        model.chat(&request("hello")).await.expect("reply");
        assert_eq!(server.authorizations(), vec![Some(format!("Bearer {KEY}"))]);

        let debug = format!("{model:?} {:?}", model.config());
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");

        // A 401 whose body quotes the header: the error masks the key.
        let err = model.chat(&request("unauthorized")).await.expect_err("401");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(KEY), "{shown}");
            assert!(shown.contains("HTTP 401") || shown.contains("status: 401"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }

        // Retries exhausted on 5xx bodies quoting the header: masked too.
        let failing = FaultServer::start(ServerConfig { fault_fraction: 1.0, ..ServerConfig::default() }).await;
        let spec: ModelSpec = format!("openai:{}#m", failing.base_url).parse().expect("valid spec");
        let model = OpenAiModel::new(spec, config.clone()).expect("model");
        let err = model.chat(&request("fails")).await.expect_err("500s");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(KEY), "{shown}");
            assert!(shown.contains("giving up after 2 attempts") || shown.contains("RetriesExhausted"), "{shown}");
        }

        // Without a key variable no Authorization header is sent.
        let spec: ModelSpec = format!("openai:{}#m", server.base_url).parse().expect("valid spec");
        let anonymous = OpenAiModel::new(spec, OpenAiConfig { api_key_env: None, ..config }).expect("model");
        assert!(!anonymous.has_api_key());
        anonymous.chat(&request("anonymous")).await.expect("reply");
        assert_eq!(server.authorizations().last(), Some(&None));
    });
}
