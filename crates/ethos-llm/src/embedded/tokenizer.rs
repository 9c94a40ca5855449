//! The Gemma-3 tokenizer, rebuilt from GGUF metadata so that it agrees token for token with llama.cpp.
//!
//! Gemma's GGUF stores a SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`): pieces, scores and token
//! types, but no merges. llama.cpp tokenizes such a vocabulary in two steps, and so do we:
//!
//! 1. **Split out whole tokens.** User-defined tokens (type 4: `"\n\n"`, runs of spaces and tabs, `<table>`, ...)
//!    are cut out of the raw text before anything else. With [`GemmaTokenizer::encode_with_special`], control and
//!    unknown tokens (`<start_of_turn>`, `<bos>`, `<unused0>`, ...) are cut out too. Like llama.cpp
//!    (`tokenizer_st_partition`), the tokens are tried longest first, each against every remaining piece of text.
//! 2. **SentencePiece BPE on the rest.** Spaces become `▁` and the text is merged pairwise, always merging the pair
//!    whose result has the highest score. We run this with the `tokenizers` crate's [`BPE`] model: its merge list
//!    holds, for every piece, each split into two pieces that are both in the vocabulary, ranked by the merged
//!    piece's score (what HF's `SentencePieceExtractor` does). Characters outside the vocabulary fall back to
//!    byte tokens (`<0xE2>`).
//!
//! [`GemmaTokenizer::encode`] never produces a control token other than the BOS it is asked for, so text from
//! users or datasets cannot forge a turn boundary; chat templates use [`GemmaTokenizer::encode_with_special`].
//! [`GemmaTokenizer::decode`] drops control tokens, so `decode(encode(text, _)) == text` for any text without a
//! literal `▁` (which the tokenizer cannot tell apart from a space).

use std::fmt;
use std::ops::Range;

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::Model;

use crate::LlmError;

/// Gemma-3 tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata. Immutable and cheap to share (`Sync`).
pub struct GemmaTokenizer {
    /// SentencePiece BPE over the whole vocabulary, with byte fallback.
    bpe: BPE,
    /// Piece text by token id, as stored in the GGUF (`"▁hello"`, `"<0x0A>"`, `"<start_of_turn>"`).
    pieces: Vec<String>,
    /// Kind by token id, after llama.cpp's adjustments (see [`TokenKind`]).
    kinds: Vec<TokenKind>,
    /// Ids of user-defined tokens, longest piece first: split out of all text.
    user_defined_longest_first: Vec<u32>,
    /// Ids of user-defined, control and unknown tokens, longest piece first: split out by `encode_with_special`.
    special_longest_first: Vec<u32>,
    bos_id: u32,
    eos_id: u32,
    end_of_turn_id: Option<u32>,
    /// Whether a `▁` is prepended to text at the start and after every split-out token (false for Gemma).
    add_space_prefix: bool,
}

