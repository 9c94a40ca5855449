//! IFEval-style training prompts, generated from a seed, and warm-start replies that satisfy them.
//!
//! IFEval's 541 prompts are an evaluation set, so training on them (or on paraphrases of them) would make IFEval
//! scores meaningless. Instead this module combines a project-written list of everyday writing tasks with one to three
//! of the same 25 verifiable constraint kinds, with fresh random parameters and several English phrasings per kind.
//! The constraints are graded by exactly the checks in [`super::instructions`], and every phrasing states what that
//! check verifies (including its quirks, such as keyword matches counting inside longer words), so the reward never
//! punishes a reply that did what the prompt said.
//!
//! [`make_compliant`] turns a plain reply into one that satisfies the constraints that can be met by reformatting
//! (case, quotation, bullets, paragraphs, sections, a title, a postscript, ...); it is how supervised warm-start data
//! is built from replies written without any constraint in mind.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::instructions::{check_strict, split_sentences, Instruction, CONSTRAINED_RESPONSE_OPTIONS, INSTRUCTION_IDS};

/// One generated training prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedInstructionPrompt {
    /// A stable id: `ifgen-<seed in hex>-<index>`.
    pub id: String,
    /// The full prompt: the base task followed by the constraint sentences.
    pub prompt: String,
    /// The constraints, checkable with [`super::check_strict`].
    pub instructions: Vec<Instruction>,
    /// The everyday task the constraints were added to.
    pub base_task: String,
}

const KEYWORDS_EXISTENCE: &str = "keywords:existence";
const KEYWORDS_FREQUENCY: &str = "keywords:frequency";
const FORBIDDEN_WORDS: &str = "keywords:forbidden_words";
const LETTER_FREQUENCY: &str = "keywords:letter_frequency";
const RESPONSE_LANGUAGE: &str = "language:response_language";
const NUMBER_SENTENCES: &str = "length_constraints:number_sentences";
const NUMBER_PARAGRAPHS: &str = "length_constraints:number_paragraphs";
const NUMBER_WORDS: &str = "length_constraints:number_words";
const NTH_PARAGRAPH: &str = "length_constraints:nth_paragraph_first_word";
const PLACEHOLDERS: &str = "detectable_content:number_placeholders";
const POSTSCRIPT: &str = "detectable_content:postscript";
const BULLETS: &str = "detectable_format:number_bullet_lists";
const CONSTRAINED: &str = "detectable_format:constrained_response";
const HIGHLIGHTS: &str = "detectable_format:number_highlighted_sections";
const SECTIONS: &str = "detectable_format:multiple_sections";
const JSON_FORMAT: &str = "detectable_format:json_format";
const TITLE: &str = "detectable_format:title";
const TWO_RESPONSES: &str = "combination:two_responses";
const REPEAT_PROMPT: &str = "combination:repeat_prompt";
const END_CHECKER: &str = "startend:end_checker";
const CAPITAL_WORDS: &str = "change_case:capital_word_frequency";
const ENGLISH_CAPITAL: &str = "change_case:english_capital";
const ENGLISH_LOWERCASE: &str = "change_case:english_lowercase";
const NO_COMMA: &str = "punctuation:no_comma";
const QUOTATION: &str = "startend:quotation";

/// Ids whose constraint [`make_compliant`] can satisfy by transforming a plain reply. Highlighted sections are included
/// (bolding whole sentences) in addition to the reformatting constraints.
const CONSTRUCTIBLE: [&str; 14] = [
    ENGLISH_LOWERCASE,
    ENGLISH_CAPITAL,
    NO_COMMA,
    QUOTATION,
    END_CHECKER,
    POSTSCRIPT,
    TITLE,
    JSON_FORMAT,
    REPEAT_PROMPT,
    BULLETS,
    NUMBER_PARAGRAPHS,
    SECTIONS,
    PLACEHOLDERS,
    HIGHLIGHTS,
];

/// Whether [`make_compliant`] can produce compliance with instruction `id` by transforming a plain reply.
pub fn constructible(id: &str) -> bool {
    CONSTRUCTIBLE.contains(&id)
}

/// The only ids JSON output is combined with: constraints on the words inside the JSON. Structure, case (the
/// generated key is lower case), quotation and start/end constraints cannot hold for a bare JSON document.
const JSON_COMPATIBLE: [&str; 8] = [
    KEYWORDS_EXISTENCE,
    KEYWORDS_FREQUENCY,
    FORBIDDEN_WORDS,
    LETTER_FREQUENCY,
    NUMBER_WORDS,
    ENGLISH_LOWERCASE,
    NO_COMMA,
    PLACEHOLDERS,
];

