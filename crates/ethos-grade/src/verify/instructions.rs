//! The 25 verifiable instructions of IFEval (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language
//! Models"), written for ethos from the instruction ids, their kwargs and the paper's descriptions.
//!
//! Each check follows the published IFEval semantics, quirks included, so that scores stay comparable with published
//! IFEval numbers: keywords match case-insensitively *inside* longer words (`cat` counts in `category`) while forbidden
//! words only match as whole words; the postscript marker may appear anywhere (IFEval does not check that it comes
//! last); "multiple sections" and "highlighted sections" are lower bounds; an empty (whitespace-only) reply fails
//! every instruction. Three places in the reference implementation depend on third-party tools, which are
//! approximated here, with the differences documented at each: sentence counting (NLTK's punkt model, see
//! [`split_sentences`]), capitalised-word tokens (NLTK's `word_tokenize`, see `capital_words`) and language
//! identification (`langdetect`, see [`detect_language`]).
//!
//! Everything is linear in the length of the reply: replies are arbitrary model output, possibly huge or adversarial,
//! so the checks use the `regex` crate (finite automata, no backtracking) and single passes, and never panic.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::VerifyError;

/// The 25 IFEval instruction ids, in the order of the paper's table.
pub const INSTRUCTION_IDS: [&str; 25] = [
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
    "startend:quotation",
];

/// One verifiable instruction: an IFEval id and its kwargs, exactly as in IFEval's `input_data.jsonl`.
///
/// Kwargs that an id does not use are ignored, and `null` counts as absent (the HuggingFace copy of IFEval fills every
/// kwarg slot with `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instruction {
    /// One of [`INSTRUCTION_IDS`].
    pub id: String,
    /// The instruction's parameters (`{"num_words": 300, "relation": "at least"}`).
    #[serde(default)]
    pub kwargs: Map<String, Value>,
}

impl Instruction {
    /// An instruction from an id and a JSON object of kwargs (anything other than an object means no kwargs).
    pub fn new(id: impl Into<String>, kwargs: Value) -> Self {
        let kwargs = match kwargs {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Instruction { id: id.into(), kwargs }
    }

    /// Checks that the id is known and the kwargs it needs are present and well typed.
    pub fn validate(&self) -> Result<(), VerifyError> {
        Check::parse(self).map(|_| ())
    }
}

/// Whether `reply` follows `instruction`, scored strictly (IFEval's "strict" accuracy).
///
/// `prompt` is the prompt the reply answers. None of the 25 checks reads it (the text `combination:repeat_prompt` wants
/// repeated arrives as its kwarg `prompt_to_repeat`, as in IFEval's data), but it is part of the signature so that
/// checks needing the prompt can be added without changing callers.
///
/// Errors only for an unknown id or a missing or ill-typed kwarg; any reply text gets a verdict.
pub fn check_strict(instruction: &Instruction, prompt: &str, reply: &str) -> Result<bool, VerifyError> {
    let _ = prompt;
    let check = Check::parse(instruction)?;
    Ok(check.passes(reply))
}

/// Whether `reply` follows `instruction` under IFEval's "loose" scoring: it passes if any of eight variants of the
/// reply passes the strict check, namely the reply itself, without its first line, without its last line, without
/// both, and each of these four with every `*` removed. This forgives a preamble ("Sure, here it is:"), a sign-off
/// and markdown emphasis.
pub fn check_loose(instruction: &Instruction, prompt: &str, reply: &str) -> Result<bool, VerifyError> {
    let _ = prompt;
    let check = Check::parse(instruction)?;
    let lines: Vec<&str> = reply.split('\n').collect();
    let n = lines.len();
    let without_first = lines.get(1..).unwrap_or(&[]).join("\n");
    let without_last = lines.get(..n.saturating_sub(1)).unwrap_or(&[]).join("\n");
    let without_both = if n >= 2 { lines[1..n - 1].join("\n") } else { String::new() };
    let cropped = [reply, without_first.trim(), without_last.trim(), without_both.trim()];
    // Variants are built lazily: most replies pass or fail on the first one or two.
    for text in cropped {
        if check.passes(text) {
            return Ok(true);
        }
    }
    for text in cropped {
        if text.contains('*') && check.passes(&text.replace('*', "")) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Parses one line of IFEval's `input_data.jsonl` (`{key, prompt, instruction_id_list, kwargs}`) into the key (as
/// text), the prompt and its instructions, validating every instruction's kwargs. Errors name the offending field.
pub fn parse_ifeval_line(line: &str) -> Result<(String, String, Vec<Instruction>), VerifyError> {
    let value: Value = serde_json::from_str(line).map_err(|e| VerifyError::Json { message: e.to_string() })?;
    let Value::Object(obj) = value else {
        return Err(VerifyError::Json { message: "the line is not a JSON object".into() });
    };
    let field = |name: &str, problem: &str| VerifyError::Field { field: name.into(), problem: problem.into() };
    let key = match obj.get("key") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(field("key", "is missing")),
        Some(_) => return Err(field("key", "must be a number or a string")),
    };
    let prompt = match obj.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(field("prompt", "is missing")),
        Some(_) => return Err(field("prompt", "must be a string")),
    };
    let ids = match obj.get("instruction_id_list") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| field("instruction_id_list", "must be a list of strings"))?,
        None | Some(Value::Null) => return Err(field("instruction_id_list", "is missing")),
        Some(_) => return Err(field("instruction_id_list", "must be a list of strings")),
    };
    let kwargs = match obj.get("kwargs") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => return Err(field("kwargs", "is missing")),
        Some(_) => return Err(field("kwargs", "must be a list of objects")),
    };
    if kwargs.len() != ids.len() {
        let problem = format!(
            "has {} entries but instruction_id_list has {} (one kwargs object per id)",
            kwargs.len(),
            ids.len()
        );
        return Err(field("kwargs", &problem));
    }
    let mut instructions = Vec::with_capacity(ids.len());
    for (i, (id, kw)) in ids.into_iter().zip(kwargs).enumerate() {
        let kwargs = match kw {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            _ => return Err(field(&format!("kwargs[{i}]"), "must be an object")),
        };
        let instruction = Instruction { id, kwargs };
        instruction.validate()?;
        instructions.push(instruction);
    }
    Ok((key, prompt, instructions))
}

// ---------------------------------------------------------------------------------------------------------------------
// Parsed checks.

/// `less than` / `at least`, the two comparisons IFEval uses for every count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    LessThan,
    AtLeast,
}

impl Relation {
    fn holds(self, count: usize, threshold: u64) -> bool {
        let count = count as u64;
        match self {
            Relation::LessThan => count < threshold,
            Relation::AtLeast => count >= threshold,
        }
    }
}

