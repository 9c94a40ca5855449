//! Programmatic verifiers against the real data: GSM8K's reference solutions must score 1, every IFEval line must
//! parse, every one of the 25 instruction checks must accept a compliant and reject a non-compliant hand-written reply
//! (with kwargs taken from a real IFEval item), and generated training prompts must be deterministic, valid, disjoint
//! from IFEval and constructible.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use ethos_grade::verify::instructions::SUPPORTED_LANGUAGES;
use ethos_grade::verify::{
    check_loose, check_strict, constructible, detect_language, exact_match, extract_answer,
    generate_constructible_prompts, generate_instruction_prompts, gold_answer, make_compliant, parse_ifeval_line,
    Instruction, VerifyError, INSTRUCTION_IDS,
};
use serde_json::{json, Value};

fn data_file(relative: &str) -> String {
    // The shared data lives beside the repository (../shared/data), or where ETHOS_DATA_DIR points.
    let dir = std::env::var_os("ETHOS_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let path = dir.join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set ETHOS_DATA_DIR to the shared data directory)", path.display()))
}

// ---------------------------------------------------------------------------------------------------------------------
// GSM8K

fn gsm8k(split: &str) -> Vec<(String, String)> {
    data_file(&format!("gsm8k/{split}.jsonl"))
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("gsm8k line is JSON");
            (v["question"].as_str().expect("question").to_owned(), v["answer"].as_str().expect("answer").to_owned())
        })
        .collect()
}

#[test]
fn gsm8k_reference_solutions_score_one() {
    let train = gsm8k("train");
    assert!(train.len() >= 200);
    for (question, answer) in &train[..200] {
        let gold = gold_answer(answer).unwrap_or_else(|| panic!("no gold in answer to {question:?}"));
        assert!(exact_match(answer, &gold), "reference solution does not match its gold {gold}: {answer}");
        // A different number must not match.
        let wrong = format!("{}1", gold);
        assert!(!exact_match(answer, &wrong), "{answer} matched {wrong}");
    }
}

#[test]
fn gsm8k_every_gold_answer_parses() {
    for split in ["train", "test"] {
        for (_, answer) in gsm8k(split) {
            let gold = gold_answer(&answer).unwrap_or_else(|| panic!("{split}: no gold in {answer}"));
            assert!(exact_match(&answer, &gold), "{split}: {answer}");
            // Gold answers are integers, written with thousands separators at most.
            assert!(gold.trim_start_matches('-').chars().all(|c| c.is_ascii_digit()), "{split}: {gold}");
        }
    }
}

#[test]
fn gsm8k_extraction_from_model_style_replies() {
    let cases = [
        ("Natalia sold 48/2 = 24 clips in May, so 48 + 24 = 72 in total.", "72"),
        ("She earns $0.2 per minute, so for 50 minutes she earned $10.00.", "10"),
        ("Step 1: 5 * 3 = 15.\nThe answer is: 1,250 dollars. (Checked with 3 methods.)", "1250"),
        ("So the final answer: -7 degrees", "-7"),
        ("#### 18\nAlso I considered 20.", "18"),
        ("He needs 3/4 of a cup, i.e. 0.75.", "0.75"),
    ];
    for (reply, gold) in cases {
        assert!(exact_match(reply, gold), "{reply:?} vs {gold}: extracted {:?}", extract_answer(reply));
    }
    assert!(exact_match("The answer is .5", "0.5"));
    assert!(!exact_match("I don't know.", "0"));
    assert!(!exact_match("", "1"));
}

// ---------------------------------------------------------------------------------------------------------------------
// IFEval: data

fn ifeval_lines() -> Vec<String> {
    data_file("ifeval/input_data.jsonl").lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()
}

fn ifeval_prompts() -> Vec<String> {
    ifeval_lines().iter().map(|l| parse_ifeval_line(l).expect("parses").1).collect()
}

/// The instruction with `id` of the IFEval item with `key` (its first one when the item has several).
fn real(key: &str, id: &str) -> Instruction {
    for line in ifeval_lines() {
        let (k, _, instructions) = parse_ifeval_line(&line).expect("parses");
        if k == key {
            if let Some(found) = instructions.into_iter().find(|i| i.id == id) {
                return found;
            }
        }
    }
    panic!("IFEval item {key} has no instruction {id}");
}