/// Pairs never combined in one prompt, because they contradict each other, one makes the other trivial, or the checks
/// interfere (for example the repeated prompt of `repeat_prompt` contains the forbidden words it names, and the `***`
/// divider of `number_paragraphs` breaks `two_responses`).
const INCOMPATIBLE: &[(&str, &str)] = &[
    (ENGLISH_CAPITAL, ENGLISH_LOWERCASE),
    (ENGLISH_CAPITAL, CAPITAL_WORDS),
    (ENGLISH_LOWERCASE, CAPITAL_WORDS),
    (ENGLISH_CAPITAL, SECTIONS),
    (ENGLISH_LOWERCASE, SECTIONS),
    (ENGLISH_CAPITAL, CONSTRAINED),
    (ENGLISH_LOWERCASE, CONSTRAINED),
    (RESPONSE_LANGUAGE, KEYWORDS_EXISTENCE),
    (RESPONSE_LANGUAGE, KEYWORDS_FREQUENCY),
    (RESPONSE_LANGUAGE, FORBIDDEN_WORDS),
    (RESPONSE_LANGUAGE, LETTER_FREQUENCY),
    (RESPONSE_LANGUAGE, NTH_PARAGRAPH),
    (RESPONSE_LANGUAGE, CONSTRAINED),
    (RESPONSE_LANGUAGE, END_CHECKER),
    (RESPONSE_LANGUAGE, REPEAT_PROMPT),
    (RESPONSE_LANGUAGE, ENGLISH_CAPITAL),
    (RESPONSE_LANGUAGE, ENGLISH_LOWERCASE),
    (RESPONSE_LANGUAGE, CAPITAL_WORDS),
    (RESPONSE_LANGUAGE, SECTIONS),
    (REPEAT_PROMPT, QUOTATION),
    (REPEAT_PROMPT, NTH_PARAGRAPH),
    (REPEAT_PROMPT, TWO_RESPONSES),
    (REPEAT_PROMPT, FORBIDDEN_WORDS),
    (REPEAT_PROMPT, KEYWORDS_FREQUENCY),
    (REPEAT_PROMPT, KEYWORDS_EXISTENCE),
    (REPEAT_PROMPT, LETTER_FREQUENCY),
    (REPEAT_PROMPT, NUMBER_SENTENCES),
    (REPEAT_PROMPT, NUMBER_WORDS),
    (REPEAT_PROMPT, CAPITAL_WORDS),
    (REPEAT_PROMPT, NUMBER_PARAGRAPHS),
    (REPEAT_PROMPT, NO_COMMA),
    (REPEAT_PROMPT, CONSTRAINED),
    (NTH_PARAGRAPH, NUMBER_PARAGRAPHS),
    (NTH_PARAGRAPH, TWO_RESPONSES),
    (NTH_PARAGRAPH, SECTIONS),
    (NTH_PARAGRAPH, TITLE),
    (NTH_PARAGRAPH, BULLETS),
    (NTH_PARAGRAPH, POSTSCRIPT),
    (NUMBER_PARAGRAPHS, TWO_RESPONSES),
    (NUMBER_PARAGRAPHS, BULLETS),
    (NUMBER_PARAGRAPHS, SECTIONS),
    (TWO_RESPONSES, BULLETS),
    (BULLETS, HIGHLIGHTS),
    (BULLETS, SECTIONS),
    (END_CHECKER, POSTSCRIPT),
    (CAPITAL_WORDS, SECTIONS),
    (CAPITAL_WORDS, POSTSCRIPT),
    (LETTER_FREQUENCY, KEYWORDS_EXISTENCE),
    (LETTER_FREQUENCY, KEYWORDS_FREQUENCY),
    (LETTER_FREQUENCY, END_CHECKER),
    (LETTER_FREQUENCY, CONSTRAINED),
    (NUMBER_SENTENCES, NUMBER_WORDS),
];

fn compatible(a: &str, b: &str) -> bool {
    if a == b {
        return false;
    }
    if a == JSON_FORMAT {
        return JSON_COMPATIBLE.contains(&b);
    }
    if b == JSON_FORMAT {
        return JSON_COMPATIBLE.contains(&a);
    }
    !INCOMPATIBLE.iter().any(|&(x, y)| (x == a && y == b) || (x == b && y == a))
}

/// Everyday writing tasks (project-written; none is taken from IFEval).
const BASE_TASKS: &[&str] = &[
    "Write a short note to a neighbour about a parcel that was delivered to your door by mistake.",
    "Explain how the gears on a bicycle make pedalling easier or harder.",
    "Write a thank-you message to a friend who helped you move house.",
    "Describe how to make a simple vegetable soup.",
    "Write an email asking your landlord to fix a leaking kitchen tap.",
    "Explain why leaves change colour in autumn.",
    "Write a short story about a lost umbrella that finds its way home.",
    "Give advice to someone starting their first job in an office.",
    "Describe your ideal weekend morning.",
    "Explain how a refrigerator keeps food cold.",
    "Write a polite message declining an invitation to a birthday party.",
    "Write a product description for a reusable water bottle.",
    "Explain how to plant tomato seedlings in a garden.",
    "Write a short speech to welcome new members to a book club.",
    "Describe the benefits of taking a short walk after lunch.",
    "Write a letter to your future self about what you hope to learn this year.",
    "Explain to a child how borrowing books from a library works.",
    "Write a review of a small cafe you enjoy visiting.",
    "Give tips for packing a suitcase for a week-long trip.",
    "Explain how rainbows form.",
    "Write a note to a coworker handing over a project while you are on holiday.",
    "Describe how to fix a flat tyre on a bicycle.",
    "Write a short poem about the first snow of winter.",
    "Explain how to make a monthly household budget.",
    "Write an announcement for a neighbourhood clean-up day.",
    "Describe how bees make honey.",
    "Write a message to a teacher asking for feedback on an essay.",
    "Explain what happens when you boil water high up in the mountains.",
    "Write instructions for feeding a neighbour's cat while they are away.",
    "Describe a memorable meal you shared with family.",
    "Explain how to prepare for a job interview.",
    "Write a short bedtime story about a sleepy owl.",
    "Give advice for keeping houseplants alive in winter.",
    "Explain how a magnetic compass works.",
    "Write a complaint to a delivery company about a late package.",
    "Describe how to brew a good cup of tea.",
    "Write a short blog post about learning to juggle.",
    "Explain how paper is recycled.",
    "Write a message congratulating a cousin on finishing school.",
    "Describe the view from a hilltop at sunrise.",
    "Explain how to start running as a complete beginner.",
    "Write a note for a lost-and-found board about a set of keys you found.",
    "Explain why the sky looks blue during the day.",
    "Write a short guide to organising a cluttered desk.",
    "Describe how a train timetable helps commuters plan their day.",
    "Write a welcome message for guests staying in a holiday cottage.",
    "Explain how to save energy at home during winter.",
    "Write a short fable about a tortoise who learns to ask for help.",
    "Give tips for studying for an exam without cramming.",
    "Explain how a microwave oven heats food.",
    "Write an invitation to a small picnic in the park.",
    "Describe how to care for a pair of leather boots.",
    "Write a toast for a friend's wedding anniversary.",
    "Explain how the moon causes the tides.",
    "Write a letter to a local newspaper about the need for more bike lanes.",
    "Describe a typical day for a lighthouse keeper.",
    "Explain how to teach a puppy to sit.",
    "Write a note to a babysitter explaining the evening routine.",
    "Give advice for making friends after moving to a new city.",
    "Explain how a thermostat controls the temperature of a room.",
    "Write a short review of a board game for families.",
    "Describe how to bake bread at home without a bread machine.",
    "Write an apology to a friend for missing their concert.",
    "Write a short description of a quiet village market.",
    "Explain how to write a useful shopping list.",
    "Write a message to your team announcing a new meeting schedule.",
    "Describe how to fold a paper boat.",
    "Explain why it is important to back up computer files.",
    "Write a short diary entry about a rainy afternoon.",
    "Give tips for a first camping trip.",
    "Explain how solar panels turn sunlight into electricity.",
    "Write a short message asking a friend to return a borrowed book.",
];