/// An instruction with its kwargs parsed and its patterns compiled, ready to score many reply variants.
#[derive(Debug)]
enum Check {
    KeywordsExistence(Vec<Regex>),
    KeywordFrequency { keyword: Regex, frequency: u64, relation: Relation },
    ForbiddenWords(Vec<Regex>),
    LetterFrequency { letter: char, frequency: u64, relation: Relation },
    ResponseLanguage(String),
    NumberSentences { n: u64, relation: Relation },
    NumberParagraphs(u64),
    NumberWords { n: u64, relation: Relation },
    NthParagraphFirstWord { num_paragraphs: u64, nth: u64, first_word: String },
    NumberPlaceholders(u64),
    Postscript(Regex),
    NumberBulletLists(u64),
    ConstrainedResponse,
    NumberHighlightedSections(u64),
    MultipleSections { splitter: Regex, n: u64 },
    JsonFormat,
    Title,
    TwoResponses,
    RepeatPrompt(String),
    EndChecker(String),
    CapitalWordFrequency { n: u64, relation: Relation },
    EnglishCapital,
    EnglishLowercase,
    NoComma,
    Quotation,
}

/// The three answers `detectable_format:constrained_response` accepts.
pub const CONSTRAINED_RESPONSE_OPTIONS: [&str; 3] = ["My answer is yes.", "My answer is no.", "My answer is maybe."];

/// Typed access to one instruction's kwargs, producing errors that name the id and the kwarg.
struct Kwargs<'a> {
    id: &'a str,
    map: &'a Map<String, Value>,
}

impl Kwargs<'_> {
    fn error(&self, kwarg: &str, problem: impl Into<String>) -> VerifyError {
        VerifyError::Kwarg { id: self.id.to_owned(), kwarg: kwarg.to_owned(), problem: problem.into() }
    }

    fn get(&self, name: &str) -> Result<&Value, VerifyError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Err(self.error(name, "is missing")),
            Some(v) => Ok(v),
        }
    }

    fn uint(&self, name: &str) -> Result<u64, VerifyError> {
        let v = self.get(name)?;
        // Integral floats (`3.0`) are accepted because some JSON writers emit every number as a float.
        v.as_u64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15).map(|f| f as u64))
            .ok_or_else(|| self.error(name, format!("must be a non-negative integer, got {}", preview(v))))
    }

    fn positive(&self, name: &str) -> Result<u64, VerifyError> {
        let n = self.uint(name)?;
        if n == 0 {
            return Err(self.error(name, "must be at least 1"));
        }
        Ok(n)
    }

    fn string(&self, name: &str) -> Result<&str, VerifyError> {
        let v = self.get(name)?;
        let s = v.as_str().ok_or_else(|| self.error(name, format!("must be a string, got {}", preview(v))))?;
        if s.trim().is_empty() {
            return Err(self.error(name, "must not be empty"));
        }
        Ok(s.trim())
    }

    fn strings(&self, name: &str) -> Result<Vec<&str>, VerifyError> {
        let v = self.get(name)?;
        let items = v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::trim)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| self.error(name, format!("must be a list of strings, got {}", preview(v))))?;
        if items.is_empty() || items.iter().any(|s| s.is_empty()) {
            return Err(self.error(name, "must be a non-empty list of non-empty strings"));
        }
        Ok(items)
    }

    fn relation(&self, name: &str) -> Result<Relation, VerifyError> {
        match self.get(name)?.as_str() {
            Some("less than") => Ok(Relation::LessThan),
            Some("at least") => Ok(Relation::AtLeast),
            _ => Err(self.error(name, "must be \"less than\" or \"at least\"")),
        }
    }

    /// A case-insensitive literal pattern, optionally anchored at Unicode word boundaries.
    fn pattern(&self, name: &str, text: &str, whole_word: bool) -> Result<Regex, VerifyError> {
        let escaped = regex::escape(text);
        let source = if whole_word { format!(r"\b{escaped}\b") } else { escaped };
        RegexBuilder::new(&source)
            .case_insensitive(true)
            .build()
            .map_err(|e| self.error(name, format!("cannot be matched: {e}")))
    }
}