impl GemmaTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata. For Gemma 3's 262,144 pieces this takes about
    /// 1.2 s in release builds and 1.6-2 s in the dev profile, nearly all of it spent deriving and indexing
    /// the 514,847 merges: build it once and share it.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self, LlmError> {
        Self::from_metadata(VocabMetadata::from_gguf(content)?)
    }

    /// Tokenizes `text` as ordinary text: user-defined tokens are matched, but control tokens written in the
    /// text (`"<start_of_turn>"`) are tokenized as the characters they consist of. This is llama.cpp's
    /// `llama_tokenize(.., add_special = add_bos, parse_special = false)`.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, LlmError> {
        self.encode_matching(text, add_bos, &self.user_defined_longest_first)
    }

    /// Tokenizes `text` with control tokens written in it turned into those tokens, for chat templates:
    /// `"<start_of_turn>user\n"` starts with token 105. This is llama.cpp's
    /// `llama_tokenize(.., add_special = add_bos, parse_special = true)`. Never use it on untrusted text.
    pub fn encode_with_special(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, LlmError> {
        self.encode_matching(text, add_bos, &self.special_longest_first)
    }

    /// Turns token ids back into text. Control tokens (BOS, EOS, `<start_of_turn>`, `<end_of_turn>`,
    /// unused tokens) and `<unk>` are skipped; byte tokens are joined before UTF-8 decoding, and invalid
    /// UTF-8 (for example a character cut in half) becomes U+FFFD. This is llama.cpp's
    /// `llama_detokenize(.., unparse_special = false)`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        let bytes = self.decode_bytes(ids)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Like [`GemmaTokenizer::decode`], but returns the raw bytes, which may end inside a UTF-8 character. Useful
    /// when text is produced one token at a time.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, LlmError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let (Some(kind), Some(piece)) = (self.kinds.get(id as usize), self.pieces.get(id as usize)) else {
                return Err(LlmError::Tokenizer(format!(
                    "token id {id} is out of range for a vocabulary of {} tokens",
                    self.pieces.len()
                )));
            };
            match kind {
                TokenKind::Control | TokenKind::Unknown | TokenKind::Unused => {}
                TokenKind::Byte(byte) => bytes.push(*byte),
                // llama.cpp copies user-defined pieces verbatim, without turning `▁` into a space.
                TokenKind::UserDefined => bytes.extend_from_slice(piece.as_bytes()),
                TokenKind::Normal => {
                    let mut utf8 = [0; 4];
                    for c in piece.chars() {
                        let c = if c == SPACE_MARKER { ' ' } else { c };
                        bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    }
                }
            }
        }
        Ok(bytes)
    }

    /// The raw piece of a token as stored in the GGUF, e.g. `"▁hello"`, `"<0x0A>"` or `"<end_of_turn>"`.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.pieces.get(id as usize).cloned()
    }

    /// Number of tokens in the vocabulary (262,144 for Gemma 3).
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Id of the beginning-of-sequence token (`<bos>`).
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// Id of the end-of-sequence token (`<eos>`).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Id of `<end_of_turn>`, which ends a chat turn, if the vocabulary has it.
    pub fn end_of_turn_id(&self) -> Option<u32> {
        self.end_of_turn_id
    }
}

impl fmt::Debug for GemmaTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GemmaTokenizer")
            .field("vocab_size", &self.pieces.len())
            .field("n_user_defined", &self.user_defined_longest_first.len())
            .field("n_special", &self.special_longest_first.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("end_of_turn_id", &self.end_of_turn_id)
            .field("add_space_prefix", &self.add_space_prefix)
            .field("bpe", &self.bpe)
            .finish()
    }
}

/// SentencePiece's stand-in for a space.
const SPACE_MARKER: char = '\u{2581}';

/// GGUF token types (`tokenizer.ggml.token_type`), as in llama.cpp's `llama_token_type`. Type 5 (unused) and
/// anything else map to [`TokenKind::Unused`].
const TOKEN_TYPE_NORMAL: i32 = 1;
const TOKEN_TYPE_UNKNOWN: i32 = 2;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;
const TOKEN_TYPE_BYTE: i32 = 6;

/// Pieces that llama.cpp always treats as control tokens, whatever their GGUF type, because they end generation
/// (`llama-vocab.cpp`, "control-looking token ... its type will be overridden"). Gemma 3 stores `</s>` as
/// user-defined, so llama.cpp only matches it with `parse_special` and never renders it.
const CONTROL_LOOKING_PIECES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<|eom_id|>",
    "</s>",
    "<eos>",
    "<end_of_utterance>",
];

/// How a token takes part in tokenization, following llama.cpp's token attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    /// An ordinary piece (GGUF type 1).
    Normal,
    /// `<unk>` (type 2). Matched only by `encode_with_special`; never rendered.
    Unknown,
    /// BOS, EOS, turn markers, unused slots (type 3, or a control-looking piece). Matched only by
    /// `encode_with_special`; never rendered.
    Control,
    /// Whitespace runs, HTML tags and the like (type 4). Always matched whole; rendered verbatim.
    UserDefined,
    /// Type 5 and unknown types: never matched, never rendered.
    Unused,
    /// `<0xNN>` (type 6): the byte NN.
    Byte(u8),
}

/// The `tokenizer.ggml.*` metadata the tokenizer is built from, checked for consistency.
#[derive(Debug, Clone, PartialEq)]
struct VocabMetadata {
    pieces: Vec<String>,
    scores: Vec<f32>,
    token_types: Vec<i32>,
    bos_id: u32,
    eos_id: u32,
    unknown_id: Option<u32>,
    add_space_prefix: bool,
}