/// Questions that can be answered yes, no or maybe; the only tasks `constrained_response` is attached to.
const YES_NO_TASKS: &[&str] = &[
    "Is it a good idea to learn a musical instrument as an adult?",
    "Should a beginner buy a second-hand bicycle rather than a new one?",
    "Is it worth keeping a paper diary when everyone has a smartphone?",
    "Can a small balcony be used to grow vegetables?",
    "Should children keep a regular bedtime on weekends?",
    "Is walking to work better than driving for short distances?",
    "Is it rude to arrive early to a dinner party?",
    "Can reading before bed help you fall asleep?",
    "Should you rinse rice before cooking it?",
    "Is it worth repairing an old pair of shoes instead of buying new ones?",
    "Would a cat be a good pet for someone who travels often?",
    "Is it helpful to write a to-do list every morning?",
    "Should a small town build a public swimming pool?",
    "Can houseplants make a room feel more pleasant to work in?",
    "Is it sensible to carry some cash when travelling abroad?",
    "Should a family cook together at least once a week?",
];

/// Words for `keywords:existence` and `keywords:frequency`.
const KEYWORD_POOL: &[&str] = &[
    "window",
    "morning",
    "patience",
    "river",
    "lantern",
    "kitchen",
    "journey",
    "garden",
    "balance",
    "weather",
    "coffee",
    "bicycle",
    "library",
    "evening",
    "ladder",
    "harbour",
    "blanket",
    "compass",
    "orchard",
    "pocket",
    "signal",
    "meadow",
    "thunder",
    "candle",
    "ticket",
    "market",
    "valley",
    "pencil",
    "mirror",
    "bridge",
    "village",
    "season",
    "recipe",
    "puzzle",
    "battery",
    "feather",
    "planet",
    "budget",
    "schedule",
    "neighbour",
];

/// Filler words for `keywords:forbidden_words`: avoiding them is a real (stylistic) constraint.
const FORBIDDEN_POOL: &[&str] = &[
    "very",
    "really",
    "just",
    "thing",
    "things",
    "good",
    "nice",
    "great",
    "important",
    "basically",
    "actually",
    "simply",
    "definitely",
    "amazing",
    "stuff",
    "lot",
    "easy",
    "get",
    "make",
    "however",
];

const FIRST_WORDS: &[&str] = &[
    "today",
    "first",
    "honestly",
    "meanwhile",
    "finally",
    "overall",
    "luckily",
    "sometimes",
    "remember",
    "imagine",
    "next",
    "still",
    "perhaps",
    "later",
];

/// End phrases (no commas, so they combine with `no_comma`).
const END_PHRASES: &[&str] = &[
    "Let me know if you have any questions.",
    "Thanks for reading!",
    "That is all for now.",
    "Is there anything else I can help with?",
    "Have a wonderful day.",
    "Talk soon.",
    "Any other questions?",
    "Hope this helps.",
];