/// A short rendering of a JSON value for error messages (kwargs may be arbitrarily large).
fn preview(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

impl Check {
    fn parse(instruction: &Instruction) -> Result<Check, VerifyError> {
        let kw = Kwargs { id: &instruction.id, map: &instruction.kwargs };
        let check = match instruction.id.as_str() {
            "keywords:existence" => Check::KeywordsExistence(
                kw.strings("keywords")?
                    .into_iter()
                    .map(|k| kw.pattern("keywords", k, false))
                    .collect::<Result<_, _>>()?,
            ),
            "keywords:frequency" => Check::KeywordFrequency {
                keyword: kw.pattern("keyword", kw.string("keyword")?, false)?,
                frequency: kw.uint("frequency")?,
                relation: kw.relation("relation")?,
            },
            "keywords:forbidden_words" => Check::ForbiddenWords(
                kw.strings("forbidden_words")?
                    .into_iter()
                    .map(|k| kw.pattern("forbidden_words", k, true))
                    .collect::<Result<_, _>>()?,
            ),
            "keywords:letter_frequency" => {
                let raw = kw.string("letter")?;
                let mut chars = raw.chars();
                let (Some(c), None) = (chars.next(), chars.next()) else {
                    return Err(kw.error("letter", format!("must be a single character, got {raw:?}")));
                };
                let mut lower = c.to_lowercase();
                let (Some(letter), None) = (lower.next(), lower.next()) else {
                    return Err(kw.error("letter", format!("{raw:?} has no single-character lower case")));
                };
                Check::LetterFrequency {
                    letter,
                    frequency: kw.uint("let_frequency")?,
                    relation: kw.relation("let_relation")?,
                }
            }
            "language:response_language" => {
                let code = kw.string("language")?;
                if !SUPPORTED_LANGUAGES.contains(&code) {
                    return Err(kw.error(
                        "language",
                        format!("`{code}` is not a language the detector knows ({})", SUPPORTED_LANGUAGES.join(", ")),
                    ));
                }
                Check::ResponseLanguage(code.to_owned())
            }
            "length_constraints:number_sentences" => {
                Check::NumberSentences { n: kw.uint("num_sentences")?, relation: kw.relation("relation")? }
            }
            "length_constraints:number_paragraphs" => Check::NumberParagraphs(kw.positive("num_paragraphs")?),
            "length_constraints:number_words" => {
                Check::NumberWords { n: kw.uint("num_words")?, relation: kw.relation("relation")? }
            }
            "length_constraints:nth_paragraph_first_word" => {
                let num_paragraphs = kw.positive("num_paragraphs")?;
                let nth = kw.positive("nth_paragraph")?;
                if nth > num_paragraphs {
                    return Err(kw.error("nth_paragraph", format!("must be at most num_paragraphs ({num_paragraphs})")));
                }
                let first_word = kw.string("first_word")?.to_lowercase();
                if first_word.contains(char::is_whitespace) {
                    return Err(kw.error("first_word", "must be a single word"));
                }
                Check::NthParagraphFirstWord { num_paragraphs, nth, first_word }
            }
            "detectable_content:number_placeholders" => Check::NumberPlaceholders(kw.uint("num_placeholders")?),
            "detectable_content:postscript" => {
                let marker = kw.string("postscript_marker")?;
                // IFEval lets `P.P.S` and `P.S.` be written with optional spaces (`P. S.`); other markers are literal.
                // Like IFEval, the marker may appear anywhere, not only at the start of a line or at the end of the
                // reply. The reply is lowercased before matching, so the patterns are lower case.
                let source = match marker {
                    "P.P.S" => r"p\.\s?p\.\s?s".to_owned(),
                    "P.S." => r"p\.\s?s\.".to_owned(),
                    other => regex::escape(&other.to_lowercase()),
                };
                Check::Postscript(
                    Regex::new(&source)
                        .map_err(|e| kw.error("postscript_marker", format!("cannot be matched: {e}")))?,
                )
            }
            "detectable_format:number_bullet_lists" => Check::NumberBulletLists(kw.uint("num_bullets")?),
            "detectable_format:constrained_response" => Check::ConstrainedResponse,
            "detectable_format:number_highlighted_sections" => {
                Check::NumberHighlightedSections(kw.uint("num_highlights")?)
            }
            "detectable_format:multiple_sections" => {
                let splitter = kw.string("section_spliter")?;
                // Case-sensitive, as in IFEval: "SECTION 1" does not count for the splitter "Section".
                let source = format!(r"\s?{}\s?\d+\s?", regex::escape(splitter));
                Check::MultipleSections {
                    splitter: Regex::new(&source)
                        .map_err(|e| kw.error("section_spliter", format!("cannot be matched: {e}")))?,
                    n: kw.uint("num_sections")?,
                }
            }
            "detectable_format:json_format" => Check::JsonFormat,
            "detectable_format:title" => Check::Title,
            "combination:two_responses" => Check::TwoResponses,
            "combination:repeat_prompt" => Check::RepeatPrompt(kw.string("prompt_to_repeat")?.to_lowercase()),
            "startend:end_checker" => Check::EndChecker(kw.string("end_phrase")?.to_lowercase()),
            "change_case:capital_word_frequency" => Check::CapitalWordFrequency {
                n: kw.uint("capital_frequency")?,
                relation: kw.relation("capital_relation")?,
            },
            "change_case:english_capital" => Check::EnglishCapital,
            "change_case:english_lowercase" => Check::EnglishLowercase,
            "punctuation:no_comma" => Check::NoComma,
            "startend:quotation" => Check::Quotation,
            other => return Err(VerifyError::UnknownInstruction { id: other.to_owned() }),
        };
        Ok(check)
    }

    /// The verdict for one reply. An empty or whitespace-only reply fails every instruction (IFEval scores an empty
    /// response as not following, even "no commas").
    fn passes(&self, reply: &str) -> bool {
        if reply.trim().is_empty() {
            return false;
        }
        match self {
            Check::KeywordsExistence(keywords) => keywords.iter().all(|k| k.is_match(reply)),
            Check::KeywordFrequency { keyword, frequency, relation } => {
                relation.holds(keyword.find_iter(reply).count(), *frequency)
            }
            Check::ForbiddenWords(words) => !words.iter().any(|w| w.is_match(reply)),
            Check::LetterFrequency { letter, frequency, relation } => {
                let count = reply.chars().flat_map(char::to_lowercase).filter(|c| c == letter).count();
                relation.holds(count, *frequency)
            }
            Check::ResponseLanguage(code) => language_is(reply, code),
            Check::NumberSentences { n, relation } => relation.holds(count_sentences(reply), *n),
            Check::NumberParagraphs(n) => divider_paragraphs(reply) == Some(*n as usize),
            Check::NumberWords { n, relation } => relation.holds(count_words(reply), *n),
            Check::NthParagraphFirstWord { num_paragraphs, nth, first_word } => {
                nth_paragraph_first_word(reply, *num_paragraphs, *nth, first_word)
            }
            Check::NumberPlaceholders(n) => PLACEHOLDER.find_iter(reply).count() as u64 >= *n,
            Check::Postscript(pattern) => pattern.is_match(&reply.to_lowercase()),
            Check::NumberBulletLists(n) => count_bullets(reply) as u64 == *n,
            Check::ConstrainedResponse => {
                let trimmed = reply.trim();
                CONSTRAINED_RESPONSE_OPTIONS.iter().any(|o| trimmed.contains(o))
            }
            Check::NumberHighlightedSections(n) => count_highlights(reply) as u64 >= *n,
            Check::MultipleSections { splitter, n } => splitter.find_iter(reply).count() as u64 >= *n,
            Check::JsonFormat => is_json(reply),
            Check::Title => TITLE
                .find_iter(reply)
                .any(|m| m.as_str().trim_start_matches('<').trim_end_matches('>').trim().chars().next().is_some()),
            Check::TwoResponses => two_responses(reply),
            Check::RepeatPrompt(prompt) => reply.trim().to_lowercase().starts_with(prompt.as_str()),
            Check::EndChecker(phrase) => reply.trim().trim_matches('"').to_lowercase().ends_with(phrase.as_str()),
            Check::CapitalWordFrequency { n, relation } => relation.holds(capital_words(reply), *n),
            Check::EnglishCapital => is_upper(reply) && language_is(reply, "en"),
            Check::EnglishLowercase => is_lower(reply) && language_is(reply, "en"),
            Check::NoComma => !reply.contains(','),
            Check::Quotation => {
                let t = reply.trim();
                t.chars().count() > 1 && t.starts_with('"') && t.ends_with('"')
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Counting helpers, public because the training-prompt generator and other callers need the same definitions.

static WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\w+").expect("static regex"));
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[.*?\]").expect("static regex"));
static PARAGRAPH_DIVIDER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s?\*\*\*\s?").expect("static regex"));
static HIGHLIGHT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\*[^\n\*]*\*").expect("static regex"));
static DOUBLE_HIGHLIGHT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\*\*[^\n\*]*\*\*").expect("static regex"));
static TITLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<<[^\n]+>>").expect("static regex"));

/// Number of words: maximal runs of Unicode word characters (`\w+`), so "don't" is two words and "state-of-the-art"
/// four, as in IFEval.
pub fn count_words(text: &str) -> usize {
    WORD.find_iter(text).count()
}

/// Number of sentences, see [`split_sentences`].
pub fn count_sentences(text: &str) -> usize {
    split_sentences(text).len()
}

/// Characters that end a sentence when followed by whitespace or the end of the text.
const TERMINATORS: &[char] = &['.', '!', '?', '\u{2026}', '\u{203C}', '\u{2047}', '\u{0964}', '\u{061F}', '\u{06D4}'];
/// Full-width terminators of Chinese and Japanese, which end a sentence even without a following space.
const FULLWIDTH_TERMINATORS: &[char] = &['\u{3002}', '\u{FF01}', '\u{FF1F}'];
/// Characters that may close a sentence after its terminator (`He said "stop."`, `(see above.)`, `**Done.**`).
const CLOSERS: &[char] =
    &['"', '\'', '\u{201D}', '\u{2019}', ')', ']', '}', '\u{00BB}', '*', '_', '\u{300D}', '\u{300F}'];
/// Abbreviations whose period does not end a sentence (lower case, without the final period).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "inc", "ltd", "co", "corp", "mt", "ft", "no", "fig",
    "approx", "capt", "lt", "col", "gen", "sgt", "rev", "hon", "dept", "est", "jan", "feb", "mar", "apr", "jun", "jul",
    "aug", "sep", "sept", "oct", "nov", "dec",
];

/// Splits text into sentences, approximating the NLTK punkt tokenizer IFEval uses. A sentence ends at `.`, `!`, `?`
/// (and `…`, `।`, `؟`, `۔`) followed, after any closing quotes, brackets or markdown emphasis, by whitespace or the end
/// of the text; Chinese and Japanese full stops end a sentence anywhere. A period does not end a sentence after a
/// common abbreviation (`Mr.`, `e.g.`, `U.S.`), a single capital initial other than `I`/`A` (`J. Smith`) or a list
/// number at the start of a line (`1. Buy milk`). Like punkt, line breaks alone do not end a sentence.
/// Segments without any letter or digit (a stray `*`, `---`) are not sentences.
///
/// Differences from punkt: punkt learned its abbreviation list and orthographic cues from a corpus, so on unusual
/// abbreviations or ellipses the two counts can differ by one.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let fullwidth = FULLWIDTH_TERMINATORS.contains(&c);
        if !fullwidth && !TERMINATORS.contains(&c) {
            continue;
        }
        // Consume the run of terminators and closers (`?!`, `..."`, `.**`).
        let mut end = i + c.len_utf8();
        let mut single_period = c == '.';
        while let Some(&(j, d)) = iter.peek() {
            if TERMINATORS.contains(&d) || FULLWIDTH_TERMINATORS.contains(&d) {
                single_period = false;
            } else if !CLOSERS.contains(&d) {
                break;
            }
            end = j + d.len_utf8();
            iter.next();
        }
        let at_break = fullwidth || text[end..].chars().next().is_none_or(char::is_whitespace);
        if !at_break || (single_period && period_is_not_a_stop(text, i)) {
            continue;
        }
        push_sentence(&mut sentences, &text[start..end]);
        start = end;
    }
    push_sentence(&mut sentences, &text[start..]);
    sentences
}

fn push_sentence<'a>(out: &mut Vec<&'a str>, segment: &'a str) {
    let segment = segment.trim();
    if segment.chars().any(char::is_alphanumeric) {
        out.push(segment);
    }
}

/// Whether the period at byte `at` belongs to an abbreviation, an initial or a line-leading list number.
fn period_is_not_a_stop(text: &str, at: usize) -> bool {
    // The token before the period: letters, digits and inner periods, at most 16 characters back (longer tokens are
    // never abbreviations), which keeps the whole split linear.
    let before = &text[..at];
    let mut token_start = at;
    for (k, (i, c)) in before.char_indices().rev().enumerate() {
        if k >= 16 || !(c.is_alphanumeric() || c == '.') {
            break;
        }
        token_start = i;
    }
    let token = &before[token_start..];
    if token.is_empty() {
        return false;
    }
    let lower = token.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) || lower == "e.g" || lower == "i.e" {
        return true;
    }
    // Dotted acronyms (`U.S`, `p.m`) keep their final period.
    if token.contains('.') && token.split('.').all(|part| part.chars().count() == 1) {
        return true;
    }
    let mut chars = token.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if c.is_uppercase() && c != 'I' && c != 'A' {
            return true;
        }
    }
    // `1. Buy milk` at the start of a line is a list marker.
    // Only whitespace may precede it on its line; the backward scan stops at the first other character, so it stays
    // linear overall.
    token.chars().all(|c| c.is_ascii_digit())
        && before[..token_start].chars().rev().take_while(|c| *c != '\n').all(char::is_whitespace)
}