/// A piece of the input during the split-out step: text still to be tokenized (a byte range of the input), or a
/// token matched whole.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

impl VocabMetadata {
    fn from_gguf(content: &gguf_file::Content) -> Result<Self, LlmError> {
        let model = metadata_string(content, "tokenizer.ggml.model")?;
        if model != "llama" {
            return Err(LlmError::Tokenizer(format!(
                "tokenizer.ggml.model is {model:?}; only SentencePiece vocabularies (\"llama\") are supported"
            )));
        }
        let pieces = metadata_array(content, "tokenizer.ggml.tokens")?
            .iter()
            .enumerate()
            .map(|(id, value)| {
                value
                    .to_string()
                    .cloned()
                    .map_err(|err| LlmError::Tokenizer(format!("tokenizer.ggml.tokens[{id}] is not a string: {err}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n_tokens = pieces.len();
        // Like llama.cpp, a vocabulary without scores scores every piece 0, and one without types makes every
        // piece normal.
        let scores = match content.metadata.get("tokenizer.ggml.scores") {
            None => vec![0.0; n_tokens],
            Some(_) => metadata_array(content, "tokenizer.ggml.scores")?
                .iter()
                .enumerate()
                .map(|(id, value)| match value {
                    gguf_file::Value::F32(score) => Ok(*score),
                    gguf_file::Value::I32(score) => Ok(*score as f32),
                    other => {
                        Err(LlmError::Tokenizer(format!("tokenizer.ggml.scores[{id}] is not an f32 or i32: {other:?}")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let token_types = match content.metadata.get("tokenizer.ggml.token_type") {
            None => vec![TOKEN_TYPE_NORMAL; n_tokens],
            Some(_) => metadata_array(content, "tokenizer.ggml.token_type")?
                .iter()
                .enumerate()
                .map(|(id, value)| {
                    value.to_i32().map_err(|err| {
                        LlmError::Tokenizer(format!("tokenizer.ggml.token_type[{id}] is not an i32: {err}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let bos_id = metadata_token_id(content, "tokenizer.ggml.bos_token_id")?
            .ok_or_else(|| LlmError::Tokenizer("the GGUF has no tokenizer.ggml.bos_token_id".to_owned()))?;
        let eos_id = metadata_token_id(content, "tokenizer.ggml.eos_token_id")?
            .ok_or_else(|| LlmError::Tokenizer("the GGUF has no tokenizer.ggml.eos_token_id".to_owned()))?;
        let unknown_id = metadata_token_id(content, "tokenizer.ggml.unknown_token_id")?;
        // llama.cpp's default for SentencePiece vocabularies is to add the prefix; Gemma's GGUF turns it off.
        let add_space_prefix = match content.metadata.get("tokenizer.ggml.add_space_prefix") {
            None => true,
            Some(value) => value
                .to_bool()
                .map_err(|err| LlmError::Tokenizer(format!("tokenizer.ggml.add_space_prefix is not a bool: {err}")))?,
        };
        Ok(VocabMetadata { pieces, scores, token_types, bos_id, eos_id, unknown_id, add_space_prefix })
    }
}

impl GemmaTokenizer {
    fn from_metadata(metadata: VocabMetadata) -> Result<Self, LlmError> {
        let VocabMetadata { mut pieces, scores, token_types, bos_id, eos_id, unknown_id, add_space_prefix } = metadata;
        let n_tokens = pieces.len();
        if n_tokens == 0 || n_tokens > u32::MAX as usize {
            return Err(LlmError::Tokenizer(format!("the vocabulary has {n_tokens} tokens")));
        }
        if scores.len() < n_tokens || token_types.len() < n_tokens {
            return Err(LlmError::Tokenizer(format!(
                "{n_tokens} tokens but {} scores and {} token types",
                scores.len(),
                token_types.len()
            )));
        }
        for (name, id) in [("bos", Some(bos_id)), ("eos", Some(eos_id)), ("unknown", unknown_id)] {
            if let Some(id) = id.filter(|&id| id as usize >= n_tokens) {
                return Err(LlmError::Tokenizer(format!(
                    "the {name} token id {id} is out of range for a vocabulary of {n_tokens} tokens"
                )));
            }
        }
        // An empty piece would match everywhere; llama.cpp renames it the same way.
        for (id, piece) in pieces.iter_mut().enumerate() {
            if piece.is_empty() {
                *piece = format!("[EMPTY_{id}]");
            }
        }

        let kinds = pieces
            .iter()
            .zip(&token_types)
            .enumerate()
            .map(|(id, (piece, &token_type))| token_kind(id, piece, token_type))
            .collect::<Result<Vec<_>, _>>()?;
        let user_defined_longest_first = longest_first(&pieces, &kinds, |kind| kind == TokenKind::UserDefined);
        let special_longest_first = longest_first(&pieces, &kinds, |kind| {
            matches!(kind, TokenKind::UserDefined | TokenKind::Control | TokenKind::Unknown)
        });

        let mut vocab = Vocab::with_capacity(n_tokens);
        for (id, piece) in pieces.iter().enumerate() {
            if let Some(previous_id) = vocab.insert(piece.clone(), id as u32) {
                return Err(LlmError::Tokenizer(format!(
                    "the piece {piece:?} appears twice in the vocabulary (ids {previous_id} and {id})"
                )));
            }
        }
        // Byte fallback must cover every byte, or text could silently turn into `<unk>`.
        if let Some(byte) = (0..=u8::MAX).find(|byte| !vocab.contains_key(&byte_piece(*byte))) {
            return Err(LlmError::Tokenizer(format!("the vocabulary has no byte token {}", byte_piece(byte))));
        }
        let end_of_turn_id = vocab.get("<end_of_turn>").copied();
        let merges = derive_merges(&pieces, &scores, &vocab);
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
        if let Some(unknown_id) = unknown_id {
            builder = builder.unk_token(pieces[unknown_id as usize].clone());
        }
        let bpe = builder.build().map_err(|err| LlmError::Tokenizer(format!("cannot build the BPE model: {err}")))?;

        Ok(GemmaTokenizer {
            bpe,
            pieces,
            kinds,
            user_defined_longest_first,
            special_longest_first,
            bos_id,
            eos_id,
            end_of_turn_id,
            add_space_prefix,
        })
    }

    fn encode_matching(&self, text: &str, add_bos: bool, matchable_ids: &[u32]) -> Result<Vec<u32>, LlmError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos {
            ids.push(self.bos_id);
        }
        let mut previous_was_token = true;
        let mut escaped = String::new();
        for fragment in self.split_out_tokens(text, matchable_ids) {
            match fragment {
                Fragment::Token(id) => {
                    ids.push(id);
                    previous_was_token = true;
                }
                Fragment::Text(range) => {
                    escaped.clear();
                    if self.add_space_prefix && previous_was_token {
                        escaped.push(SPACE_MARKER);
                    }
                    escaped.extend(text[range].chars().map(|c| if c == ' ' { SPACE_MARKER } else { c }));
                    let tokens = self
                        .bpe
                        .tokenize(&escaped)
                        .map_err(|err| LlmError::Tokenizer(format!("cannot tokenize {escaped:?}: {err}")))?;
                    ids.extend(tokens.iter().map(|token| token.id));
                    previous_was_token = false;
                }
            }
        }
        Ok(ids)
    }

    /// Cuts the pieces of `matchable_ids` (longest first) out of `text`, like llama.cpp's `tokenizer_st_partition`:
    /// each piece is searched for, left to right, in every text fragment left by the longer pieces.
    fn split_out_tokens(&self, text: &str, matchable_ids: &[u32]) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut fragments = vec![Fragment::Text(0..text.len())];
        let byte_pairs = BytePairSet::of(text.as_bytes());
        for &id in matchable_ids {
            let piece = self.pieces[id as usize].as_str();
            if !byte_pairs.may_contain(piece.as_bytes()) {
                continue;
            }
            let mut split_fragments = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(range) = fragment else {
                    split_fragments.push(fragment);
                    continue;
                };
                let mut start = range.start;
                while let Some(offset) = text[start..range.end].find(piece) {
                    let match_start = start + offset;
                    if match_start > start {
                        split_fragments.push(Fragment::Text(start..match_start));
                    }
                    split_fragments.push(Fragment::Token(id));
                    start = match_start + piece.len();
                }
                if start < range.end {
                    split_fragments.push(Fragment::Text(start..range.end));
                }
            }
            fragments = split_fragments;
        }
        fragments
    }
}

/// Maps a GGUF token type to its kind, with llama.cpp's overrides.
fn token_kind(id: usize, piece: &str, token_type: i32) -> Result<TokenKind, LlmError> {
    let kind = match token_type {
        TOKEN_TYPE_NORMAL => TokenKind::Normal,
        TOKEN_TYPE_UNKNOWN => TokenKind::Unknown,
        TOKEN_TYPE_CONTROL => TokenKind::Control,
        TOKEN_TYPE_USER_DEFINED => TokenKind::UserDefined,
        TOKEN_TYPE_BYTE => {
            let byte = parse_byte_piece(piece)
                .ok_or_else(|| LlmError::Tokenizer(format!("byte token {id} has the piece {piece:?}, not <0xNN>")))?;
            TokenKind::Byte(byte)
        }
        _ => TokenKind::Unused,
    };
    if matches!(kind, TokenKind::Normal | TokenKind::UserDefined) && CONTROL_LOOKING_PIECES.contains(&piece) {
        return Ok(TokenKind::Control);
    }
    Ok(kind)
}

/// The ids whose kind passes `keep`, longest piece first; ties keep id order.
fn longest_first(pieces: &[String], kinds: &[TokenKind], keep: impl Fn(TokenKind) -> bool) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..pieces.len() as u32).filter(|&id| keep(kinds[id as usize])).collect();
    ids.sort_by_key(|&id| std::cmp::Reverse(pieces[id as usize].len()));
    ids
}

/// Derives BPE merges from a SentencePiece vocabulary: every split of a piece into two pieces that are both in the
/// vocabulary becomes a merge, ranked by the merged piece's score (highest first), then by its id, then by where it
/// splits. SentencePiece (and llama.cpp) merge the adjacent pair whose concatenation scores highest, breaking ties
/// by position; with distinct ranks, BPE breaks ties between different pieces of equal score by id instead, which
/// only matters if a piece can be completed by a merge that scores higher than the piece itself.
fn derive_merges(pieces: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    // (merged id, byte offset of the split)
    let mut splits: Vec<(u32, u32)> = Vec::new();
    for (id, piece) in pieces.iter().enumerate() {
        for (offset, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(offset);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                splits.push((id as u32, offset as u32));
            }
        }
    }
    splits.sort_unstable_by(|a, b| {
        scores[b.0 as usize].total_cmp(&scores[a.0 as usize]).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1))
    });
    splits
        .into_iter()
        .map(|(id, offset)| {
            let (left, right) = pieces[id as usize].split_at(offset as usize);
            (left.to_owned(), right.to_owned())
        })
        .collect()
}

fn byte_piece(byte: u8) -> String {
    format!("<0x{byte:02X}>")
}

fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Which two-byte sequences (and single bytes) occur in a text: a cheap test that rules out most of the thousands
/// of special pieces before searching for them.
struct BytePairSet {
    /// Bit `(a << 8) | b` is set when bytes `a, b` occur next to each other.
    pairs: Vec<u64>,
    /// Bit `a` is set when byte `a` occurs.
    singles: [u64; 4],
}

impl BytePairSet {
    fn of(bytes: &[u8]) -> Self {
        let mut set = BytePairSet { pairs: vec![0; (1 << 16) / 64], singles: [0; 4] };
        for &byte in bytes {
            set.singles[usize::from(byte) / 64] |= 1 << (byte % 64);
        }
        for window in bytes.windows(2) {
            let index = (usize::from(window[0]) << 8) | usize::from(window[1]);
            set.pairs[index / 64] |= 1 << (index % 64);
        }
        set
    }

    fn may_contain(&self, needle: &[u8]) -> bool {
        match needle {
            [] => false,
            [byte] => self.singles[usize::from(*byte) / 64] & (1 << (byte % 64)) != 0,
            [first, second, ..] => {
                let index = (usize::from(*first) << 8) | usize::from(*second);
                self.pairs[index / 64] & (1 << (index % 64)) != 0
            }
        }
    }
}

fn metadata_value<'a>(content: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, LlmError> {
    content.metadata.get(key).ok_or_else(|| LlmError::Tokenizer(format!("the GGUF has no {key}")))
}

fn metadata_string<'a>(content: &'a gguf_file::Content, key: &str) -> Result<&'a str, LlmError> {
    metadata_value(content, key)?
        .to_string()
        .map(String::as_str)
        .map_err(|err| LlmError::Tokenizer(format!("{key} is not a string: {err}")))
}

fn metadata_array<'a>(content: &'a gguf_file::Content, key: &str) -> Result<&'a [gguf_file::Value], LlmError> {
    metadata_value(content, key)?
        .to_vec()
        .map(Vec::as_slice)
        .map_err(|err| LlmError::Tokenizer(format!("{key} is not an array: {err}")))
}

/// Reads an optional token id stored as any integer type.
fn metadata_token_id(content: &gguf_file::Content, key: &str) -> Result<Option<u32>, LlmError> {
    let Some(value) = content.metadata.get(key) else {
        return Ok(None);
    };
    let id = match value {
        gguf_file::Value::U8(id) => i64::from(*id),
        gguf_file::Value::U16(id) => i64::from(*id),
        gguf_file::Value::U32(id) => i64::from(*id),
        gguf_file::Value::I8(id) => i64::from(*id),
        gguf_file::Value::I16(id) => i64::from(*id),
        gguf_file::Value::I32(id) => i64::from(*id),
        gguf_file::Value::I64(id) => *id,
        gguf_file::Value::U64(id) => i64::try_from(*id).unwrap_or(i64::MAX),
        other => return Err(LlmError::Tokenizer(format!("{key} is not an integer: {other:?}"))),
    };
    u32::try_from(id).map(Some).map_err(|_| LlmError::Tokenizer(format!("{key} is {id}, not a token id")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A tiny Gemma-like vocabulary: control tokens, user-defined whitespace and tags, all 256 bytes, and a few
    /// scored pieces. `extra` adds (piece, score) normal pieces.
    fn tiny_gguf(extra: &[(&str, f32)], add_space_prefix: bool) -> gguf_file::Content {
        use gguf_file::Value;
        let mut entries: Vec<(String, f32, i32)> = vec![
            ("<pad>".into(), -1000.0, TOKEN_TYPE_CONTROL),
            ("<eos>".into(), -1000.0, TOKEN_TYPE_CONTROL),
            ("<bos>".into(), -1000.0, TOKEN_TYPE_CONTROL),
            ("<unk>".into(), -1000.0, TOKEN_TYPE_UNKNOWN),
            ("<start_of_turn>".into(), -1000.0, TOKEN_TYPE_CONTROL),
            ("<end_of_turn>".into(), -1000.0, TOKEN_TYPE_CONTROL),
            ("\n".into(), -1000.0, TOKEN_TYPE_USER_DEFINED),
            ("\n\n".into(), -1000.0, TOKEN_TYPE_USER_DEFINED),
            ("  ".into(), -1000.0, TOKEN_TYPE_USER_DEFINED),
            ("<b>".into(), -1000.0, TOKEN_TYPE_USER_DEFINED),
            ("</s>".into(), -1000.0, TOKEN_TYPE_USER_DEFINED),
        ];
        entries.extend((0..=u8::MAX).map(|byte| (byte_piece(byte), 0.0, TOKEN_TYPE_BYTE)));
        let base = [
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -3.0),
            ("c", -4.0),
            ("<", -5.0),
            (">", -6.0),
            ("s", -7.0),
            ("/", -8.0),
            ("e", -9.0),
            ("t", -10.0),
        ];
        entries.extend(base.iter().chain(extra).map(|(piece, score)| (piece.to_string(), *score, TOKEN_TYPE_NORMAL)));
        let metadata = HashMap::from([
            ("tokenizer.ggml.model".to_owned(), Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens".to_owned(),
                Value::Array(entries.iter().map(|entry| Value::String(entry.0.clone())).collect()),
            ),
            (
                "tokenizer.ggml.scores".to_owned(),
                Value::Array(entries.iter().map(|entry| Value::F32(entry.1)).collect()),
            ),
            (
                "tokenizer.ggml.token_type".to_owned(),
                Value::Array(entries.iter().map(|entry| Value::I32(entry.2)).collect()),
            ),
            ("tokenizer.ggml.bos_token_id".to_owned(), Value::U32(2)),
            ("tokenizer.ggml.eos_token_id".to_owned(), Value::U32(1)),
            ("tokenizer.ggml.unknown_token_id".to_owned(), Value::U32(3)),
            ("tokenizer.ggml.add_space_prefix".to_owned(), Value::Bool(add_space_prefix)),
        ]);
        gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    fn tiny(extra: &[(&str, f32)]) -> GemmaTokenizer {
        GemmaTokenizer::from_gguf(&tiny_gguf(extra, false)).expect("the tiny vocabulary is valid")
    }

    fn pieces_of(tokenizer: &GemmaTokenizer, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&id| tokenizer.token_text(id).expect("ids come from the vocabulary")).collect()
    }

    /// Encodes `text` without BOS, checks the pieces, and checks that decoding gives the text back.
    fn check(tokenizer: &GemmaTokenizer, text: &str, expect: &[&str]) {
        let ids = tokenizer.encode(text, false).expect("encoding succeeds");
        assert_eq!(pieces_of(tokenizer, &ids), expect, "pieces of {text:?}");
        assert_eq!(tokenizer.decode(&ids).expect("decoding succeeds"), text, "round trip of {text:?}");
    }

    fn check_special(tokenizer: &GemmaTokenizer, text: &str, expect: &[&str]) {
        let ids = tokenizer.encode_with_special(text, false).expect("encoding succeeds");
        assert_eq!(pieces_of(tokenizer, &ids), expect, "pieces of {text:?} with special tokens");
    }

    #[test]
    fn merges_follow_the_merged_piece_score() {
        // "bc" outscores "ab", so "abc" is reached through [a][bc].
        let tokenizer = tiny(&[("ab", -20.0), ("bc", -11.0), ("abc", -30.0)]);
        check(&tokenizer, "abc", &["abc"]);
        check(&tokenizer, "abcbc", &["abc", "bc"]);
        check(&tokenizer, "aabc", &["a", "abc"]);
        // Without "abc", the higher-scoring "bc" wins the middle "b".
        let tokenizer = tiny(&[("ab", -20.0), ("bc", -11.0)]);
        check(&tokenizer, "abc", &["a", "bc"]);
        // Flip the scores and "ab" wins.
        let tokenizer = tiny(&[("ab", -11.0), ("bc", -20.0)]);
        check(&tokenizer, "abc", &["ab", "c"]);
    }

    #[test]
    fn derived_merges_are_ranked_by_score_then_id() {
        let pieces: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"].iter().map(|p| p.to_string()).collect();
        let scores = [-1.0, -2.0, -3.0, -5.0, -4.0, -6.0];
        let vocab: Vocab = (0..).zip(&pieces).map(|(id, piece)| (piece.clone(), id)).collect();
        let merges = derive_merges(&pieces, &scores, &vocab);
        let expect = [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")];
        let expect: Vec<(String, String)> = expect.iter().map(|(l, r)| (l.to_string(), r.to_string())).collect();
        assert_eq!(merges, expect);
    }

    #[test]
    fn spaces_become_the_marker_without_a_prefix() {
        let tokenizer = tiny(&[("▁a", -11.0), ("▁b", -12.0)]);
        check(&tokenizer, "a b", &["a", "▁b"]);
        check(&tokenizer, " a", &["▁a"]);
        check(&tokenizer, "a ", &["a", "▁"]);
        check(&tokenizer, "", &[]);
    }

    #[test]
    fn add_space_prefix_marks_the_start_and_text_after_tokens() {
        let tokenizer = GemmaTokenizer::from_gguf(&tiny_gguf(&[("▁a", -11.0)], true)).expect("valid");
        let ids = tokenizer.encode("a\na", false).expect("encodes");
        assert_eq!(pieces_of(&tokenizer, &ids), ["▁a", "\n", "▁a"]);
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes() {
        let tokenizer = tiny(&[]);
        check(&tokenizer, "é", &["<0xC3>", "<0xA9>"]);
        check(&tokenizer, "a😀b", &["a", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>", "b"]);
        // A lone byte token decodes to U+FFFD instead of failing.
        let lone = tokenizer.encode("é", false).expect("encodes");
        assert_eq!(tokenizer.decode(&lone[..1]).expect("decodes"), "\u{FFFD}");
        assert_eq!(tokenizer.decode_bytes(&lone[..1]).expect("decodes"), [0xC3]);
    }

    #[test]
    fn user_defined_tokens_match_whole_and_longest_first() {
        let tokenizer = tiny(&[("▁a", -11.0)]);
        check(&tokenizer, "a\nb", &["a", "\n", "b"]);
        check(&tokenizer, "a\n\n\nb", &["a", "\n\n", "\n", "b"]);
        check(&tokenizer, "a  b", &["a", "  ", "b"]);
        check(&tokenizer, "a   a", &["a", "  ", "▁a"]);
        check(&tokenizer, "<b>a</b>", &["<b>", "a", "<", "/", "b", ">"]);
        check(&tokenizer, "<s>", &["<", "s", ">"]);
    }

    #[test]
    fn control_tokens_are_matched_only_on_request() {
        let tokenizer = tiny(&[]);
        let plain = tokenizer.encode("<bos>", false).expect("encodes");
        assert_eq!(pieces_of(&tokenizer, &plain), ["<", "b", "<0x6F>", "s", ">"]);
        check_special(&tokenizer, "<start_of_turn>a<end_of_turn>\n", &["<start_of_turn>", "a", "<end_of_turn>", "\n"]);
        check_special(&tokenizer, "<unk><bos>", &["<unk>", "<bos>"]);
        // `</s>` is user-defined in the GGUF but control-looking, so llama.cpp treats it as control.
        assert_eq!(pieces_of(&tokenizer, &tokenizer.encode("</s>", false).expect("encodes")), ["<", "/", "s", ">"]);
        check_special(&tokenizer, "</s>", &["</s>"]);
    }

    #[test]
    fn decode_skips_control_tokens_and_keeps_user_defined_ones() {
        let tokenizer = tiny(&[]);
        let ids = tokenizer.encode_with_special("<start_of_turn>a  b<end_of_turn>", true).expect("encodes");
        assert_eq!(ids[0], tokenizer.bos_id());
        assert_eq!(tokenizer.decode(&ids).expect("decodes"), "a  b");
        // `<unk>` is not rendered either, as in llama.cpp.
        assert_eq!(tokenizer.decode(&[3, 1]).expect("decodes"), "");
        let out_of_range = u32::try_from(tokenizer.vocab_size()).expect("small vocabulary");
        assert!(matches!(tokenizer.decode(&[out_of_range]), Err(LlmError::Tokenizer(_))));
    }

    #[test]
    fn tokenizer_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<GemmaTokenizer>();
    }

    #[test]
    fn ids_and_sizes_come_from_the_metadata() {
        let tokenizer = tiny(&[]);
        assert_eq!(tokenizer.bos_id(), 2);
        assert_eq!(tokenizer.eos_id(), 1);
        assert_eq!(tokenizer.end_of_turn_id(), Some(5));
        assert_eq!(tokenizer.vocab_size(), 11 + 256 + 10);
        assert_eq!(tokenizer.token_text(11 + 0x41).as_deref(), Some("<0x41>"));
        assert_eq!(tokenizer.token_text(10_000), None);
        let with_bos = tokenizer.encode("a", true).expect("encodes");
        assert_eq!(pieces_of(&tokenizer, &with_bos), ["<bos>", "a"]);
    }

    #[test]
    fn invalid_metadata_is_an_error() {
        let mut content = tiny_gguf(&[], false);
        content.metadata.insert("tokenizer.ggml.model".into(), gguf_file::Value::String("gpt2".into()));
        assert!(matches!(GemmaTokenizer::from_gguf(&content), Err(LlmError::Tokenizer(_))));

        let mut content = tiny_gguf(&[("a", -50.0)], false);
        let err = GemmaTokenizer::from_gguf(&content).expect_err("duplicate piece");
        assert!(err.to_string().contains("appears twice"), "{err}");

        content = tiny_gguf(&[], false);
        content.metadata.insert("tokenizer.ggml.bos_token_id".into(), gguf_file::Value::U32(1_000_000));
        assert!(matches!(GemmaTokenizer::from_gguf(&content), Err(LlmError::Tokenizer(_))));

        content = tiny_gguf(&[], false);
        content.metadata.remove("tokenizer.ggml.tokens");
        assert!(matches!(GemmaTokenizer::from_gguf(&content), Err(LlmError::Tokenizer(_))));
    }
}