const LANGUAGES: &[(&str, &str)] = &[
    ("de", "German"),
    ("fr", "French"),
    ("es", "Spanish"),
    ("it", "Italian"),
    ("pt", "Portuguese"),
    ("nl", "Dutch"),
    ("fi", "Finnish"),
    ("sw", "Swahili"),
    ("vi", "Vietnamese"),
    ("ru", "Russian"),
    ("hi", "Hindi"),
    ("ar", "Arabic"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("zh", "Chinese"),
];

const SECTION_SPLITTERS: &[&str] = &["Section", "SECTION", "Part", "PART"];
const TITLE_EXAMPLES: &[&str] = &["a short title", "notes for a friend", "the plan", "morning thoughts"];
const PLACEHOLDER_NAMES: &[&str] =
    &["name", "date", "address", "time", "place", "phone number", "email", "city", "company", "signature"];
const ORDINALS: &[&str] = &["first", "second", "third", "fourth", "fifth", "sixth", "seventh"];

/// Up to `n` training prompts from `seed`: the same seed always gives the same prompts. Each combines a base task
/// with 1-3 compatible constraints drawn from all 25 IFEval ids.
pub fn generate_instruction_prompts(n: usize, seed: u64) -> Vec<GeneratedInstructionPrompt> {
    generate(n, seed, false)
}

/// Like [`generate_instruction_prompts`], but every constraint is [`constructible`], so that [`make_compliant`] can
/// turn plain replies into compliant warm-start targets.
pub fn generate_constructible_prompts(n: usize, seed: u64) -> Vec<GeneratedInstructionPrompt> {
    generate(n, seed, true)
}

fn generate(n: usize, seed: u64, constructible_only: bool) -> Vec<GeneratedInstructionPrompt> {
    // Separate streams for the two generators so the constructible prompts are not a prefix-shaped subset of the
    // general ones for the same seed.
    let stream = if constructible_only { 0x636f_6e73 } else { 0x616c_6c00 };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ stream);
    (0..n).map(|i| generate_one(&format!("ifgen-{seed:x}-{i}"), &mut rng, constructible_only)).collect()
}

fn generate_one(id: &str, rng: &mut ChaCha8Rng, constructible_only: bool) -> GeneratedInstructionPrompt {
    let yes_no = rng.random_bool(0.2);
    let tasks = if yes_no { YES_NO_TASKS } else { BASE_TASKS };
    let base_task = tasks.choose(rng).copied().unwrap_or(BASE_TASKS[0]);
    let wanted = rng.random_range(1..=3usize);
    let mut pool: Vec<&'static str> = INSTRUCTION_IDS
        .iter()
        .copied()
        .filter(|i| !constructible_only || constructible(i))
        .filter(|i| yes_no || *i != CONSTRAINED)
        .collect();
    pool.shuffle(rng);
    if yes_no && rng.random_bool(0.5) {
        if let Some(at) = pool.iter().position(|i| *i == CONSTRAINED) {
            pool.swap(0, at);
        }
    }
    let mut chosen: Vec<&'static str> = Vec::new();
    for candidate in pool {
        if chosen.len() == wanted {
            break;
        }
        if chosen.iter().all(|c| compatible(c, candidate)) {
            chosen.push(candidate);
        }
    }
    // The end phrase is picked after the keyword constraints (to avoid their words) and the repeat instruction last
    // (it repeats everything before it). The sort is stable, so the rest keeps its random order.
    chosen.sort_by_key(|i| match *i {
        END_CHECKER => 1,
        REPEAT_PROMPT => 2,
        _ => 0,
    });
    let mut avoid: Vec<&'static str> = Vec::new();
    let mut sentences: Vec<String> = Vec::new();
    let mut instructions = Vec::new();
    for &instruction_id in &chosen {
        if instruction_id == REPEAT_PROMPT {
            let request = join_request(base_task, &sentences);
            let text = pick(
                rng,
                &[
                    "Before answering, repeat the request above word for word without change (say nothing before it, \
                     and do not repeat this sentence), then give your answer.",
                    "First repeat the request above exactly as written, with nothing before it, then give your answer; \
                     this sentence is not part of the request to repeat.",
                ],
            );
            instructions.push(Instruction::new(REPEAT_PROMPT, json!({ "prompt_to_repeat": request })));
            sentences.push(text.to_owned());
            continue;
        }
        let (kwargs, text) = constraint(instruction_id, rng, &mut avoid);
        instructions.push(Instruction::new(instruction_id, kwargs));
        sentences.push(text);
    }
    // The repeat instruction goes on its own line, after the request it refers to.
    let prompt = match chosen.last() {
        Some(&REPEAT_PROMPT) if !sentences.is_empty() => {
            let last = sentences.len() - 1;
            format!("{}\n{}", join_request(base_task, &sentences[..last]), sentences[last])
        }
        _ => join_request(base_task, &sentences),
    };
    GeneratedInstructionPrompt { id: id.to_owned(), prompt, instructions, base_task: base_task.to_owned() }
}

fn join_request(base_task: &str, sentences: &[String]) -> String {
    let mut out = base_task.to_owned();
    for s in sentences {
        out.push(' ');
        out.push_str(s);
    }
    out
}

fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options.choose(rng).copied().unwrap_or("")
}

/// Chooses `k` distinct words from `pool` that are not in `avoid`, and adds them to `avoid`.
fn pick_words(
    rng: &mut ChaCha8Rng,
    pool: &[&'static str],
    k: usize,
    avoid: &mut Vec<&'static str>,
) -> Vec<&'static str> {
    let free: Vec<&'static str> = pool.iter().copied().filter(|w| !avoid.contains(w)).collect();
    let words: Vec<&'static str> = free.choose_multiple(rng, k).copied().collect();
    avoid.extend(words.iter().copied());
    words
}

/// `"a"`, `"a" and "b"`, `"a", "b" and "c"` (with `or` for alternatives).
fn quoted_list(words: &[&str], conjunction: &str) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

fn relation_of(rng: &mut ChaCha8Rng) -> &'static str {
    if rng.random_bool(0.5) {
        "at least"
    } else {
        "less than"
    }
}