/// Paragraphs separated by the markdown divider `***` (IFEval's `length_constraints:number_paragraphs`): the number of
/// non-empty pieces, or `None` when an empty piece sits between two dividers (an empty paragraph is not allowed; empty
/// pieces before the first or after the last divider are ignored).
fn divider_paragraphs(text: &str) -> Option<usize> {
    let pieces: Vec<&str> = PARAGRAPH_DIVIDER.split(text).collect();
    let last = pieces.len().saturating_sub(1);
    let mut count = 0;
    for (i, piece) in pieces.iter().enumerate() {
        if piece.trim().is_empty() {
            if i != 0 && i != last {
                return None;
            }
        } else {
            count += 1;
        }
    }
    Some(count)
}

/// IFEval's `nth_paragraph_first_word`: paragraphs are separated by `\n\n`; the number of non-empty paragraphs must be
/// `num_paragraphs`, and the `nth` piece of the split (counting empty pieces, as IFEval does, so stray blank lines
/// shift it) must be non-empty and start with `first_word`, compared in lower case after dropping leading quotes and
/// everything from the first `. , ? ! ' "` on.
fn nth_paragraph_first_word(text: &str, num_paragraphs: u64, nth: u64, first_word: &str) -> bool {
    let pieces: Vec<&str> = text.split("\n\n").collect();
    let non_empty = pieces.iter().filter(|p| !p.trim().is_empty()).count() as u64;
    if nth > non_empty || non_empty != num_paragraphs {
        return false;
    }
    let Some(paragraph) = usize::try_from(nth - 1).ok().and_then(|i| pieces.get(i)).map(|p| p.trim()) else {
        return false;
    };
    let Some(word) = paragraph.split_whitespace().next() else {
        return false;
    };
    let word = word.trim_start_matches(['\'', '"']);
    let found: String = word
        .chars()
        .take_while(|c| !matches!(c, '.' | ',' | '?' | '!' | '\'' | '"'))
        .flat_map(char::to_lowercase)
        .collect();
    found == first_word
}

/// Bullet points as IFEval counts them: lines that start (after whitespace) with `*` not followed by another `*`, or
/// with `-` (so a `---` rule counts too, as in IFEval). A line that is only `*` counts when another line follows,
/// because IFEval's pattern lets the character after the star be the line break.
fn count_bullets(text: &str) -> usize {
    let mut lines = text.split('\n').peekable();
    let mut count = 0;
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let mut chars = t.chars();
        let bullet = match (chars.next(), chars.next()) {
            (Some('-'), _) => true,
            (Some('*'), Some(c)) => c != '*',
            (Some('*'), None) => lines.peek().is_some(),
            _ => false,
        };
        if bullet {
            count += 1;
        }
    }
    count
}

/// Highlighted sections: non-empty `*text*` and `**text**` spans within a line. As in IFEval both patterns are counted
/// separately, so `**bold**` counts once (its single-star reading only finds the empty `**` pairs).
fn count_highlights(text: &str) -> usize {
    let single = HIGHLIGHT.find_iter(text).filter(|m| !m.as_str().trim_matches('*').trim().is_empty()).count();
    let double = DOUBLE_HIGHLIGHT
        .find_iter(text)
        .filter(|m| m.as_str().get(2..m.as_str().len() - 2).is_some_and(|inner| !inner.trim().is_empty()))
        .count();
    single + double
}

/// Whether the whole reply is JSON, optionally inside a markdown code fence.
fn is_json(text: &str) -> bool {
    let mut t = text.trim();
    for fence in ["```json", "```Json", "```JSON", "```"] {
        if let Some(rest) = t.strip_prefix(fence) {
            t = rest;
            break;
        }
    }
    let t = t.strip_suffix("```").unwrap_or(t).trim();
    // IgnoredAny validates the syntax without building the value; serde_json's depth limit stops deep nesting.
    serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
}

/// Exactly two non-empty responses separated by `******`, and different from each other. Empty pieces are allowed
/// only before the first or after the last separator.
fn two_responses(text: &str) -> bool {
    let pieces: Vec<&str> = text.split("******").collect();
    let last = pieces.len().saturating_sub(1);
    let mut valid = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if piece.trim().is_empty() {
            if i != 0 && i != last {
                return false;
            }
        } else {
            valid.push(piece.trim());
        }
    }
    valid.len() == 2 && valid[0] != valid[1]
}

