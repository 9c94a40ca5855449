//! Splits a reply into sentences for the semantic judge.
//!
//! Replies are prose mixed with markdown: paragraphs, bullet and numbered lists, headings. Every line break that
//! starts a new paragraph, list item or heading ends a sentence (list items often have no final period); within a
//! line a sentence ends at `.`, `!`, `?` or `…` followed by white space, unless the next word starts with a
//! lowercase letter (`etc. and`), or the period closes a known abbreviation (`Dr.`, `vs.`), an initial (`J.`)
//! or a dotted abbreviation (`e.g.`, `U.S.`). Periods inside tokens (`3.5`, `example.com`) never split. A line
//! that does not end a sentence and is followed by a line starting in lowercase is treated as hard-wrapped prose
//! and joined. Markup (list markers, `#`, `>`, `**`, backticks) is removed; pieces without a letter or digit are
//! dropped.

/// Words that end with a period without ending the sentence, lowercase, without the period. Words that are just
/// as often the last word of a sentence (`etc.`, `no.`) are left out: the lowercase rule handles `etc. and`.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "approx", "fig", "figs", "cf", "al", "inc", "ltd",
    "corp", "dept", "gen", "gov", "lt", "col", "sgt", "rev", "hon", "ca", "ed", "eds", "vol", "pp", "op", "ch", "sec",
];

/// Characters that may follow a sentence's final punctuation and still belong to the sentence.
const CLOSING: &[char] = &[')', ']', '"', '\'', '”', '’', '*', '_'];

/// The sentences of `text`, trimmed, in order, without markup.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    for block in blocks(text) {
        split_block(&block, &mut sentences);
    }
    sentences
}

/// Joins lines into blocks: a new block starts at a blank line, a list item, a heading, after a line that ends
/// with sentence punctuation, or at a line that starts with anything but a lowercase letter.
fn blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut open = false;
    for raw_line in text.lines() {
        let (line, is_marked) = strip_line_markup(raw_line);
        if line.is_empty() {
            open = false;
            continue;
        }
        let continues = open && !is_marked && line.chars().next().is_some_and(char::is_lowercase);
        match blocks.last_mut() {
            Some(last) if continues => {
                last.push(' ');
                last.push_str(&line);
            }
            _ => blocks.push(line.clone()),
        }
        open = !line.ends_with(['.', '!', '?', '…', ':', ';']);
    }
    blocks
}

/// The line without list markers, heading and quote markers, and emphasis, and whether it had such a marker.
fn strip_line_markup(line: &str) -> (String, bool) {
    let mut rest = line.trim();
    let mut is_marked = false;
    loop {
        let before = rest;
        if let Some(after) = rest.strip_prefix('#') {
            rest = after.trim_start_matches('#');
        } else if let Some(after) = rest.strip_prefix(['>', '-', '*', '+', '•', '–', '—', '·']) {
            // `-5 degrees` and `*emphasis*` are not list items: a marker needs a space after it.
            if after.starts_with(char::is_whitespace) || after.is_empty() {
                rest = after;
            }
        } else if let Some(after) = strip_enumerator(rest) {
            rest = after;
        }
        if std::ptr::eq(before, rest) {
            break;
        }
        rest = rest.trim_start();
        is_marked = true;
    }
    let cleaned = rest.replace("**", "").replace("__", "").replace('`', "");
    (cleaned.trim().to_string(), is_marked)
}

/// `1. `, `12) `, `a) ` at the start of a line: the rest after the enumerator. `a. ` is left alone: it is as
/// likely an initial.
fn strip_enumerator(line: &str) -> Option<&str> {
    let n_digits = line.chars().take_while(char::is_ascii_digit).count();
    let label_len = if (1..=3).contains(&n_digits) {
        n_digits
    } else if line.chars().next().is_some_and(|first| first.is_ascii_lowercase()) && line[1..].starts_with(')') {
        1
    } else {
        return None;
    };
    let after_label = &line[label_len..];
    let after_punct = after_label.strip_prefix(['.', ')'])?;
    if !after_punct.starts_with(char::is_whitespace) {
        return None;
    }
    Some(after_punct)
}

/// Splits one block (a line, or hard-wrapped lines joined) into sentences.
fn split_block(block: &str, sentences: &mut Vec<String>) {
    let chars: Vec<(usize, char)> = block.char_indices().collect();
    let mut start = 0;
    let mut char_idx = 0;
    while char_idx < chars.len() {
        let (_, ch) = chars[char_idx];
        if !matches!(ch, '.' | '!' | '?' | '…') {
            char_idx += 1;
            continue;
        }
        let punct_start = char_idx;
        while char_idx < chars.len() && matches!(chars[char_idx].1, '.' | '!' | '?' | '…') {
            char_idx += 1;
        }
        let n_punct = char_idx - punct_start;
        while char_idx < chars.len() && CLOSING.contains(&chars[char_idx].1) {
            char_idx += 1;
        }
        let end_byte = chars.get(char_idx).map_or(block.len(), |&(byte, _)| byte);
        if char_idx < chars.len() && !chars[char_idx].1.is_whitespace() {
            continue;
        }
        let next_word_start = chars[char_idx..].iter().find(|(_, next)| !next.is_whitespace()).map(|&(_, next)| next);
        if next_word_start.is_some_and(char::is_lowercase) {
            continue;
        }
        if n_punct == 1 && ch == '.' && is_abbreviation(&block[start..chars[punct_start].0]) {
            continue;
        }
        push_sentence(&block[start..end_byte], sentences);
        start = end_byte;
    }
    push_sentence(&block[start..], sentences);
}

