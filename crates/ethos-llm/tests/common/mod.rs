//! Test doubles shared by the OpenAI-backend and cache tests: a fault-injecting OpenAI-compatible server bound to
//! 127.0.0.1 and an in-process counting model.
// Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

pub mod counting_model;
pub mod fault_server;

use std::time::Duration;

use ethos_llm::openai::OpenAiConfig;

/// A client config for tests: no API key, short deadlines and backoff, so failures arrive quickly.
pub fn fast_config() -> OpenAiConfig {
    OpenAiConfig {
        api_key_env: None,
        max_concurrency: 32,
        request_timeout: Duration::from_millis(1000),
        connect_timeout: Duration::from_millis(500),
        max_retries: 10,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(50),
        retry_after_cap: Duration::from_secs(10),
        endpoint_cooldown: Duration::from_secs(5),
    }
}
