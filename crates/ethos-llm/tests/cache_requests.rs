//! The request cache: reruns make zero inner calls, keys separate what differs, concurrency from tasks,
//! connections and processes, partial batches, and a process killed mid-run.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::counting_model::{counting_reply, CountingModel};
use ethos_core::records::{Message, Role};
use ethos_llm::cache::{CacheKey, CacheStats, CachedModel, RequestCache, RequestKind};
use ethos_llm::{ChatModel, ChatRequest, ChatResponse, ContinuationRequest, LlmError, SamplingParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_http_backend_makes_no_requests_on_rerun() {
    use common::fault_server::{expected_reply, Fault, FaultServer, ServerConfig};
    use ethos_llm::openai::OpenAiModel;

    let server = FaultServer::start(ServerConfig {
        fault_fraction: 0.3,
        faults: vec![Fault::ServerError, Fault::MalformedJson, Fault::RateLimited],
        ..ServerConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("requests.sqlite");
    let spec: ethos_llm::ModelSpec = format!("openai:{}#m", server.base_url).parse().expect("valid spec");
    let batch: Vec<ChatRequest> = (0..50).map(|item_idx| request(&format!("http {item_idx}"))).collect();
    let run = || async {
        let backend = Arc::new(OpenAiModel::new(spec.clone(), common::fast_config()).expect("model"));
        let model = CachedModel::new(backend, RequestCache::open(&path).expect("open cache"));
        let results = model.chat_batch(&batch).await;
        for (item_idx, result) in results.iter().enumerate() {
            let expect: Vec<String> =
                (0..2).map(|choice_idx| expected_reply(&format!("http {item_idx}"), choice_idx, 0)).collect();
            assert_eq!(texts(result.as_ref().expect("reply")), expect);
        }
        model.stats()
    };
    assert_eq!(run().await, CacheStats { hits: 0, misses: 50 });
    let n_requests = server.n_requests();
    assert_eq!(run().await, CacheStats { hits: 50, misses: 0 });
    assert_eq!(server.n_requests(), n_requests, "the rerun must not reach the server");
}

/// Set in the child process of `a_killed_writer_leaves_a_consistent_cache` to the cache path it writes to.
const CHILD_CACHE_ENV: &str = "ETHOS_CACHE_TEST_CHILD_PATH";

fn request(text: &str) -> ChatRequest {
    ChatRequest { messages: vec![Message::user(text)], sampling: SamplingParams { n: 2, ..SamplingParams::default() } }
}

fn texts(response: &ChatResponse) -> Vec<String> {
    response.choices.iter().map(|choice| choice.text.clone()).collect()
}

fn expected_texts(request: &ChatRequest) -> Vec<String> {
    (0..request.sampling.n).map(|choice_idx| counting_reply(request, choice_idx)).collect()
}

fn cached(path: &Path) -> (Arc<CountingModel>, CachedModel<CountingModel>) {
    let inner = Arc::new(CountingModel::new("counting:v1"));
    let cache = RequestCache::open(path).expect("open cache");
    (inner.clone(), CachedModel::new(inner, cache))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_makes_zero_inner_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/requests.sqlite");
    let batch: Vec<ChatRequest> = (0..20).map(|item_idx| request(&format!("batch {item_idx}"))).collect();
    let singles: Vec<ChatRequest> = (0..5).map(|item_idx| request(&format!("single {item_idx}"))).collect();
    let scoring = ContinuationRequest { messages: vec![Message::user("A or B?")], continuations: vec![" A".into()] };

    let run = |path: std::path::PathBuf| {
        let (batch, singles, scoring) = (batch.clone(), singles.clone(), scoring.clone());
        async move {
            let (inner, model) = cached(&path);
            let mut answers = Vec::new();
            for result in model.chat_batch(&batch).await {
                answers.push(texts(&result.expect("batch reply")));
            }
            for single in &singles {
                answers.push(texts(&model.chat(single).await.expect("reply")));
            }
            let scores = model.continuation_logprobs(&scoring).await.expect("scores");
            (answers, scores, model.stats(), inner)
        }
    };

    let (first_answers, first_scores, first_stats, first_inner) = run(path.clone()).await;
    assert_eq!(first_stats, CacheStats { hits: 0, misses: 26 });
    assert_eq!((first_inner.n_requests(), first_inner.n_batch_calls()), (25, 1));
    assert_eq!(first_inner.n_continuation_calls(), 1);
    let expect: Vec<Vec<String>> = batch.iter().chain(&singles).map(expected_texts).collect();
    assert_eq!(first_answers, expect);

    let (second_answers, second_scores, second_stats, second_inner) = run(path.clone()).await;
    assert_eq!(second_stats, CacheStats { hits: 26, misses: 0 });
    assert_eq!(second_inner.n_requests() + second_inner.n_batch_calls() + second_inner.n_continuation_calls(), 0);
    assert_eq!(second_answers, first_answers);
    assert_eq!(second_scores, first_scores);
    assert_eq!(RequestCache::open(&path).and_then(|cache| cache.n_entries()).expect("count"), 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_requests_or_backends_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("requests.sqlite");
    let (inner, model) = cached(&path);
    let base = request("question");
    let variant = |change: &dyn Fn(&mut ChatRequest)| {
        let mut changed = base.clone();
        change(&mut changed);
        changed
    };
    let variants = vec![
        base.clone(),
        variant(&|r| r.sampling.temperature = 0.0),
        variant(&|r| r.sampling.top_p = 0.5),
        variant(&|r| r.sampling.seed = 1),
        variant(&|r| r.sampling.n = 3),
        variant(&|r| r.sampling.max_tokens = 9),
        variant(&|r| r.sampling.stop = vec!["x".into()]),
        variant(&|r| r.sampling.top_logprobs = Some(1)),
        variant(&|r| r.messages[0].content = "question?".into()),
        variant(&|r| r.messages[0].role = Role::System),
        variant(&|r| r.messages.insert(0, Message::system("persona"))),
    ];
    for (variant_idx, changed) in variants.iter().enumerate() {
        let response = model.chat(changed).await.expect("reply");
        assert_eq!(texts(&response), expected_texts(changed), "variant {variant_idx}");
        assert_eq!(model.stats().misses, variant_idx as u64 + 1, "variant {variant_idx} should miss");
    }
    for changed in &variants {
        model.chat(changed).await.expect("reply");
    }
    assert_eq!(model.stats(), CacheStats { hits: variants.len() as u64, misses: variants.len() as u64 });
    assert_eq!(inner.n_requests(), variants.len() as u64);

    // Another backend identity shares nothing.
    let other_inner = Arc::new(CountingModel::new("counting:v2"));
    let other = CachedModel::new(other_inner.clone(), RequestCache::open(&path).expect("open cache"));
    other.chat(&base).await.expect("reply");
    assert_eq!(other.stats(), CacheStats { hits: 0, misses: 1 });
    assert_eq!(other.identity(), "counting:v2");

    // Chat and continuation keys never collide, even for the same JSON.
    let payload = serde_json::json!({"messages": [], "x": 1});
    let chat_key = CacheKey::new("m", RequestKind::Chat, &payload).expect("key");
    let continuation_key = CacheKey::new("m", RequestKind::Continuation, &payload).expect("key");
    assert_ne!(chat_key, continuation_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_are_never_cached() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inner, model) = cached(&dir.path().join("requests.sqlite"));
    inner.fail_on(Some("flaky"));
    let flaky = request("flaky one");
    let err = model.chat(&flaky).await.expect_err("inner fails");
    assert!(matches!(err, LlmError::Http { status: 500, .. }), "{err:?}");
    inner.fail_on(None);
    let response = model.chat(&flaky).await.expect("inner recovers");
    assert_eq!(texts(&response), expected_texts(&flaky));
    assert_eq!(inner.n_requests(), 2);
    assert_eq!(model.stats(), CacheStats { hits: 0, misses: 2 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partially_failed_batch_keeps_its_successes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("requests.sqlite");
    let batch: Vec<ChatRequest> = (0..10)
        .map(|item_idx| {
            request(&if item_idx % 4 == 3 { format!("broken {item_idx}") } else { format!("ok {item_idx}") })
        })
        .collect();
    {
        let (inner, model) = cached(&path);
        inner.fail_on(Some("broken"));
        let results = model.chat_batch(&batch).await;
        let n_ok = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(n_ok, 8);
        assert!(results[3].is_err() && results[7].is_err());
        assert_eq!(model.stats(), CacheStats { hits: 0, misses: 10 });
    }
    let (inner, model) = cached(&path);
    let results = model.chat_batch(&batch).await;
    for (request, result) in batch.iter().zip(&results) {
        assert_eq!(texts(result.as_ref().expect("reply")), expected_texts(request));
    }
    // Only the two failed items are asked again, in one batch.
    assert_eq!((inner.n_requests(), inner.n_batch_calls()), (2, 1));
    assert_eq!(model.stats(), CacheStats { hits: 8, misses: 2 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_in_a_batch_are_forwarded_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inner, model) = cached(&dir.path().join("requests.sqlite"));
    let batch = vec![request("a"), request("b"), request("a"), request("a")];
    let results = model.chat_batch(&batch).await;
    for (request, result) in batch.iter().zip(&results) {
        assert_eq!(texts(result.as_ref().expect("reply")), expected_texts(request));
    }
    assert_eq!(inner.n_requests(), 2);
    assert_eq!(model.stats(), CacheStats { hits: 2, misses: 2 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_share_one_cache() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("requests.sqlite");
    let (inner, model) = cached(&path);
    let model = Arc::new(model);
    // 64 tasks of 10 requests over 100 distinct requests: tasks overlap.
    let mut tasks = Vec::new();
    for task_idx in 0..64 {
        let model = model.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..10 {
                let request = request(&format!("shared {}", (task_idx * 7 + step * 13) % 100));
                let response = model.chat(&request).await.expect("reply");
                assert_eq!(texts(&response), expected_texts(&request));
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let stats = model.stats();
    assert_eq!(stats.hits + stats.misses, 640);
    assert_eq!(stats.misses, inner.n_requests());
    assert_eq!(model.cache().n_entries().expect("count"), 100);

    let (rerun_inner, rerun) = cached(&path);
    for item_idx in 0..100 {
        rerun.chat(&request(&format!("shared {item_idx}"))).await.expect("reply");
    }
    assert_eq!(rerun_inner.n_requests(), 0);
}

#[test]
fn two_connections_to_one_file_see_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("requests.sqlite");
    let first = RequestCache::open(&path).expect("open");
    let second = RequestCache::open(&path).expect("open again");
    let key = |item_idx: usize| CacheKey::new("m", RequestKind::Chat, &item_idx).expect("key");

    first.store(&key(0), RequestKind::Chat, "from first").expect("store");
    assert_eq!(second.lookup::<String>(&key(0)).expect("lookup"), Some("from first".to_string()));
    assert_eq!(second.lookup::<String>(&key(1)).expect("lookup"), None);

    // Both write at once from several threads each, through separate connections.
    std::thread::scope(|scope| {
        for (cache_idx, cache) in [&first, &second].into_iter().enumerate() {
            for thread_idx in 0..4 {
                scope.spawn(move || {
                    for item_idx in 0..50 {
                        let item = 1 + cache_idx * 1000 + thread_idx * 100 + item_idx;
                        cache.store(&key(item), RequestKind::Chat, &format!("item {item}")).expect("store");
                    }
                });
            }
        }
    });
    assert_eq!(first.n_entries().expect("count"), 1 + 2 * 4 * 50);
    for cache_idx in 0..2 {
        let item = 1 + cache_idx * 1000 + 3 * 100 + 49;
        for reader in [&first, &second] {
            assert_eq!(reader.lookup::<String>(&key(item)).expect("lookup"), Some(format!("item {item}")));
        }
    }
    // An entry that no longer decodes as the asked type counts as absent.
    assert_eq!(first.lookup::<u32>(&key(0)).expect("lookup"), None);

    // Opening many connections at once (as many processes starting together would) works too.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| RequestCache::open(&path).expect("concurrent open").n_entries().expect("count"));
        }
    });
}

/// Writes entries one request at a time until killed; runs only as the child of the test below.
#[tokio::test(flavor = "current_thread")]
async fn child_cache_writer() {
    let Ok(path) = std::env::var(CHILD_CACHE_ENV) else {
        return;
    };
    let (_inner, model) = cached(Path::new(&path));
    for item_idx in 0..1_000_000 {
        model.chat(&request(&format!("child {item_idx}"))).await.expect("reply");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_leaves_a_consistent_cache() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("requests.sqlite");
    let exe = std::env::current_exe().expect("test binary");
    let child = std::process::Command::new(exe)
        .args(["--exact", "child_cache_writer", "--test-threads=1"])
        .env(CHILD_CACHE_ENV, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child writer");
    // Killed on drop too, so a failing assertion below leaves no writer running.
    let mut child = KillOnDrop(child);
    // Wait until the child has answered a good number of requests, then kill it mid-write.
    let started = Instant::now();
    let reader = loop {
        if let Ok(cache) = RequestCache::open(&path) {
            if cache.n_entries().unwrap_or(0) >= 200 {
                break cache;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "child wrote too slowly");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.0.kill().expect("kill child");
    child.0.wait().expect("reap child");

    let connection = rusqlite::Connection::open(&path).expect("open raw");
    let integrity: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("check");
    assert_eq!(integrity, "ok");
    drop(connection);

    // The child answers requests in order and commits each before the next, so the first n_entries are all there.
    let n_entries = reader.n_entries().expect("count");
    assert!(n_entries >= 200);
    let (inner, rerun) = cached(&path);
    let answered: Vec<ChatRequest> = (0..n_entries).map(|item_idx| request(&format!("child {item_idx}"))).collect();
    for (request, result) in answered.iter().zip(rerun.chat_batch(&answered).await) {
        assert_eq!(texts(&result.expect("reply")), expected_texts(request));
    }
    assert_eq!(inner.n_requests(), 0, "a rerun must not ask again what was answered");
    // The next request was not answered before the kill (or only just): asking for it is a normal miss.
    rerun.chat(&request(&format!("child {n_entries}"))).await.expect("reply");
}

/// Kills and reaps a child process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Killing an already reaped child fails harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