/// Whether the word right before a period (the end of `before`) is an abbreviation, an initial or a dotted
/// abbreviation such as `e.g`.
fn is_abbreviation(before: &str) -> bool {
    let word = before.rsplit(char::is_whitespace).next().unwrap_or("");
    let word = word.trim_start_matches(['(', '[', '"', '\'', '“', '‘']);
    if word.is_empty() {
        return false;
    }
    let lowercase = word.to_lowercase();
    if ABBREVIATIONS.contains(&lowercase.as_str()) {
        return true;
    }
    let mut letters = word.chars();
    if let (Some(first), None) = (letters.next(), letters.next()) {
        return first.is_uppercase();
    }
    // `e.g`, `i.e`, `U.S`, `a.m`: single letters joined by periods.
    word.contains('.') && word.split('.').all(|part| part.chars().count() == 1 && part.chars().all(char::is_alphabetic))
}

fn push_sentence(piece: &str, sentences: &mut Vec<String>) {
    let sentence = piece.trim();
    if sentence.chars().any(char::is_alphanumeric) {
        sentences.push(sentence.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::split_sentences;

    fn check(input: &str, expect: &[&str]) {
        assert_eq!(split_sentences(input), expect, "input: {input:?}");
    }

    #[test]
    fn plain_sentences() {
        check("One thing. Another thing! A question? Yes.", &["One thing.", "Another thing!", "A question?", "Yes."]);
        check("No final period", &["No final period"]);
        check("", &[]);
        check("   \n\n  ", &[]);
    }

    #[test]
    fn abbreviations_do_not_split() {
        check("Take a break, e.g. a walk. Then rest.", &["Take a break, e.g. a walk.", "Then rest."]);
        check("See Dr. Smith tomorrow. She knows.", &["See Dr. Smith tomorrow.", "She knows."]);
        check("Ask Mrs. Jones vs. Mr. Brown.", &["Ask Mrs. Jones vs. Mr. Brown."]);
        check("Use i.e. the first one. Fine.", &["Use i.e. the first one.", "Fine."]);
        check("It was made in the U.S. Army labs.", &["It was made in the U.S. Army labs."]);
        check("Written by J. R. Tolkien. Read it.", &["Written by J. R. Tolkien.", "Read it."]);
        check("Apples, pears, etc. and more. Done.", &["Apples, pears, etc. and more.", "Done."]);
        check("Apples, pears, etc. Then more.", &["Apples, pears, etc.", "Then more."]);
    }

    #[test]
    fn decimals_and_dotted_tokens_do_not_split() {
        check("The dose is 3.5 mg. Take it daily.", &["The dose is 3.5 mg.", "Take it daily."]);
        check("Version 2.0 is out. See example.com for more.", &["Version 2.0 is out.", "See example.com for more."]);
        check("It costs $1,200.50. That is a lot.", &["It costs $1,200.50.", "That is a lot."]);
    }

    #[test]
    fn closing_quotes_and_brackets_stay_with_their_sentence() {
        check("He said \"stop.\" Then he left.", &["He said \"stop.\"", "Then he left."]);
        check("(This is an aside.) Back to it.", &["(This is an aside.)", "Back to it."]);
        check("Wait... What happened?! Nothing.", &["Wait...", "What happened?!", "Nothing."])
    }

    #[test]
    fn newlines_end_sentences() {
        check("First paragraph\n\nSecond paragraph", &["First paragraph", "Second paragraph"]);
        check("Line one.\nLine two.", &["Line one.", "Line two."]);
        check("Title:\nBody text here.", &["Title:", "Body text here."]);
        // A line that does not end a sentence, followed by a lowercase line, is hard-wrapped prose.
        check(
            "This sentence is wrapped\nacross two lines. Next.",
            &["This sentence is wrapped across two lines.", "Next."],
        );
        check("Windows line endings.\r\nSecond line.", &["Windows line endings.", "Second line."]);
    }

    #[test]
    fn bullet_lists() {
        check(
            "Options:\n- talk to a doctor\n- rest for a week\n* drink water\n• sleep well",
            &["Options:", "talk to a doctor", "rest for a week", "drink water", "sleep well"],
        );
        check(
            "Steps:\n1. Call the clinic.\n2) Book a visit. Bring notes.\n10. Follow up",
            &["Steps:", "Call the clinic.", "Book a visit.", "Bring notes.", "Follow up"],
        );
        check("a) first\nb) second", &["first", "second"]);
        // List items are never joined, even when they start in lowercase.
        check("Consider\n- rest\n- water", &["Consider", "rest", "water"]);
    }

    #[test]
    fn markdown_markup_is_removed() {
        check(
            "## Summary\n**Bottom line:** see a doctor.\n---\n> Quoted advice here.",
            &["Summary", "Bottom line: see a doctor.", "Quoted advice here."],
        );
        check("Use `cargo test` to check.", &["Use cargo test to check."]);
        check("-5 degrees is cold.", &["-5 degrees is cold."]);
    }
}