/// Random kwargs for one constraint and a sentence stating exactly what its check verifies.
fn constraint(id: &'static str, rng: &mut ChaCha8Rng, avoid: &mut Vec<&'static str>) -> (Value, String) {
    match id {
        KEYWORDS_EXISTENCE => {
            let k = rng.random_range(1..=3);
            let words = pick_words(rng, KEYWORD_POOL, k, avoid);
            let list = quoted_list(&words, "and");
            let noun = if words.len() == 1 { "keyword" } else { "keywords" };
            let text = match rng.random_range(0..3) {
                0 => format!("Include the {noun} {list} in your response (any capitalisation counts)."),
                1 => format!("Make sure your reply contains the text {list}; upper or lower case both count."),
                _ => format!("Somewhere in your answer, use the {noun} {list} (capitalisation does not matter)."),
            };
            (json!({ "keywords": words }), text)
        }
        KEYWORDS_FREQUENCY => {
            let word = pick_words(rng, KEYWORD_POOL, 1, avoid).first().copied().unwrap_or("river");
            let relation = relation_of(rng);
            let frequency: u64 = if relation == "at least" { rng.random_range(1..=4) } else { rng.random_range(1..=3) };
            let rule = "counting every occurrence in any capitalisation, including inside longer words";
            let text = match (relation, frequency) {
                ("less than", 1) => format!("Do not use the word \"{word}\" at all ({rule})."),
                ("at least", 1) => format!("Use the word \"{word}\" at least once ({rule})."),
                ("at least", f) => match rng.random_range(0..2) {
                    0 => format!("Use the word \"{word}\" at least {f} times ({rule})."),
                    _ => format!("The word \"{word}\" should appear at least {f} times in your response ({rule})."),
                },
                (_, f) => match rng.random_range(0..2) {
                    0 => format!("Use the word \"{word}\" fewer than {f} times ({rule})."),
                    _ => format!("The word \"{word}\" should appear less than {f} times in your response ({rule})."),
                },
            };
            (json!({ "keyword": word, "frequency": frequency, "relation": relation }), text)
        }
        FORBIDDEN_WORDS => {
            let k = rng.random_range(1..=3);
            let words = pick_words(rng, FORBIDDEN_POOL, k, avoid);
            let list = quoted_list(&words, "or");
            let noun = if words.len() == 1 { "word" } else { "words" };
            let text = match rng.random_range(0..3) {
                0 => format!(
                    "Do not use the {noun} {list} anywhere in your response (as whole words, in any \
                     capitalisation)."
                ),
                1 => format!("Avoid the {noun} {list} completely (as whole words, whatever the capitalisation)."),
                _ => format!("Your reply must not contain the {noun} {list} as whole words, in any capitalisation."),
            };
            (json!({ "forbidden_words": words }), text)
        }
        LETTER_FREQUENCY => {
            let relation = relation_of(rng);
            let (letter, frequency): (&str, u64) = if relation == "at least" {
                (pick(rng, &["e", "t", "a", "o", "i", "n", "s", "r", "h", "l"]), rng.random_range(5..=30))
            } else {
                (pick(rng, &["z", "q", "x", "j"]), rng.random_range(2..=6))
            };
            let text = match (relation, rng.random_range(0..2)) {
                ("at least", 0) => format!(
                    "The letter \"{letter}\" should appear at least {frequency} times in your response (upper and \
                     lower case both count)."
                ),
                ("at least", _) => {
                    format!(
                        "Use the letter \"{letter}\" at least {frequency} times in total, counting upper and lower \
                         case."
                    )
                }
                (_, 0) => format!(
                    "The letter \"{letter}\" should appear fewer than {frequency} times in your response (upper and \
                     lower case both count)."
                ),
                _ => format!(
                    "Use the letter \"{letter}\" less than {frequency} times in total, counting upper and lower case."
                ),
            };
            (json!({ "letter": letter, "let_frequency": frequency, "let_relation": relation }), text)
        }
        RESPONSE_LANGUAGE => {
            let (code, name) = LANGUAGES.choose(rng).copied().unwrap_or(("de", "German"));
            let text = match rng.random_range(0..3) {
                0 => format!("Your entire response should be in {name}; no other language is allowed."),
                1 => format!("Write your whole answer in {name} and do not use any other language."),
                _ => format!("Respond only in {name}."),
            };
            (json!({ "language": code }), text)
        }
        NUMBER_SENTENCES => {
            let relation = relation_of(rng);
            let n: u64 = if relation == "at least" { rng.random_range(3..=10) } else { rng.random_range(3..=8) };
            let rule = "a sentence ends with \".\", \"!\" or \"?\"";
            let text = match (relation, rng.random_range(0..2)) {
                ("at least", 0) => format!("Your response should contain at least {n} sentences ({rule})."),
                ("at least", _) => format!("Write at least {n} sentences ({rule})."),
                (_, 0) => format!("Your response should contain fewer than {n} sentences ({rule})."),
                _ => format!("Use less than {n} sentences in your answer ({rule})."),
            };
            (json!({ "num_sentences": n, "relation": relation }), text)
        }
        NUMBER_PARAGRAPHS => {
            let n: u64 = rng.random_range(2..=5);
            let text = match rng.random_range(0..3) {
                0 => format!(
                    "Your response should have exactly {n} paragraphs, separated from each other by the markdown \
                     divider ***."
                ),
                1 => format!("Write {n} paragraphs and put the markdown divider *** between consecutive paragraphs."),
                _ => format!("Split your answer into exactly {n} paragraphs separated by ***."),
            };
            (json!({ "num_paragraphs": n }), text)
        }
        NUMBER_WORDS => {
            let relation = relation_of(rng);
            let tens: u64 = if relation == "at least" { rng.random_range(5..=30) } else { rng.random_range(4..=20) };
            let n = tens * 10;
            let text = match (relation, rng.random_range(0..2)) {
                ("at least", 0) => format!("Answer with at least {n} words."),
                ("at least", _) => format!("Your response should be at least {n} words long."),
                (_, 0) => format!("Answer with fewer than {n} words."),
                _ => format!("Keep your response under {n} words."),
            };
            (json!({ "num_words": n, "relation": relation }), text)
        }
        NTH_PARAGRAPH => {
            let n: u64 = rng.random_range(2..=5);
            let nth: u64 = rng.random_range(1..=n);
            let word = pick(rng, FIRST_WORDS);
            let ordinal = ORDINALS.get(nth as usize - 1).copied().unwrap_or("first");
            let text = match rng.random_range(0..2) {
                0 => format!(
                    "Write exactly {n} paragraphs, separated by blank lines (two new lines) with no other blank lines, \
                     and start paragraph {nth} with the word \"{word}\"."
                ),
                _ => format!(
                    "Your response should have {n} paragraphs separated by two new lines and no other blank lines; \
                     the {ordinal} paragraph must start with the word \"{word}\"."
                ),
            };
            (json!({ "num_paragraphs": n, "nth_paragraph": nth, "first_word": word }), text)
        }
        PLACEHOLDERS => {
            let n: u64 = rng.random_range(1..=5);
            let amount =
                if n == 1 { "at least one placeholder".to_owned() } else { format!("at least {n} placeholders") };
            let text = match rng.random_range(0..2) {
                0 => format!("Include {amount} in square brackets, such as [name] or [address]."),
                _ => format!("Leave {amount} for the reader to fill in, written in square brackets like [date]."),
            };
            (json!({ "num_placeholders": n }), text)
        }
        POSTSCRIPT => {
            let marker = pick(rng, &["P.S.", "P.P.S"]);
            let text = match rng.random_range(0..2) {
                0 => format!("Add a postscript starting with \"{marker}\"."),
                _ => format!("Include a postscript that begins with \"{marker}\"."),
            };
            (json!({ "postscript_marker": marker }), text)
        }
        BULLETS => {
            let n: u64 = rng.random_range(2..=6);
            let text = match rng.random_range(0..2) {
                0 => format!(
                    "Your answer must contain exactly {n} markdown bullet points, each on its own line starting \
                     with \"* \", and no other line may start with \"*\" or \"-\"."
                ),
                _ => format!(
                    "Format the answer as exactly {n} markdown bullet points (\"* like this\"); do not start any \
                     other line with \"*\" or \"-\"."
                ),
            };
            (json!({ "num_bullets": n }), text)
        }
        CONSTRAINED => {
            let options = quoted_list(&CONSTRAINED_RESPONSE_OPTIONS, "or");
            let text = match rng.random_range(0..2) {
                0 => format!("Your response must contain one of these phrases, written exactly: {options}"),
                _ => format!("Make sure your reply includes the exact phrase {options}"),
            };
            (json!({}), text)
        }
        HIGHLIGHTS => {
            let n: u64 = rng.random_range(1..=4);
            let parts = if n == 1 { "one section".to_owned() } else { format!("{n} sections") };
            let text = match rng.random_range(0..2) {
                0 => format!("Highlight at least {parts} of your answer with markdown, i.e. *highlighted section*."),
                _ => format!("Use markdown to highlight at least {parts} of your response, for example *like this*."),
            };
            (json!({ "num_highlights": n }), text)
        }
        SECTIONS => {
            let n: u64 = rng.random_range(2..=5);
            let splitter = pick(rng, SECTION_SPLITTERS);
            let text = match rng.random_range(0..2) {
                0 => format!(
                    "Divide your response into at least {n} sections, marking the beginning of each with \
                     \"{splitter} X\", where X is its number ({splitter} 1, {splitter} 2, ...)."
                ),
                _ => format!(
                    "Your response must have {n} or more sections; start each one with \"{splitter}\" followed by its \
                     number, such as \"{splitter} 1\"."
                ),
            };
            (json!({ "section_spliter": splitter, "num_sections": n }), text)
        }
        JSON_FORMAT => {
            let text = pick(
                rng,
                &[
                    "Wrap your entire output in JSON format; you may use markdown code fences (```).",
                    "Your whole response must be valid JSON, optionally inside a markdown code block.",
                ],
            );
            (json!({}), text.to_owned())
        }
        TITLE => {
            let example = pick(rng, TITLE_EXAMPLES);
            let text = match rng.random_range(0..2) {
                0 => format!(
                    "Your answer must contain a title wrapped in double angular brackets, such as <<{example}>>."
                ),
                _ => format!("Give your response a title in double angular brackets, like <<{example}>>."),
            };
            (json!({}), text)
        }
        TWO_RESPONSES => {
            let text = pick(
                rng,
                &[
                    "Give two different responses, and separate them (and only them) with six asterisks: ******.",
                    "Write two different versions of your answer separated by six asterisks (******); do not use \
                     ****** anywhere else.",
                ],
            );
            (json!({}), text.to_owned())
        }
        END_CHECKER => {
            // Skip phrases containing a word another constraint of this prompt counts or forbids.
            let usable: Vec<&str> = END_PHRASES
                .iter()
                .copied()
                .filter(|p| !avoid.iter().any(|w| p.to_lowercase().contains(&w.to_lowercase())))
                .collect();
            let phrase = usable.choose(rng).copied().unwrap_or("Talk soon.");
            let text = match rng.random_range(0..2) {
                0 => {
                    format!("Finish your response with the exact phrase \"{phrase}\"; no other words should follow it.")
                }
                _ => format!("End your reply with \"{phrase}\" and nothing after it."),
            };
            (json!({ "end_phrase": phrase }), text)
        }
        CAPITAL_WORDS => {
            let relation = relation_of(rng);
            let n: u64 = if relation == "at least" { rng.random_range(2..=8) } else { rng.random_range(3..=10) };
            let text = match (relation, rng.random_range(0..2)) {
                ("at least", 0) => format!(
                    "In your response, words written entirely in capital letters (like \"NOTE\" or \"I\") should \
                     appear at least {n} times."
                ),
                ("at least", _) => {
                    format!("Use at least {n} words in all capital letters (single letters such as \"I\" count).")
                }
                (_, 0) => format!(
                    "In your response, words written entirely in capital letters (like \"NOTE\", or even \"I\") should \
                     appear fewer than {n} times."
                ),
                _ => format!("Use fewer than {n} words in all capital letters; note that \"I\" counts as one."),
            };
            (json!({ "capital_frequency": n, "capital_relation": relation }), text)
        }
        ENGLISH_CAPITAL => (
            json!({}),
            pick(
                rng,
                &[
                    "Your entire response should be in English and in all capital letters.",
                    "Write your whole answer in English, using capital letters only.",
                ],
            )
            .to_owned(),
        ),
        ENGLISH_LOWERCASE => (
            json!({}),
            pick(
                rng,
                &[
                    "Your entire response should be in English and in lowercase letters only; no capital letters \
                     are allowed.",
                    "Write everything in English using only lowercase letters, with no capitals at all.",
                ],
            )
            .to_owned(),
        ),
        NO_COMMA => (
            json!({}),
            pick(
                rng,
                &[
                    "Do not use any commas in your response.",
                    "Avoid commas entirely.",
                    "Refrain from using commas anywhere in your answer.",
                ],
            )
            .to_owned(),
        ),
        QUOTATION => (
            json!({}),
            pick(
                rng,
                &[
                    "Wrap your entire response in double quotation marks.",
                    "Put your whole answer inside double quotation marks (\"like this\").",
                ],
            )
            .to_owned(),
        ),
        // Every id of INSTRUCTION_IDS is handled above; an unknown id gets no constraint text.
        _ => (json!({}), String::new()),
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// Warm-start replies.

fn find<'a>(instructions: &'a [Instruction], id: &str) -> Option<&'a Map<String, Value>> {
    instructions.iter().find(|i| i.id == id).map(|i| &i.kwargs)
}