#[test]
fn every_ifeval_line_parses_and_covers_all_ids() {
    let lines = ifeval_lines();
    assert_eq!(lines.len(), 541);
    let mut ids = BTreeSet::new();
    let mut count = 0;
    for line in &lines {
        let (key, prompt, instructions) = parse_ifeval_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(!key.is_empty() && !prompt.is_empty() && !instructions.is_empty());
        for i in instructions {
            // Kwargs are accepted by the checks, whatever the reply.
            check_strict(&i, &prompt, "A reply.").unwrap_or_else(|e| panic!("{key}: {e}"));
            ids.insert(i.id);
            count += 1;
        }
    }
    assert_eq!(count, 834);
    let expected: BTreeSet<String> = INSTRUCTION_IDS.iter().map(|s| s.to_string()).collect();
    assert_eq!(ids, expected);
}

#[test]
fn malformed_lines_name_the_field() {
    let field = |line: &str| match parse_ifeval_line(line) {
        Err(VerifyError::Field { field, .. }) => field,
        other => panic!("expected a field error for {line}, got {other:?}"),
    };
    assert_eq!(field(r#"{"prompt": "p", "instruction_id_list": [], "kwargs": []}"#), "key");
    assert_eq!(field(r#"{"key": 1, "instruction_id_list": [], "kwargs": []}"#), "prompt");
    assert_eq!(field(r#"{"key": 1, "prompt": 5, "instruction_id_list": [], "kwargs": []}"#), "prompt");
    assert_eq!(field(r#"{"key": 1, "prompt": "p", "instruction_id_list": "x", "kwargs": []}"#), "instruction_id_list");
    assert_eq!(field(r#"{"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"]}"#), "kwargs");
    assert_eq!(
        field(r#"{"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []}"#),
        "kwargs"
    );
    assert_eq!(
        field(r#"{"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [3]}"#),
        "kwargs[0]"
    );
    let err = parse_ifeval_line(
        r#"{"key": 1, "prompt": "p", "instruction_id_list": ["length_constraints:number_words"],
            "kwargs": [{"relation": "at least", "num_words": "many"}]}"#,
    )
    .expect_err("ill-typed kwarg");
    let message = err.to_string();
    assert!(message.contains("length_constraints:number_words") && message.contains("num_words"), "{message}");
    let err = parse_ifeval_line(r#"{"key": 1, "prompt": "p", "instruction_id_list": ["nope:nope"], "kwargs": [{}]}"#)
        .expect_err("unknown id");
    assert!(matches!(err, VerifyError::UnknownInstruction { ref id } if id == "nope:nope"), "{err}");
    assert!(matches!(parse_ifeval_line("not json"), Err(VerifyError::Json { .. })));
    assert!(matches!(parse_ifeval_line("[1, 2]"), Err(VerifyError::Json { .. })));
}

#[test]
fn bad_kwargs_are_clear_errors() {
    let err = |id: &str, kwargs: Value| {
        check_strict(&Instruction::new(id, kwargs), "", "reply").expect_err("should be rejected").to_string()
    };
    let m = err("keywords:frequency", json!({"keyword": "x", "frequency": 2}));
    assert!(m.contains("keywords:frequency") && m.contains("`relation`") && m.contains("missing"), "{m}");
    let m = err("keywords:frequency", json!({"keyword": "x", "frequency": 2, "relation": "at most"}));
    assert!(m.contains("`relation`"), "{m}");
    let m = err("keywords:letter_frequency", json!({"letter": "ab", "let_frequency": 2, "let_relation": "at least"}));
    assert!(m.contains("`letter`"), "{m}");
    let m = err("keywords:existence", json!({"keywords": "cat"}));
    assert!(m.contains("`keywords`") && m.contains("list of strings"), "{m}");
    let m = err("language:response_language", json!({"language": "xx"}));
    assert!(m.contains("`language`"), "{m}");
    let m = err(
        "length_constraints:nth_paragraph_first_word",
        json!({"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}),
    );
    assert!(m.contains("`nth_paragraph`"), "{m}");
    let m = err("detectable_content:number_placeholders", json!({"num_placeholders": -1}));
    assert!(m.contains("`num_placeholders`") && m.contains("non-negative integer"), "{m}");
    let m = err("startend:nothing", json!({}));
    assert!(m.contains("startend:nothing"), "{m}");
    // null counts as absent (the HuggingFace copy of IFEval fills unused kwargs with null), extra kwargs are ignored.
    let ok = Instruction::new("punctuation:no_comma", json!({"num_words": null, "relation": null}));
    assert_eq!(check_strict(&ok, "", "No commas"), Ok(true));
}

// ---------------------------------------------------------------------------------------------------------------------
// IFEval: the 25 checks, each with a passing and a failing reply, kwargs from real items.

/// Asserts that the strict check passes every reply of `pass` and fails every reply of `fail`.
fn expect(instruction: &Instruction, pass: &[&str], fail: &[&str]) {
    for reply in pass {
        assert_eq!(check_strict(instruction, "", reply), Ok(true), "{} should pass: {reply:?}", instruction.id);
    }
    for reply in fail {
        assert_eq!(check_strict(instruction, "", reply), Ok(false), "{} should fail: {reply:?}", instruction.id);
    }
}

#[test]
fn keywords_checks() {
    // 1069: keywords ["correlated", "experiencing"]; matches are case-insensitive and may sit inside longer words.
    expect(
        &real("1069", "keywords:existence"),
        &["We are EXPERIENCING weather that is correlated with the season.", "uncorrelated experiencings"],
        &["Only correlated data here.", ""],
    );
    // 1153: "story" at least 2 times.
    expect(&real("1153", "keywords:frequency"), &["This story is a Story.", "storyteller storybook"], &["One story."]);
    // A real "less than" item.
    let less = find_real("keywords:frequency", |k| k["relation"] == "less than");
    let word = less.kwargs["keyword"].as_str().unwrap_or_default().to_owned();
    let limit = less.kwargs["frequency"].as_u64().unwrap_or_default() as usize;
    let too_many = vec![word.as_str(); limit].join(" and ");
    let few = vec![word.as_str(); limit - 1].join(" and ") + " and nothing else";
    expect(&less, &[&few], &[&too_many]);
    // 1147: forbidden ["field", "thanks", "issue", "collaborator"], whole words only.
    expect(
        &real("1147", "keywords:forbidden_words"),
        &["Fields and thanksgiving and issues are fine.", "Nothing forbidden."],
        &["No ISSUE at all.", "Many thanks!", "my collaborator"],
    );
    // 1130: letter "t" less than 2; 1122: "#" at least 4.
    expect(&real("1130", "keywords:letter_frequency"), &["Hello world, I am fine.", "One T only."], &["That tent."]);
    expect(&real("1122", "keywords:letter_frequency"), &["#a #b #c #d"], &["#a #b #c"]);
}

/// The first real instruction with `id` whose kwargs satisfy `select`.
fn find_real(id: &str, select: impl Fn(&serde_json::Map<String, Value>) -> bool) -> Instruction {
    for line in ifeval_lines() {
        let (_, _, instructions) = parse_ifeval_line(&line).expect("parses");
        if let Some(found) = instructions.into_iter().find(|i| i.id == id && select(&i.kwargs)) {
            return found;
        }
    }
    panic!("no real {id} instruction matches");
}

/// One sentence per language that occurs in IFEval's `language:response_language` kwargs.
const LANGUAGE_SAMPLES: &[(&str, &str)] = &[
    ("ar", "القطة على الطاولة ولا تريد النزول لأنها كسولة."),
    ("bg", "Котката е на масата и не иска да слезе, защото е мързелива."),
    ("bn", "বিড়ালটি টেবিলের উপরে আছে এবং নিচে নামতে চায় না।"),
    ("de", "Die Katze ist auf dem Tisch und will nicht herunterkommen, weil sie faul ist."),
    ("fa", "گربه روی میز است و نمی‌خواهد پایین بیاید چون تنبل است."),
    ("fi", "Kissa on pöydällä eikä se halua tulla alas, koska se on laiska."),
    ("gu", "બિલાડી ટેબલ પર છે અને નીચે આવવા માંગતી નથી."),
    ("hi", "बिल्ली मेज़ पर है और नीचे नहीं आना चाहती क्योंकि वह आलसी है।"),
    ("it", "Il gatto è sul tavolo e non vuole scendere perché è pigro."),
    ("kn", "ಬೆಕ್ಕು ಮೇಜಿನ ಮೇಲೆ ಇದೆ ಮತ್ತು ಕೆಳಗೆ ಬರಲು ಬಯಸುವುದಿಲ್ಲ."),
    ("ko", "고양이가 탁자 위에 있고 내려오고 싶어하지 않아요."),
    ("mr", "मांजर टेबलावर आहे आणि तिला खाली यायचे नाही कारण ती आळशी आहे."),
    ("ne", "बिरालो टेबलमा छ र तल आउन चाहँदैन किनभने यो अल्छी छ।"),
    ("pa", "ਬਿੱਲੀ ਮੇਜ਼ ਉੱਤੇ ਹੈ ਅਤੇ ਹੇਠਾਂ ਨਹੀਂ ਆਉਣਾ ਚਾਹੁੰਦੀ।"),
    ("pt", "O gato está em cima da mesa e não quer descer porque é preguiçoso."),
    ("ru", "Кошка сидит на столе и не хочет слезать, потому что она ленивая."),
    ("sw", "Paka yuko juu ya meza na hataki kushuka kwa sababu ni mvivu."),
    ("ta", "பூனை மேசையின் மேல் உள்ளது, அது கீழே இறங்க விரும்பவில்லை."),
    ("te", "పిల్లి బల్ల మీద ఉంది మరియు కిందికి దిగాలని అనుకోవడం లేదు."),
    ("th", "แมวอยู่บนโต๊ะและไม่อยากลงมาเพราะมันขี้เกียจ"),
    ("ur", "بلی میز پر ہے اور نیچے نہیں آنا چاہتی کیونکہ وہ سست ہے۔"),
    ("vi", "Con mèo đang ở trên bàn và không muốn xuống vì nó lười."),
];

#[test]
fn response_language_for_every_language_in_ifeval() {
    let english = "The cat is on the table and it does not want to come down because it is lazy.";
    let mut seen = BTreeSet::new();
    for line in ifeval_lines() {
        let (key, _, instructions) = parse_ifeval_line(&line).expect("parses");
        for i in instructions.iter().filter(|i| i.id == "language:response_language") {
            let code = i.kwargs["language"].as_str().unwrap_or_default();
            let sample = LANGUAGE_SAMPLES
                .iter()
                .find(|(c, _)| *c == code)
                .unwrap_or_else(|| panic!("{key}: no sample for language {code}"))
                .1;
            expect(i, &[sample], &[english]);
            seen.insert(code.to_owned());
        }
    }
    assert_eq!(seen.len(), LANGUAGE_SAMPLES.len(), "every sample language occurs in IFEval");
    for (code, sample) in LANGUAGE_SAMPLES {
        assert_eq!(detect_language(sample), Some(*code), "{sample}");
        assert!(SUPPORTED_LANGUAGES.contains(code));
        // Other languages' samples are rejected: the detector does not say yes to everything.
        for (other, other_sample) in LANGUAGE_SAMPLES {
            if other != code {
                let instruction = Instruction::new("language:response_language", json!({ "language": code }));
                assert_eq!(check_strict(&instruction, "", other_sample), Ok(false), "{code} accepted {other}");
            }
        }
    }
}

#[test]
fn length_checks() {
    // 1174: less than 6 sentences; 1265: at least 31.
    expect(
        &real("1174", "length_constraints:number_sentences"),
        &["One. Two. Three.", "Dr. Smith arrived at 3.30 p.m. today. He left."],
        &["One. Two. Three. Four. Five. Six."],
    );
    let many = "This is a sentence. ".repeat(31);
    let fewer = "This is a sentence. ".repeat(30);
    expect(&real("1265", "length_constraints:number_sentences"), &[&many], &[&fewer]);
    // 1082: exactly 2 paragraphs separated by ***.
    expect(
        &real("1082", "length_constraints:number_paragraphs"),
        &["First paragraph.\n\n***\n\nSecond paragraph.", "***\nOne.\n***\nTwo.\n***"],
        &["Just one paragraph.", "A\n***\nB\n***\nC", "A\n***\n\n***\nB"],
    );
    // 1000: at least 300 words.
    let words_300 = "word ".repeat(300);
    let words_299 = "word ".repeat(299);
    expect(&real("1000", "length_constraints:number_words"), &[&words_300], &[&words_299]);
    let under = find_real("length_constraints:number_words", |k| k["relation"] == "less than");
    let limit = under.kwargs["num_words"].as_u64().unwrap_or_default() as usize;
    expect(&under, &[&"word ".repeat(limit - 1)], &[&"word ".repeat(limit)]);
    // 1609: 4 paragraphs separated by blank lines, the first starting with "weekend".
    expect(
        &real("1609", "length_constraints:nth_paragraph_first_word"),
        &["\"Weekend, plans.\n\nSecond.\n\nThird.\n\nFourth.", "WEEKEND is near.\n\nB\n\nC\n\nD"],
        &["Weekends are fun.\n\nB\n\nC\n\nD", "Weekend.\n\nB\n\nC", "Hello.\n\nWeekend\n\nC\n\nD"],
    );
}

#[test]
fn content_checks() {
    // 1005: at least 12 placeholders.
    let twelve: String = (0..12).map(|i| format!("[field {i}] ")).collect();
    let eleven: String = (0..11).map(|i| format!("[field {i}] ")).collect();
    expect(&real("1005", "detectable_content:number_placeholders"), &[&twelve], &[&eleven]);
    // 1219: P.S.; 1246: P.P.S.
    expect(
        &real("1219", "detectable_content:postscript"),
        &["Body.\n\nP.S. Bring snacks.", "Body.\n  p. s. lower case works too", "Body. P.S. mid-line counts too."],
        &["Body. PS bring snacks.", "Body without a postscript."],
    );
    expect(&real("1246", "detectable_content:postscript"), &["Body\nP.P.S. More"], &["Body\nP.S. More"]);
}

#[test]
fn format_checks() {
    // 102: exactly 3 bullets (`*` or `-`).
    expect(
        &real("102", "detectable_format:number_bullet_lists"),
        &["Intro\n* a\n* b\n- c", "  * a\n  * b\n  * c\n**Bold line**"],
        &["* a\n* b", "* a\n* b\n* c\n- d"],
    );
    // 227: one of the three fixed answers.
    expect(
        &real("227", "detectable_format:constrained_response"),
        &["I think so. My answer is yes.", "My answer is maybe."],
        &["Yes, definitely.", "my answer is yes."],
    );
    // 1000: at least 3 highlighted sections.
    expect(
        &real("1000", "detectable_format:number_highlighted_sections"),
        &["*one* and *two* and **three**"],
        &["*one* and **two**", "** ** and * * and *three*"],
    );
    // 1127: at least 4 sections marked "SECTION X" (case-sensitive).
    expect(
        &real("1127", "detectable_format:multiple_sections"),
        &["SECTION 1\na\nSECTION 2\nb\nSECTION 3\nc\nSECTION 4\nd"],
        &["Section 1\na\nSection 2\nb\nSection 3\nc\nSection 4\nd", "SECTION 1\na\nSECTION 2\nb\nSECTION 3\nc"],
    );
    // 1075: JSON, optionally fenced.
    expect(
        &real("1075", "detectable_format:json_format"),
        &["```json\n{\"a\": [1, 2]}\n```", "  {\"response\": \"text\"}  ", "```\n[1, 2]\n```"],
        &["Here is JSON: {\"a\": 1}", "{'a': 1}", "```json\n{\"a\": 1,}\n```"],
    );
    // 1012: a title in double angular brackets.
    expect(
        &real("1012", "detectable_format:title"),
        &["<<Resignation>>\n\nDear boss,", "Intro <<a title>> text"],
        &["Resignation\n\nDear boss,", "<<   >> empty", "<<split\ntitle>>"],
    );
}

#[test]
fn combination_checks() {
    // 1098: two different responses separated by ******.
    expect(
        &real("1098", "combination:two_responses"),
        &["Answer one.\n******\nAnswer two.", "******\nA\n******\nB\n******"],
        &["Same.\n******\nSame.", "A\n******\nB\n******\nC", "A\n******\n\n******\nB", "Only one."],
    );
    // 1139: repeat the request verbatim first (case-insensitive).
    let instruction = real("1139", "combination:repeat_prompt");
    let request = instruction.kwargs["prompt_to_repeat"].as_str().unwrap_or_default().to_owned();
    let repeated = format!("{request}\n\nMom, mother, all the same.");
    let shouted = format!("  {}\nHaiku here.", request.to_uppercase());
    let preamble = format!("Sure! {request}\nHaiku.");
    expect(&instruction, &[&repeated, &shouted], &[&preamble, "Write a funny haiku."]);
}

#[test]
fn start_end_and_case_checks() {
    // 1127: end with the exact phrase.
    expect(
        &real("1127", "startend:end_checker"),
        &[
            "Some text. Can I get my money back for the classes I missed?",
            "\"Some text. can i get my money back for the classes i missed?\"\n",
        ],
        &["Can I get my money back for the classes I missed? Thanks.", "Some text."],
    );
    // 1040: capital words less than 10 (and its second instruction: at least 1).
    expect(
        &real("1040", "change_case:capital_word_frequency"),
        &["I LOVE it.", "no capitals"],
        &["ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN words"],
    );
    let at_least = find_real("change_case:capital_word_frequency", |k| k["capital_relation"] == "at least");
    let n = at_least.kwargs["capital_frequency"].as_u64().unwrap_or_default() as usize;
    expect(&at_least, &[&"WORD ".repeat(n)], &[&"WORD ".repeat(n - 1)]);
    // 1021: all capitals, in English.
    expect(
        &real("1021", "change_case:english_capital"),
        &["THIS IS ALL IN CAPITAL LETTERS AND IT IS ENGLISH.", "HELLO 123"],
        &["This is not all capitals.", "DIE KATZE IST NICHT AUF DEM TISCH UND DAS IST GUT.", "123"],
    );
    // 1019: all lower case, in English.
    expect(
        &real("1019", "change_case:english_lowercase"),
        &["this is all lower case and it is english.", "ok"],
        &["This is Not.", "die katze ist nicht auf dem tisch und das ist gut."],
    );
    // 1000: no commas.
    expect(
        &real("1000", "punctuation:no_comma"),
        &["No commas here. None!", "Ideographic comma 、 is fine"],
        &["Well, no.", "", "   "],
    );
    // 1040: wrapped in double quotes.
    expect(
        &real("1040", "startend:quotation"),
        &["\"Quoted reply.\"", "  \"\"  "],
        &["Quoted reply.", "\"", "\u{201C}Curly quotes.\u{201D}", "\"Unclosed"],
    );
}

#[test]
fn every_id_is_exercised_by_the_tests_above() {
    // The tests above name these ids; this guards the claim "every one of the 25" against a silently dropped id.
    let tested = [
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
    let tested: BTreeSet<&str> = tested.into_iter().collect();
    let all: BTreeSet<&str> = INSTRUCTION_IDS.into_iter().collect();
    assert_eq!(tested, all);
}

#[test]
fn loose_scoring_forgives_preambles_and_markdown() {
    let quotation = real("1040", "startend:quotation");
    let reply = "Sure, here it is:\n\"Quoted reply.\"";
    assert_eq!(check_strict(&quotation, "", reply), Ok(false));
    assert_eq!(check_loose(&quotation, "", reply), Ok(true));
    let first_word = real("1609", "length_constraints:nth_paragraph_first_word");
    let reply = "**Weekend** plans.\n\nB\n\nC\n\nD";
    assert_eq!(check_strict(&first_word, "", reply), Ok(false));
    assert_eq!(check_loose(&first_word, "", reply), Ok(true));
    let end = real("1127", "startend:end_checker");
    let reply = "Text. Can I get my money back for the classes I missed?\nHope this helps!";
    assert_eq!(check_strict(&end, "", reply), Ok(false));
    assert_eq!(check_loose(&end, "", reply), Ok(true));
    // Loose is never stricter than strict, and an empty reply still fails.
    let no_comma = real("1000", "punctuation:no_comma");
    assert_eq!(check_loose(&no_comma, "", ""), Ok(false));
    assert_eq!(check_loose(&no_comma, "", "a, b"), Ok(false));
    assert_eq!(check_loose(&no_comma, "", "a, b\nno commas\nc, d"), Ok(true));
}

#[test]
fn adversarial_replies_never_panic_and_stay_linear() {
    // Every real instruction of IFEval against odd replies.
    let odd = [
        "",
        " \n\t ",
        "\u{0}\u{FEFF}\u{200B}",
        "*",
        "**",
        "***",
        "******",
        "<<>>",
        "[",
        "]]][[[",
        "\"",
        "P.",
        "```",
        "```json",
        "İıßẞǅ ǈ ﬁ",
        "🙂🙂🙂. 🙂? 🙂!",
        "1. 2. 3.",
        "a\n\n\n\n\n",
    ];
    for line in ifeval_lines() {
        let (_, prompt, instructions) = parse_ifeval_line(&line).expect("parses");
        for instruction in &instructions {
            for reply in odd {
                check_strict(instruction, &prompt, reply).expect("valid kwargs");
                check_loose(instruction, &prompt, reply).expect("valid kwargs");
            }
        }
    }
    // A 2 MB reply mixing every structure the checks look at, once per id (strict) and as a 200 kB reply (loose).
    let chunk =
        "Mr. Smith said *hi* and **bye**, [name] <<t>> SECTION 1\n* item\n- item\n***\n\nP.S. ünïcödé 日本語。 ";
    let huge = chunk.repeat(2_000_000 / chunk.len());
    let medium = chunk.repeat(200_000 / chunk.len());
    let mut seen = BTreeSet::new();
    for line in ifeval_lines() {
        let (_, prompt, instructions) = parse_ifeval_line(&line).expect("parses");
        for instruction in instructions {
            if !seen.insert(instruction.id.clone()) {
                continue;
            }
            let started = Instant::now();
            check_strict(&instruction, &prompt, &huge).expect("valid kwargs");
            check_loose(&instruction, &prompt, &medium).expect("valid kwargs");
            // Generous bound for a debug build on a loaded machine; quadratic behaviour would take minutes.
            assert!(started.elapsed().as_secs() < 30, "{} took {:?}", instruction.id, started.elapsed());
        }
    }
    assert_eq!(seen.len(), 25);
}

// ---------------------------------------------------------------------------------------------------------------------
// Generated training prompts

/// A plain multi-sentence reply, written without any constraint in mind.
const PLAIN_REPLY: &str = "Thank you for asking about the community garden. We meet every Saturday morning at nine. \
    New members are always welcome, and no experience is needed. Please bring gloves and a water bottle. We share the \
    tools, so you do not need to buy anything. The harvest is split among everyone who helps. Last year we grew \
    tomatoes, beans and squash. I hope to see you there soon.";

#[test]
fn generation_is_deterministic_per_seed() {
    let a = generate_instruction_prompts(300, 11);
    assert_eq!(a.len(), 300);
    assert_eq!(a, generate_instruction_prompts(300, 11));
    assert_ne!(a, generate_instruction_prompts(300, 12));
    let c = generate_constructible_prompts(300, 11);
    assert_eq!(c, generate_constructible_prompts(300, 11));
    assert_ne!(c, generate_constructible_prompts(300, 12));
    // Ids are unique and the first prompts do not depend on how many are asked for.
    let ids: BTreeSet<&str> = a.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), a.len());
    assert_eq!(generate_instruction_prompts(10, 11)[..], a[..10]);
}

#[test]
fn generated_prompts_are_valid_varied_and_not_from_ifeval() {
    let generated = generate_instruction_prompts(2000, 3);
    let mut ids = BTreeSet::new();
    let mut tasks = BTreeSet::new();
    for p in &generated {
        assert!((1..=3).contains(&p.instructions.len()), "{}", p.prompt);
        assert!(p.prompt.starts_with(&p.base_task));
        tasks.insert(p.base_task.clone());
        for i in &p.instructions {
            // The checker accepts the kwargs.
            check_strict(i, &p.prompt, PLAIN_REPLY).unwrap_or_else(|e| panic!("{}: {e}", p.prompt));
            ids.insert(i.id.clone());
            if i.id == "combination:repeat_prompt" {
                let request = i.kwargs["prompt_to_repeat"].as_str().unwrap_or_default();
                assert!(p.prompt.starts_with(request) && request.len() < p.prompt.len(), "{}", p.prompt);
            }
        }
        let distinct: BTreeSet<&str> = p.instructions.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(distinct.len(), p.instructions.len(), "duplicate constraint in {}", p.prompt);
    }
    assert_eq!(ids.len(), 25, "every id is generated: {ids:?}");
    assert!(tasks.len() >= 70, "only {} base tasks used", tasks.len());
    let ifeval = ifeval_prompts();
    for p in generated.iter().chain(&generate_constructible_prompts(1000, 3)) {
        for prompt in &ifeval {
            assert!(!p.prompt.contains(prompt.as_str()), "generated prompt contains IFEval prompt {prompt:?}");
            assert!(!prompt.contains(&p.base_task), "base task {:?} is taken from IFEval", p.base_task);
        }
    }
}

#[test]
fn make_compliant_builds_passing_replies() {
    let prompts = generate_constructible_prompts(500, 5);
    let mut built = 0;
    for p in &prompts {
        assert!(p.instructions.iter().all(|i| constructible(&i.id)), "{}", p.prompt);
        if let Some(reply) = make_compliant(PLAIN_REPLY, &p.instructions, &p.prompt) {
            built += 1;
            for i in &p.instructions {
                assert_eq!(check_strict(i, &p.prompt, &reply), Ok(true), "{}\n{:?}\n---\n{reply}", p.prompt, i);
            }
        }
    }
    assert!(built * 100 >= prompts.len() * 80, "make_compliant succeeded for only {built} of {}", prompts.len());
    // The general generator's constructible prompts work too, and non-constructible ones never yield a failing reply.
    for p in generate_instruction_prompts(500, 6) {
        if let Some(reply) = make_compliant(PLAIN_REPLY, &p.instructions, &p.prompt) {
            for i in &p.instructions {
                assert_eq!(check_strict(i, &p.prompt, &reply), Ok(true), "{}\n{reply}", p.prompt);
            }
        }
    }
    assert_eq!(make_compliant("", &prompts[0].instructions, &prompts[0].prompt), None);
}

#[test]
fn make_compliant_examples() {
    let instructions = [
        Instruction::new("detectable_format:number_bullet_lists", json!({"num_bullets": 3})),
        Instruction::new("punctuation:no_comma", json!({})),
        Instruction::new("change_case:english_lowercase", json!({})),
        Instruction::new("detectable_content:postscript", json!({"postscript_marker": "P.P.S"})),
    ];
    let reply = make_compliant(PLAIN_REPLY, &instructions, "").expect("constructible");
    assert_eq!(reply.lines().filter(|l| l.starts_with("* ")).count(), 3, "{reply}");
    assert!(!reply.contains(',') && reply == reply.to_lowercase() && reply.contains("p.p.s."), "{reply}");

    let json_reply = make_compliant(PLAIN_REPLY, &[Instruction::new("detectable_format:json_format", json!({}))], "")
        .expect("constructible");
    let value: Value = serde_json::from_str(&json_reply).expect("JSON");
    assert_eq!(value["response"], PLAIN_REPLY);

    // Too few sentences for the requested structure.
    let six = [Instruction::new("length_constraints:number_paragraphs", json!({"num_paragraphs": 6}))];
    assert_eq!(make_compliant("One sentence only.", &six, ""), None);
    // A constraint only a new reply can meet.
    let keywords = [Instruction::new("keywords:existence", json!({"keywords": ["lantern"]}))];
    assert_eq!(make_compliant(PLAIN_REPLY, &keywords, ""), None);
    assert!(make_compliant("We need a lantern.", &keywords, "").is_some());
    assert!(!constructible("keywords:existence") && constructible("startend:quotation"));
}
