//! The capability runner on real GSM8K test items with a scripted policy: scores follow the replies,
//! a failed run resumes without redoing finished items, and the run files agree with each other.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use ethos_core::records::{FinishReason, ItemScore};
use ethos_eval::capability::{load_items, CapabilityBenchmark, CapabilityCheck};
use ethos_eval::runner::{run_capability, CapabilityRunConfig};
use ethos_llm::{
    ChatModel, ChatRequest, ChatResponse, ContinuationLogprobs, ContinuationRequest, Generation, LlmError, ModelSpec,
};

/// Answers with the gold number for every other question (by the question's text), or fails once it
/// has answered `fail_after` requests.
struct ScriptedSolver {
    spec: ModelSpec,
    golds: Vec<(String, String)>,
    calls: AtomicUsize,
    fail_after: Option<usize>,
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl ChatModel for ScriptedSolver {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn identity(&self) -> String {
        "scripted-solver".to_string()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_after.is_some_and(|limit| call >= limit) {
            return Err(LlmError::Inference("scripted outage".to_string()));
        }
        assert_eq!(request.sampling.temperature, 0.0, "capability decoding is greedy");
        let prompt = &request.messages.last().expect("a user message").content;
        self.seen.lock().unwrap().push(prompt.clone());
        let index = self.golds.iter().position(|(p, _)| p == prompt).expect("a known prompt");
        let gold = &self.golds[index].1;
        let text = if index % 2 == 0 { format!("Reasoning...\n#### {gold}") } else { "#### -1".to_string() };
        Ok(ChatResponse {
            choices: vec![Generation {
                text,
                n_tokens: 5,
                finish_reason: FinishReason::Stop,
                top_logprobs: None,
                token_ids: Vec::new(),
            }],
            prompt_tokens: None,
        })
    }

    async fn continuation_logprobs(
        &self,
        _request: &ContinuationRequest,
    ) -> Result<Vec<ContinuationLogprobs>, LlmError> {
        Err(LlmError::Unsupported("not scripted".to_string()))
    }
}

fn gsm8k_file() -> Option<std::path::PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/gsm8k/test.jsonl");
    path.exists().then_some(path)
}

#[tokio::test]
async fn scores_follow_replies_and_a_failed_run_resumes() {
    let Some(path) = gsm8k_file() else {
        eprintln!("skipping: shared data is absent");
        return;
    };
    let items = load_items(CapabilityBenchmark::Gsm8k, &path, 10, 7).unwrap();
    assert_eq!(items.len(), 10);
    let golds: Vec<(String, String)> = items
        .iter()
        .map(|item| match &item.check {
            CapabilityCheck::Gsm8k { gold } => (item.prompt.clone(), gold.clone()),
            CapabilityCheck::Ifeval { .. } => unreachable!(),
        })
        .collect();
    let solver = |fail_after| ScriptedSolver {
        spec: "embedded:gemma-3-270m".parse().unwrap(),
        golds: golds.clone(),
        calls: AtomicUsize::new(0),
        fail_after,
        seen: Mutex::new(Vec::new()),
    };
    let out = tempfile::tempdir().unwrap();
    let config = CapabilityRunConfig {
        policy: "scripted".to_string(),
        condition: None,
        system_prompt: None,
        max_tokens: 64,
        batch_size: 4,
        seed: 0,
    };

    // The first run fails at the 7th item, in its second batch: the 6 replies before it are kept.
    let failing = solver(Some(6));
    let err = run_capability(&failing, CapabilityBenchmark::Gsm8k, &items, &config, out.path(), |_| {}).await;
    assert!(err.unwrap_err().to_string().contains("scripted outage"));
    assert!(!out.path().join("summary.json").exists());

    let resumed = solver(None);
    let run = run_capability(&resumed, CapabilityBenchmark::Gsm8k, &items, &config, out.path(), |_| {}).await.unwrap();
    assert_eq!(run.n_resumed, 6);
    assert_eq!(resumed.seen.lock().unwrap().len(), 4, "only the unfinished items are asked again");
    // Even-indexed items get the gold answer: 5 of 10.
    assert_eq!(run.summary.accuracy.n, 10);
    assert!((run.summary.accuracy.value - 0.5).abs() < 1e-12);
    assert!(run.summary.accuracy.ci_low < 0.5 && run.summary.accuracy.ci_high > 0.5);
    assert!(!out.path().join("progress.jsonl").exists());

    let scores: Vec<ItemScore> = std::fs::read_to_string(out.path().join("item_scores.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(scores.len(), 10);
    for (index, (score, item)) in scores.iter().zip(&items).enumerate() {
        assert_eq!(score.item, item.id, "item scores are in file order");
        assert_eq!(score.score, Some(if index % 2 == 0 { 1.0 } else { 0.0 }));
    }
    let samples = std::fs::read_to_string(out.path().join("samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 10);

    // A rerun reuses the finished run's files: nothing is asked again, the summary is the same.
    let again = solver(None);
    let rerun = run_capability(&again, CapabilityBenchmark::Gsm8k, &items, &config, out.path(), |_| {}).await.unwrap();
    assert_eq!((rerun.n_resumed, again.seen.lock().unwrap().len()), (10, 0));
    assert_eq!(rerun.summary, run.summary);
    // Another policy's replies are never mixed in.
    let other = CapabilityRunConfig { policy: "other".to_string(), ..config.clone() };
    let err = run_capability(&solver(None), CapabilityBenchmark::Gsm8k, &items, &other, out.path(), |_| {}).await;
    assert!(err.unwrap_err().to_string().contains("another --out"));
}