/// Number of words written entirely in capital letters. IFEval tokenizes with NLTK's `word_tokenize`; here a token is
/// a run of letters, digits, `_`, `-`, `'`, `’` and `.`, with leading and trailing punctuation dropped, so
/// hyphenated words and dotted acronyms (`U.S.`, `P.S.`) count once, as in NLTK. A token counts when it has at least
/// one cased letter and no lower-case one (`NASA`, `COVID-19`, `I`). Unlike NLTK, `DON'T` is one token, not two.
fn capital_words(text: &str) -> usize {
    text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '\'' | '\u{2019}' | '.')))
        .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|t| is_upper(t))
        .count()
}

/// Python's `str.isupper`: at least one upper-case letter and no lower-case one.
fn is_upper(text: &str) -> bool {
    let mut has_upper = false;
    for c in text.chars() {
        if c.is_lowercase() {
            return false;
        }
        has_upper |= c.is_uppercase();
    }
    has_upper
}

/// Python's `str.islower`: at least one lower-case letter and no upper-case one.
fn is_lower(text: &str) -> bool {
    let mut has_lower = false;
    for c in text.chars() {
        if c.is_uppercase() {
            return false;
        }
        has_lower |= c.is_lowercase();
    }
    has_lower
}

/// Whether `text` is in language `code`. When the detector cannot decide (no letters, or Latin-script text without a
/// single function word of any known language), the instruction counts as followed, as IFEval does when `langdetect`
/// raises.
fn language_is(text: &str, code: &str) -> bool {
    detect_language(text).is_none_or(|found| found == code)
}

// ---------------------------------------------------------------------------------------------------------------------
// Language identification.

/// The ISO 639-1 codes [`detect_language`] can return: every language of IFEval's `language:response_language`
/// instructions (ar bg bn de fa fi gu hi it kn ko mr ne pa pt ru sw ta te th ur vi) and the rest of IFEval's language
/// list, plus a few frequent neighbours so that those are not mistaken for a requested language.
pub const SUPPORTED_LANGUAGES: &[&str] = &[
    "en", "de", "fr", "es", "pt", "it", "nl", "fi", "sw", "vi", "pl", "tr", "id", "ru", "bg", "uk", "el", "ar", "fa",
    "ur", "he", "hi", "mr", "ne", "bn", "pa", "gu", "or", "ta", "te", "kn", "ml", "si", "th", "ka", "hy", "am", "ko",
    "ja", "zh",
];

/// Writing systems, by Unicode block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Cyrillic,
    Greek,
    Arabic,
    Hebrew,
    Devanagari,
    Bengali,
    Gurmukhi,
    Gujarati,
    Oriya,
    Tamil,
    Telugu,
    Kannada,
    Malayalam,
    Sinhala,
    Thai,
    Georgian,
    Armenian,
    Ethiopic,
    Hangul,
    /// Han ideographs and Japanese kana together; kana decide between Japanese and Chinese.
    Cjk,
}

const SCRIPTS: [Script; 21] = [
    Script::Latin,
    Script::Cyrillic,
    Script::Greek,
    Script::Arabic,
    Script::Hebrew,
    Script::Devanagari,
    Script::Bengali,
    Script::Gurmukhi,
    Script::Gujarati,
    Script::Oriya,
    Script::Tamil,
    Script::Telugu,
    Script::Kannada,
    Script::Malayalam,
    Script::Sinhala,
    Script::Thai,
    Script::Georgian,
    Script::Armenian,
    Script::Ethiopic,
    Script::Hangul,
    Script::Cjk,
];

fn script_of(c: char) -> Option<Script> {
    let u = c as u32;
    let script = match u {
        0x41..=0x5A | 0x61..=0x7A => Script::Latin,
        0xC0..=0x24F | 0x1E00..=0x1EFF if c.is_alphabetic() => Script::Latin,
        0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
        0x400..=0x52F => Script::Cyrillic,
        0x530..=0x58F => Script::Armenian,
        0x590..=0x5FF => Script::Hebrew,
        0x600..=0x6FF | 0x750..=0x77F | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => Script::Arabic,
        0x900..=0x97F => Script::Devanagari,
        0x980..=0x9FF => Script::Bengali,
        0xA00..=0xA7F => Script::Gurmukhi,
        0xA80..=0xAFF => Script::Gujarati,
        0xB00..=0xB7F => Script::Oriya,
        0xB80..=0xBFF => Script::Tamil,
        0xC00..=0xC7F => Script::Telugu,
        0xC80..=0xCFF => Script::Kannada,
        0xD00..=0xD7F => Script::Malayalam,
        0xD80..=0xDFF => Script::Sinhala,
        0xE00..=0xE7F => Script::Thai,
        0x10A0..=0x10FF => Script::Georgian,
        0x1200..=0x137F => Script::Ethiopic,
        0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => Script::Hangul,
        0x3040..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F => Script::Cjk,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F => Script::Cjk,
        _ => return None,
    };
    // Digits, punctuation and signs inside script blocks (Devanagari danda, Arabic comma, Thai digits) are not
    // evidence of a language.
    (c.is_alphabetic() || (is_mark(c) && !c.is_numeric())).then_some(script)
}

/// Combining marks of the Indic and Southeast Asian blocks (viramas, nuktas, vowel signs), which `char::is_alphabetic`
/// does not always cover but which are part of words.
fn is_mark(c: char) -> bool {
    let u = c as u32;
    ((0x900..=0xDFF).contains(&u) && !matches!(u, 0x964 | 0x965)) || (0xE31..=0xE4E).contains(&u)
}

fn is_kana(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F)
}

