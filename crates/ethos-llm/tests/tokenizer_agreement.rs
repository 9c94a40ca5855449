//! `GemmaTokenizer` must agree with llama.cpp token for token on the real Gemma-3 vocabulary.
//!
//! The reference, `fixtures/tokenizer_reference.jsonl`, is written by `scripts/llamacpp_tokenizer_reference.py`
//! (llama-cpp-python, vocab only): for each string, the ids of `llama_tokenize` with BOS and without / with
//! `parse_special`, and `llama_detokenize` of the former. Regenerate it after changing the string list.
//!
//! The GGUF comes from `ensure_gemma_gguf` (`ETHOS_GEMMA_GGUF`, else the model directory, fetched when missing).
//! To check a bigger reference written by the same script, point `ETHOS_TOKENIZER_REFERENCE` at it.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use ethos_llm::embedded::fetch::ensure_gemma_gguf;
use ethos_llm::embedded::GemmaTokenizer;
use serde::Deserialize;

/// One line of the fixture.
#[derive(Debug, Deserialize)]
struct Reference {
    source: String,
    text: String,
    /// `llama_tokenize(text, add_special = true, parse_special = false)`.
    ids: Vec<u32>,
    /// `llama_tokenize(text, add_special = true, parse_special = true)`.
    ids_special: Vec<u32>,
    /// `llama_detokenize(ids, remove_special = false, unparse_special = false)`.
    detok: String,
}

fn tokenizer() -> &'static GemmaTokenizer {
    static TOKENIZER: OnceLock<GemmaTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = ensure_gemma_gguf().expect("the Gemma GGUF is available");
        let file = File::open(&path).unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
        let content = gguf_file::Content::read(&mut BufReader::new(file))
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        let started = Instant::now();
        let tokenizer = GemmaTokenizer::from_gguf(&content).expect("the Gemma vocabulary is valid");
        eprintln!("built the tokenizer from the GGUF metadata in {:.3} s", started.elapsed().as_secs_f64());
        tokenizer
    })
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer_reference.jsonl");

/// The references to check: the committed fixture, or `ETHOS_TOKENIZER_REFERENCE`.
fn references() -> Vec<Reference> {
    let path =
        std::env::var_os("ETHOS_TOKENIZER_REFERENCE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(FIXTURE));
    read_references(&path)
}

fn read_references(path: &Path) -> Vec<Reference> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read the reference {}: {err}", path.display()));
    text.lines()
        .enumerate()
        .map(|(line_idx, line)| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("reference line {}: {err}", line_idx + 1))
        })
        .collect()
}

/// Runs `check` on every reference and fails listing every string it returns a complaint for.
fn check_all(check: impl Fn(&Reference) -> Option<String>) {
    let references = references();
    let failures: Vec<String> = references.iter().filter_map(&check).collect();
    assert!(
        failures.is_empty(),
        "{} of {} strings disagree:\n{}",
        failures.len(),
        references.len(),
        failures.join("\n")
    );
}

#[test]
fn fixture_covers_enough_strings() {
    let references = read_references(Path::new(FIXTURE));
    assert!(references.len() >= 300, "only {} strings", references.len());
    assert!(references.iter().any(|reference| reference.text.is_empty()));
    assert!(references.iter().any(|reference| reference.ids != reference.ids_special));
    assert!(references.iter().any(|reference| reference.source.starts_with("gsm8k")));
}

#[test]
fn encode_agrees_with_llama_cpp() {
    let tokenizer = tokenizer();
    check_all(|reference| {
        let ids = tokenizer.encode(&reference.text, true).expect("encoding succeeds");
        (ids != reference.ids).then(|| {
            format!(
                "[{}] {:?}\n  ours:      {ids:?}\n  llama.cpp: {:?}",
                reference.source, reference.text, reference.ids
            )
        })
    });
}

#[test]
fn encode_with_special_agrees_with_llama_cpp() {
    let tokenizer = tokenizer();
    check_all(|reference| {
        let ids = tokenizer.encode_with_special(&reference.text, true).expect("encoding succeeds");
        (ids != reference.ids_special).then(|| {
            format!(
                "[{}] {:?}\n  ours:      {ids:?}\n  llama.cpp: {:?}",
                reference.source, reference.text, reference.ids_special
            )
        })
    });
}

#[test]
fn decode_agrees_with_llama_cpp() {
    let tokenizer = tokenizer();
    check_all(|reference| {
        let text = tokenizer.decode(&reference.ids).expect("decoding succeeds");
        (text != reference.detok).then(|| {
            format!(
                "[{}] {:?}\n  ours:      {text:?}\n  llama.cpp: {:?}",
                reference.source, reference.ids, reference.detok
            )
        })
    });
}

#[test]
fn decode_inverts_encode() {
    let tokenizer = tokenizer();
    check_all(|reference| {
        let ids = tokenizer.encode(&reference.text, true).expect("encoding succeeds");
        let text = tokenizer.decode(&ids).expect("decoding succeeds");
        // A literal `▁` is SentencePiece's space marker, so it comes back as a space (llama.cpp does the same).
        let expect = reference.text.replace('\u{2581}', " ");
        (text != expect).then(|| format!("[{}] {:?}\n  decoded: {text:?}", reference.source, reference.text))
    });
}

#[test]
fn decode_skips_control_and_unknown_tokens_like_llama_cpp() {
    // <pad> <eos> <bos> <mask> [multimodal] <start_of_turn> <end_of_turn> </s> <unused0> <s> "  " "\n" <table> <unk>
    let ids = [0, 1, 2, 4, 5, 105, 106, 212, 6, 203, 138, 107, 168, 3];
    // What llama_detokenize(ids, remove_special = false, unparse_special = false) returns.
    assert_eq!(tokenizer().decode(&ids).expect("decoding succeeds"), "[multimodal]<s>  \n<table>");
}

#[test]
fn special_ids_are_gemma_3s() {
    let tokenizer = tokenizer();
    assert_eq!(tokenizer.vocab_size(), 262_144);
    assert_eq!(tokenizer.bos_id(), 2);
    assert_eq!(tokenizer.eos_id(), 1);
    assert_eq!(tokenizer.end_of_turn_id(), Some(106));
    assert_eq!(tokenizer.token_text(105).as_deref(), Some("<start_of_turn>"));
    assert_eq!(tokenizer.token_text(107).as_deref(), Some("\n"));
    assert_eq!(tokenizer.token_text(262_144), None);
}