fn kwarg_usize(kwargs: &Map<String, Value>, name: &str) -> Option<usize> {
    kwargs.get(name)?.as_u64().and_then(|n| usize::try_from(n).ok())
}

fn kwarg_str<'a>(kwargs: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    kwargs.get(name)?.as_str().map(str::trim)
}

/// Rewrites a plain `reply` so that it passes [`check_strict`] for every instruction, or returns `None` when that is
/// not possible by transformation (for example 6 bullet points from a 3-sentence reply, or an instruction such as
/// `keywords:existence` that only a new reply can satisfy and the plain reply does not already satisfy).
///
/// Transformations, in order: placeholders are appended as an extra sentence; the sentences are regrouped into
/// bullet points, `***`-separated paragraphs or numbered sections, with highlighted (bold) sentences; then a title, a
/// postscript and the end phrase are added; commas are removed; the request is prepended for `repeat_prompt`; the
/// case is changed; the result is quoted or wrapped as `{"response": ...}` JSON. Every output is re-checked, so
/// `Some` always passes.
pub fn make_compliant(reply: &str, instructions: &[Instruction], prompt: &str) -> Option<String> {
    let plain = reply.trim();
    if plain.is_empty() || instructions.iter().any(|i| i.validate().is_err()) {
        return None;
    }
    let mut text = plain.to_owned();

    if let Some(kw) = find(instructions, PLACEHOLDERS) {
        let n = kwarg_usize(kw, "num_placeholders")?;
        // More placeholders than any real template has would only pad the reply (and could exhaust memory).
        if n > 100 {
            return None;
        }
        if n > 0 {
            let fields: Vec<String> = (0..n)
                .map(|i| match PLACEHOLDER_NAMES.get(i) {
                    Some(name) => format!("[{name}]"),
                    None => format!("[detail {}]", i + 1),
                })
                .collect();
            text = format!("{text} Details to fill in: {}.", fields.join(" "));
        }
    }

    let bullets = find(instructions, BULLETS).map(|kw| kwarg_usize(kw, "num_bullets"));
    let paragraphs = find(instructions, NUMBER_PARAGRAPHS).map(|kw| kwarg_usize(kw, "num_paragraphs"));
    let sections = find(instructions, SECTIONS)
        .map(|kw| Some((kwarg_usize(kw, "num_sections")?, kwarg_str(kw, "section_spliter")?.to_owned())));
    let highlights = find(instructions, HIGHLIGHTS).map(|kw| kwarg_usize(kw, "num_highlights"));
    let structures =
        usize::from(bullets.is_some()) + usize::from(paragraphs.is_some()) + usize::from(sections.is_some());
    if structures > 1 {
        return None;
    }
    let highlights = match highlights {
        Some(n) => n?,
        None => 0,
    };
    if structures == 1 || highlights > 0 {
        let mut sentences: Vec<String> = split_sentences(&text)
            .into_iter()
            .map(|s| {
                // One line per sentence, and no stray markdown stars that could open a bullet, a divider or a
                // highlight of their own.
                let flat = s.split_whitespace().collect::<Vec<_>>().join(" ").replace('*', "");
                flat.trim_start_matches(['-', '#', '>', '\u{2022}', ' ']).trim().to_owned()
            })
            .filter(|s| !s.is_empty())
            .collect();
        for sentence in sentences.iter_mut().take(highlights) {
            *sentence = format!("**{sentence}**");
        }
        if sentences.len() < highlights {
            return None;
        }
        text = if let Some(n) = bullets {
            group(&sentences, n?)?.iter().map(|g| format!("* {g}")).collect::<Vec<_>>().join("\n")
        } else if let Some(n) = paragraphs {
            group(&sentences, n?)?.join("\n\n***\n\n")
        } else if let Some(spec) = sections {
            let (n, splitter) = spec?;
            let groups = group(&sentences, n.max(1))?;
            groups
                .iter()
                .enumerate()
                .map(|(i, g)| format!("{splitter} {}\n{g}", i + 1))
                .collect::<Vec<_>>()
                .join("\n\n")
        } else {
            sentences.join(" ")
        };
    }

    if find(instructions, TITLE).is_some() {
        text = format!("<<My Answer>>\n\n{text}");
    }
    if let Some(kw) = find(instructions, POSTSCRIPT) {
        let marker = kwarg_str(kw, "postscript_marker")?;
        // `P.P.S` is conventionally written with a final period.
        let marker = if marker == "P.P.S" { "P.P.S." } else { marker };
        text = format!("{text}\n\n{marker} Thank you for reading.");
    }
    if let Some(kw) = find(instructions, END_CHECKER) {
        let phrase = kwarg_str(kw, "end_phrase")?;
        if !text.to_lowercase().ends_with(&phrase.to_lowercase()) {
            text = format!("{text}\n\n{phrase}");
        }
    }
    if find(instructions, NO_COMMA).is_some() {
        text = remove_commas(&text);
    }
    if let Some(kw) = find(instructions, REPEAT_PROMPT) {
        text = format!("{}\n\n{text}", kwarg_str(kw, "prompt_to_repeat")?);
    }
    if find(instructions, ENGLISH_LOWERCASE).is_some() {
        text = text.to_lowercase();
    }
    if find(instructions, ENGLISH_CAPITAL).is_some() {
        text = text.to_uppercase();
    }
    if find(instructions, QUOTATION).is_some() {
        // A quote glued to a leading bullet would stop that line from counting as a bullet, so it gets its own line;
        // the closing quote stays glued to the end, where the end-phrase check looks past quotes but not newlines.
        text = if text.starts_with(['*', '-']) { format!("\"\n{text}\"") } else { format!("\"{text}\"") };
    }
    if find(instructions, JSON_FORMAT).is_some() {
        text = serde_json::to_string(&json!({ "response": text })).ok()?;
    }

    let passes = instructions.iter().all(|i| check_strict(i, prompt, &text).unwrap_or(false));
    passes.then_some(text)
}