/// Function words of the Latin-script languages. Frequent, short, and mostly distinctive; words shared by several
/// languages are listed under each and simply do not discriminate.
const LATIN_STOPWORDS: &[(&str, &[&str])] = &[
    (
        "en",
        &[
            "the", "and", "is", "are", "was", "were", "of", "to", "in", "that", "it", "with", "for", "this", "you",
            "on", "be", "have", "has", "not", "as", "they", "will", "can", "what", "which", "from", "your", "we",
            "would", "there", "their", "but", "or", "an", "by", "at", "my", "if", "so", "all", "about", "do", "been",
            "more", "also", "how", "when", "out", "up", "some", "these", "them", "than", "just", "into", "our", "he",
            "she", "his", "her", "i", "me", "very", "should", "could", "here", "those", "because", "who",
        ],
    ),
    (
        "de",
        &[
            "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "einen", "einem", "zu", "den", "mit", "sich",
            "auf", "für", "von", "dem", "des", "auch", "es", "ich", "sie", "wir", "werden", "wird", "sind", "oder",
            "aber", "wenn", "noch", "nach", "bei", "über", "kann", "dass", "im", "am", "wie", "nur", "man", "hat",
            "haben", "vor", "durch", "zum", "zur", "aus", "sehr", "ihr", "ihre", "mein", "dieser", "diese", "dieses",
            "können", "immer", "wurde", "sein", "du", "uns", "euch", "mir", "mich", "dich", "weil", "schon",
        ],
    ),
    (
        "fr",
        &[
            "le", "la", "les", "et", "est", "des", "une", "un", "du", "que", "qui", "dans", "pour", "pas", "au", "sur",
            "ce", "avec", "sont", "il", "elle", "nous", "vous", "ne", "mais", "ou", "par", "plus", "cette", "aux",
            "je", "son", "sa", "ses", "leur", "été", "être", "avoir", "fait", "comme", "tout", "très", "aussi", "où",
            "ça", "c", "l", "d", "qu", "j", "de", "en", "votre", "notre", "peut", "ils", "elles", "mon", "ma", "mes",
            "ces",
        ],
    ),
    (
        "es",
        &[
            "el", "los", "las", "y", "es", "que", "en", "un", "una", "por", "con", "para", "del", "se", "no", "al",
            "lo", "como", "más", "pero", "su", "sus", "este", "esta", "son", "está", "muy", "también", "fue", "ha",
            "hay", "yo", "mi", "entre", "cuando", "todo", "sobre", "ser", "tiene", "puede", "porque", "sin", "hasta",
            "desde", "donde", "ya", "eso", "esto", "ella", "ellos", "usted", "la", "de", "le", "les", "estos", "estas",
            "tu", "tus",
        ],
    ),
    (
        "pt",
        &[
            "o", "os", "as", "e", "é", "de", "que", "um", "uma", "do", "da", "dos", "das", "em", "para", "com", "não",
            "no", "na", "nos", "nas", "por", "se", "mais", "mas", "como", "ao", "seu", "sua", "são", "está", "você",
            "também", "foi", "há", "ele", "ela", "eles", "isso", "isto", "muito", "quando", "pelo", "pela", "ser",
            "tem", "pode", "porque", "sem", "até", "onde", "já", "eu", "meu", "minha", "às", "à", "num", "numa", "lhe",
            "ou", "vocês", "seus", "suas",
        ],
    ),
    (
        "it",
        &[
            "il", "lo", "la", "gli", "le", "e", "è", "di", "che", "un", "una", "per", "con", "non", "del", "della",
            "dei", "delle", "degli", "in", "sono", "si", "da", "ma", "come", "anche", "più", "questo", "questa", "nel",
            "nella", "alla", "al", "ed", "ci", "ha", "hanno", "essere", "io", "mi", "ti", "suo", "sua", "loro",
            "molto", "quando", "perché", "se", "tutto", "sul", "sulla", "dal", "dalla", "cosa", "già", "ogni", "quale",
            "questi", "queste",
        ],
    ),
    (
        "nl",
        &[
            "de", "het", "een", "en", "van", "is", "dat", "niet", "op", "te", "zijn", "voor", "met", "die", "ook",
            "maar", "er", "wordt", "bij", "als", "aan", "om", "ik", "je", "hij", "ze", "wij", "we", "naar", "uit",
            "dan", "nog", "kan", "worden", "heeft", "hebben", "deze", "dit", "door", "over", "zo", "geen", "meer",
            "wat", "waar", "wel", "veel", "mijn", "jouw", "zij", "hun", "onze", "jullie", "u",
        ],
    ),
    (
        "fi",
        &[
            "ja", "on", "ei", "se", "että", "hän", "oli", "ovat", "kun", "mutta", "niin", "myös", "tai", "kuin",
            "joka", "jos", "ole", "olla", "tämä", "sen", "minä", "sinä", "me", "he", "voi", "mitä", "kanssa", "olen",
            "olet", "hyvä", "vain", "jo", "nyt", "sitä", "siitä", "tässä", "tästä", "kaikki", "joten", "koska", "eli",
            "vielä", "hyvin", "paljon", "mikä", "jotka", "jonka", "sekä", "eikä", "ovat", "sinun", "minun",
        ],
    ),
    (
        "sw",
        &[
            "na", "ya", "wa", "kwa", "ni", "za", "la", "katika", "kuwa", "hii", "hiyo", "yake", "lakini", "au", "sana",
            "pia", "kama", "wakati", "watu", "kila", "ambayo", "ambao", "hivyo", "huo", "cha", "vya", "mimi", "wewe",
            "sisi", "wao", "yeye", "kwamba", "baada", "kabla", "zaidi", "hata", "bila", "lazima", "kuna", "hakuna",
            "yako", "yangu", "wetu", "huu", "ili", "tu", "bado", "sasa",
        ],
    ),
    (
        "vi",
        &[
            "của", "và", "là", "các", "có", "được", "trong", "cho", "không", "những", "một", "người", "với", "này",
            "đã", "để", "khi", "từ", "như", "cũng", "nhiều", "đến", "sẽ", "rất", "thì", "bạn", "tôi", "chúng", "ra",
            "vào", "năm", "lại", "nhưng", "hay", "mà", "nên", "về", "theo", "đó", "nếu", "làm", "còn", "phải",
        ],
    ),
    (
        "pl",
        &[
            "i", "w", "nie", "na", "się", "z", "że", "do", "to", "jest", "o", "jak", "ale", "co", "po", "tak", "za",
            "od", "przez", "dla", "są", "czy", "jego", "który", "która", "które", "także", "jej", "ich", "już",
            "tylko", "może", "być", "było", "bardzo", "oraz", "gdy", "jako", "jeśli", "ten", "ta", "te", "tego", "tym",
            "mnie", "mi", "ty", "my", "wy", "oni",
        ],
    ),
    (
        "tr",
        &[
            "ve", "bir", "bu", "da", "de", "için", "ile", "çok", "ne", "daha", "olan", "gibi", "ama", "değil", "ben",
            "sen", "var", "yok", "olarak", "kadar", "sonra", "şey", "her", "mi", "mı", "en", "ya", "veya", "ise",
            "göre", "biz", "siz", "onlar", "bunu", "şu", "çünkü", "nasıl", "neden",
        ],
    ),
    (
        "id",
        &[
            "yang", "dan", "di", "ini", "itu", "dengan", "untuk", "tidak", "dari", "dalam", "akan", "pada", "juga",
            "saya", "ke", "ada", "adalah", "bisa", "kami", "kita", "anda", "mereka", "atau", "sudah", "belum",
            "karena", "jika", "oleh", "sebagai", "lebih", "sangat", "tetapi", "hanya", "bahwa", "seperti", "telah",
            "dapat",
        ],
    ),
];

/// Function words that tell apart languages sharing a non-Latin script.
const DEVANAGARI_STOPWORDS: &[(&str, &[&str])] = &[
    (
        "hi",
        &[
            "है",
            "हैं",
            "के",
            "की",
            "का",
            "को",
            "में",
            "से",
            "और",
            "यह",
            "कि",
            "था",
            "थे",
            "भी",
            "नहीं",
            "पर",
            "लिए",
            "हो",
            "कर",
            "तो",
            "जो",
            "वह",
            "आप",
            "हम",
            "करें",
            "सकते",
            "किया",
            "गया",
        ],
    ),
    (
        "mr",
        &[
            "आहे",
            "आहेत",
            "आणि",
            "या",
            "हे",
            "ते",
            "की",
            "च्या",
            "मध्ये",
            "करण्यासाठी",
            "नाही",
            "होते",
            "केले",
            "त्यांच्या",
            "म्हणून",
            "पण",
            "तुम्ही",
            "आपण",
            "आम्ही",
            "त्या",
            "ही",
            "तर",
            "असे",
            "आता",
        ],
    ),
    (
        "ne",
        &[
            "छ",
            "छन्",
            "र",
            "को",
            "मा",
            "हो",
            "गर्न",
            "पनि",
            "यो",
            "त्यो",
            "भएको",
            "लागि",
            "गरेको",
            "हुन्छ",
            "थियो",
            "तर",
            "हामी",
            "तपाईं",
            "तपाईंको",
            "गर्नुहोस्",
            "छैन",
            "रहेको",
        ],
    ),
];
const CYRILLIC_STOPWORDS: &[(&str, &[&str])] = &[
    (
        "ru",
        &[
            "что",
            "это",
            "как",
            "он",
            "она",
            "они",
            "был",
            "была",
            "было",
            "если",
            "или",
            "его",
            "только",
            "уже",
            "вы",
            "мы",
            "для",
            "при",
        ],
    ),
    (
        "bg",
        &[
            "че", "това", "как", "той", "тя", "те", "беше", "ако", "или", "само", "вече", "вие", "ние", "за", "са",
            "да", "се", "е", "със",
        ],
    ),
    (
        "uk",
        &[
            "що",
            "це",
            "як",
            "він",
            "вона",
            "вони",
            "був",
            "була",
            "якщо",
            "або",
            "його",
            "тільки",
            "вже",
            "ви",
            "ми",
            "для",
            "і",
            "та",
        ],
    ),
];

/// Latin-script function word -> bit set of the languages (indices into [`LATIN_STOPWORDS`]) that use it.
static LATIN_INDEX: LazyLock<HashMap<&'static str, u32>> = LazyLock::new(|| stopword_index(LATIN_STOPWORDS));
static DEVANAGARI_INDEX: LazyLock<HashMap<&'static str, u32>> = LazyLock::new(|| stopword_index(DEVANAGARI_STOPWORDS));
static CYRILLIC_INDEX: LazyLock<HashMap<&'static str, u32>> = LazyLock::new(|| stopword_index(CYRILLIC_STOPWORDS));

fn stopword_index(table: &'static [(&'static str, &'static [&'static str])]) -> HashMap<&'static str, u32> {
    let mut index = HashMap::new();
    for (lang, (_, words)) in table.iter().enumerate() {
        for w in words.iter() {
            *index.entry(*w).or_insert(0u32) |= 1 << lang;
        }
    }
    index
}

/// Per-language counts of function-word hits over the text's tokens (split at whitespace and punctuation, lower-cased).
fn stopword_scores(text: &str, index: &HashMap<&'static str, u32>, languages: usize) -> Vec<usize> {
    let mut scores = vec![0usize; languages];
    let separators = |c: char| {
        c.is_whitespace()
            || c.is_ascii_punctuation()
            || matches!(c, '\u{0964}' | '\u{0965}' | '\u{060C}' | '\u{061B}' | '\u{061F}' | '\u{06D4}')
            || matches!(c, '\u{201C}' | '\u{201D}' | '\u{2018}' | '\u{2019}' | '\u{00AB}' | '\u{00BB}')
            || matches!(c, '\u{2013}' | '\u{2014}' | '\u{2026}' | '\u{00BF}' | '\u{00A1}')
    };
    let mut buf = String::new();
    for token in text.split(separators).filter(|t| !t.is_empty()) {
        buf.clear();
        buf.extend(token.chars().flat_map(char::to_lowercase));
        if let Some(&mask) = index.get(buf.as_str()) {
            for (lang, score) in scores.iter_mut().enumerate() {
                if mask & (1 << lang) != 0 {
                    *score += 1;
                }
            }
        }
    }
    scores
}

/// The index of the highest score (the first one on ties), or `None` when every score is zero.
fn best(scores: &[usize]) -> Option<usize> {
    let (i, &top) = scores.iter().enumerate().rev().max_by_key(|&(_, s)| *s)?;
    (top > 0).then_some(i)
}

/// Identifies the language of `text` (an ISO 639-1 code from [`SUPPORTED_LANGUAGES`]), or `None` when it cannot tell.
///
/// A small, transparent detector instead of a statistical model: first the dominant writing system by letter count,
/// which settles most languages outright (Korean, Thai, Tamil, Telugu, Kannada, Gujarati, Punjabi, Bengali, Greek,
/// Hebrew, ...); then, within a shared script:
/// - Latin: counts of function words of 13 languages (en de fr es pt it nl fi sw vi pl tr id), plus Vietnamese tone
///   letters; the most hits wins.
/// - Cyrillic: letters only Russian (`ы э ё`), Bulgarian (`ъ` as a vowel) or Ukrainian (`і ї є ґ`) use, plus
///   function words.
/// - Arabic script: Urdu-only letters (`ے ٹ ڈ ڑ ں ہ ھ`), Persian letters (`پ چ ژ گ ک ی`) against Arabic-only forms
///   (`ة ي ك ى أ إ`).
/// - Devanagari: Hindi, Marathi and Nepali function words (Marathi also by `ळ`); Hindi when none is found.
/// - Han and kana: Japanese when kana make up a tenth of the characters, else Chinese.
///
/// Limits: it returns `None` for text without letters and for Latin-script text with no function word of the 13
/// languages (very short replies, lists of names, other Latin-script languages); it can only name the languages
/// listed, so text in another language of a shared script is labelled as its closest listed neighbour (Spanish
/// and Portuguese, Hindi and Marathi are the most confusable pairs; a short reply can flip between them);
/// mixed-language text gets the language with the most evidence, so a French reply with an English paragraph
/// appended is French. It is meant for IFEval's "answer in language X" instructions, where replies are long and in one
/// language.
pub fn detect_language(text: &str) -> Option<&'static str> {
    let mut counts = [0usize; SCRIPTS.len()];
    let mut kana = 0usize;
    for c in text.chars() {
        if let Some(script) = script_of(c) {
            if let Some(slot) = SCRIPTS.iter().position(|s| *s == script) {
                counts[slot] += 1;
            }
            kana += usize::from(is_kana(c));
        }
    }
    let dominant = SCRIPTS[best(&counts)?];
    let letters = counts[SCRIPTS.iter().position(|s| *s == dominant).unwrap_or(0)];
    let count_of = |set: &[char]| text.chars().filter(|c| set.contains(c)).count();
    let code = match dominant {
        Script::Latin => {
            let mut scores = stopword_scores(text, &LATIN_INDEX, LATIN_STOPWORDS.len());
            if let Some(vi) = LATIN_STOPWORDS.iter().position(|(l, _)| *l == "vi") {
                scores[vi] += text.chars().filter(|c| is_vietnamese_letter(*c)).count();
            }
            LATIN_STOPWORDS[best(&scores)?].0
        }
        Script::Cyrillic => {
            let mut scores = stopword_scores(text, &CYRILLIC_INDEX, CYRILLIC_STOPWORDS.len());
            scores[0] += count_of(&['ы', 'э', 'ё', 'Ы', 'Э', 'Ё']);
            scores[1] += count_of(&['ъ', 'Ъ']);
            scores[2] += count_of(&['і', 'ї', 'є', 'ґ', 'І', 'Ї', 'Є', 'Ґ']);
            best(&scores).map_or("ru", |i| CYRILLIC_STOPWORDS[i].0)
        }
        Script::Arabic => {
            let urdu = count_of(&['\u{06D2}', '\u{0679}', '\u{0688}', '\u{0691}', '\u{06BA}', '\u{06C1}', '\u{06BE}']);
            let persian = count_of(&['\u{067E}', '\u{0686}', '\u{0698}', '\u{06AF}', '\u{06A9}', '\u{06CC}']);
            let arabic = count_of(&['\u{0629}', '\u{064A}', '\u{0643}', '\u{0649}', '\u{0623}', '\u{0625}']);
            // Urdu writes several very frequent letters (ے in ہے، کے، سے) that Persian never uses; 3% of the letters
            // is far above what a loanword or a name would produce.
            if urdu * 33 >= letters && urdu > 0 {
                "ur"
            } else if persian > arabic {
                "fa"
            } else {
                "ar"
            }
        }
        Script::Devanagari => {
            let mut scores = stopword_scores(text, &DEVANAGARI_INDEX, DEVANAGARI_STOPWORDS.len());
            scores[1] += count_of(&['\u{0933}']);
            best(&scores).map_or("hi", |i| DEVANAGARI_STOPWORDS[i].0)
        }
        Script::Cjk => {
            if kana * 10 >= letters {
                "ja"
            } else {
                "zh"
            }
        }
        Script::Greek => "el",
        Script::Hebrew => "he",
        Script::Bengali => "bn",
        Script::Gurmukhi => "pa",
        Script::Gujarati => "gu",
        Script::Oriya => "or",
        Script::Tamil => "ta",
        Script::Telugu => "te",
        Script::Kannada => "kn",
        Script::Malayalam => "ml",
        Script::Sinhala => "si",
        Script::Thai => "th",
        Script::Georgian => "ka",
        Script::Armenian => "hy",
        Script::Ethiopic => "am",
        Script::Hangul => "ko",
    };
    Some(code)
}