/// Splits `items` into `n` contiguous groups of sizes differing by at most one, each joined with spaces; `None` when
/// there are fewer items than groups.
fn group(items: &[String], n: usize) -> Option<Vec<String>> {
    if n == 0 || items.len() < n {
        return None;
    }
    let (size, extra) = (items.len() / n, items.len() % n);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for g in 0..n {
        let len = size + usize::from(g < extra);
        out.push(items[start..start + len].join(" "));
        start += len;
    }
    Some(out)
}

/// Removes commas without gluing words together: `a, b` -> `a b`, `1,000` -> `1000`, `a,b` -> `a b`.
fn remove_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        if c == ',' {
            let next = chars.peek().copied();
            let between_digits = prev.is_some_and(|p| p.is_ascii_digit()) && next.is_some_and(|n| n.is_ascii_digit());
            let needs_space = !between_digits && next.is_some_and(|n| !n.is_whitespace());
            if needs_space {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_has_a_phrasing_and_valid_kwargs() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for id in INSTRUCTION_IDS {
            if id == REPEAT_PROMPT {
                continue;
            }
            for _ in 0..20 {
                let (kwargs, text) = constraint(id, &mut rng, &mut Vec::new());
                assert!(!text.is_empty(), "{id}");
                Instruction::new(id, kwargs).validate().unwrap_or_else(|e| panic!("{id}: {e}"));
            }
        }
    }

    #[test]
    fn compatibility_is_symmetric_and_irreflexive() {
        for a in INSTRUCTION_IDS {
            assert!(!compatible(a, a));
            for b in INSTRUCTION_IDS {
                assert_eq!(compatible(a, b), compatible(b, a), "{a} {b}");
            }
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(remove_commas("a, b,c 1,000,"), "a b c 1000");
        let items: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        assert_eq!(group(&items, 2), Some(vec!["a b c".to_owned(), "d e".to_owned()]));
        assert_eq!(group(&items, 6), None);
        assert_eq!(quoted_list(&["a", "b", "c"], "or"), "\"a\", \"b\" or \"c\"");
    }

    #[test]
    fn task_list_is_large_enough() {
        assert!(BASE_TASKS.len() >= 60);
    }
}