/// Letters that only Vietnamese uses among the Latin-script languages listed: horned and breved vowels, đ, and the
/// dotted-below / hook-above tone letters of the Latin Extended Additional block.
fn is_vietnamese_letter(c: char) -> bool {
    matches!(c, 'ơ' | 'Ơ' | 'ư' | 'Ư' | 'đ' | 'Đ' | 'ă' | 'Ă') || ('\u{1EA0}'..='\u{1EF9}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_follow_punctuation_not_abbreviations() {
        assert_eq!(count_sentences("Hello there. How are you? Fine!"), 3);
        assert_eq!(count_sentences("Mr. Smith met Dr. Jones at 3.30 p.m. in the U.S. today."), 1);
        assert_eq!(count_sentences("He said \"stop.\" Then he left."), 2);
        assert_eq!(count_sentences("1. Buy milk.\n2. Sell eggs."), 2);
        assert_eq!(count_sentences("line one\nline two"), 1);
        assert_eq!(count_sentences("Wait... what? Yes."), 3);
        assert_eq!(count_sentences("我很好。你呢？"), 2);
        assert_eq!(count_sentences(""), 0);
        assert_eq!(count_sentences("***"), 0);
        assert_eq!(count_sentences("Neither did I. Then we left."), 2);
    }

    #[test]
    fn words_and_capitals() {
        assert_eq!(count_words("don't stop-me now"), 5);
        assert_eq!(capital_words("I saw NASA and the U.S. team, COVID-19 too. Ok"), 4);
        assert!(is_upper("HELLO, WORLD 42") && !is_upper("HELLO World") && !is_upper("42"));
        assert!(is_lower("hello, world") && !is_lower("hello World") && !is_lower("..."));
    }

    #[test]
    fn detector_names_scripts_and_latin_languages() {
        assert_eq!(detect_language("The cat is on the mat and it is happy."), Some("en"));
        assert_eq!(detect_language("Der Hund ist nicht im Haus, aber die Katze schon."), Some("de"));
        assert_eq!(detect_language("Il gatto è sul tavolo e non vuole scendere."), Some("it"));
        assert_eq!(detect_language("O gato está em cima da mesa e não quer descer."), Some("pt"));
        assert_eq!(detect_language("El gato está sobre la mesa y no quiere bajar."), Some("es"));
        assert_eq!(detect_language("Kissa on pöydällä ja se ei halua tulla alas."), Some("fi"));
        assert_eq!(detect_language("Paka yuko juu ya meza na hataki kushuka kwa sababu ni mvivu."), Some("sw"));
        assert_eq!(detect_language("Con mèo đang ở trên bàn và không muốn xuống."), Some("vi"));
        assert_eq!(detect_language("Кошка сидит на столе и не хочет слезать, это было ясно."), Some("ru"));
        assert_eq!(detect_language("Котката е на масата и не иска да слезе, защото е мързелива."), Some("bg"));
        assert_eq!(detect_language("बिल्ली मेज़ पर है और नीचे नहीं आना चाहती है।"), Some("hi"));
        assert_eq!(detect_language("मांजर टेबलावर आहे आणि तिला खाली यायचे नाही."), Some("mr"));
        assert_eq!(detect_language("बिरालो टेबलमा छ र तल आउन चाहँदैन, यो पनि थाहा छ।"), Some("ne"));
        assert_eq!(detect_language("القطة على الطاولة ولا تريد النزول لأنها كسولة."), Some("ar"));
        assert_eq!(detect_language("گربه روی میز است و نمی‌خواهد پایین بیاید."), Some("fa"));
        assert_eq!(detect_language("بلی میز پر ہے اور نیچے نہیں آنا چاہتی کیونکہ وہ سست ہے۔"), Some("ur"));
        assert_eq!(detect_language("고양이가 탁자 위에 있어요."), Some("ko"));
        assert_eq!(detect_language("猫はテーブルの上にいます。"), Some("ja"));
        assert_eq!(detect_language("猫在桌子上。"), Some("zh"));
        assert_eq!(detect_language("แมวอยู่บนโต๊ะ"), Some("th"));
        assert_eq!(detect_language("பூனை மேசையில் உள்ளது"), Some("ta"));
        assert_eq!(detect_language("12345 !!!"), None);
        assert_eq!(detect_language(""), None);
    }

    #[test]
    fn paragraph_helpers() {
        assert_eq!(divider_paragraphs("a\n***\nb\n***\nc"), Some(3));
        assert_eq!(divider_paragraphs("***\na\n***\nb\n***"), Some(2));
        assert_eq!(divider_paragraphs("a\n***\n\n***\nb"), None);
        assert!(nth_paragraph_first_word("\"Weekend, yes.\n\nSecond", 2, 1, "weekend"));
        assert!(!nth_paragraph_first_word("One\n\n\n\nTwo", 2, 2, "two"));
        assert_eq!(count_bullets("* a\n- b\n** c\n  * d\n*\nx"), 4);
        assert_eq!(count_highlights("*one* and **two** and ** ** and *"), 2);
        assert!(two_responses("A\n******\nB") && !two_responses("A\n******\nA") && !two_responses("A"));
        assert!(is_json("```json\n{\"a\": 1}\n```") && !is_json("{a: 1}"));
    }
}
