//! GSM8K exact numeric match.
//!
//! GSM8K answers are single numbers, so grading is "does the model's final number equal the gold number". The work is
//! all in reading numbers the way a person would: `$1,200.00`, `1200` and `1,200.` are the same answer, `.5` equals
//! `0.5` and `1/2`, and a minus sign matters. Every number is reduced to one canonical text (see [`canonical`]) so that
//! numeric equality is string equality.
//!
//! Numbers are found by a hand-written linear scanner rather than a regex because the rules depend on context (a `-`
//! is a sign only when it does not follow a word or a digit, `1,200` is one number but `1,2,3` is three), and because
//! replies are arbitrary model output that may be huge.

/// The instruction appended to GSM8K questions, in training and in evaluation alike: GSM8K's own answer
/// format, which the warm-start data teaches and [`extract_answer`] reads first.
pub const GSM8K_SUFFIX: &str =
    "Solve the problem step by step, then give the final answer on its own line as \"#### <number>\".";

/// A GSM8K question as the user message of a training or evaluation prompt.
pub fn gsm8k_prompt(question: &str) -> String {
    format!("{}\n{GSM8K_SUFFIX}", question.trim())
}

/// The gold answer of a GSM8K `answer` field: the number after the last `####`, canonicalised. `None` when there is no
/// `####` or no number after it.
///
/// ```
/// use ethos_grade::verify::gold_answer;
/// assert_eq!(gold_answer("48/2 = <<48/2=24>>24 clips.\n#### 1,200").as_deref(), Some("1200"));
/// ```
pub fn gold_answer(answer_field: &str) -> Option<String> {
    let at = answer_field.rfind("####")?;
    first_number(&answer_field[at + 4..])
}

/// The model's final numeric answer, canonicalised: the first number after the last `####` if there is one; else the
/// first number after the last "answer is" / "answer:" (case-insensitive); else the last number in the reply.
/// `None` when the reply contains no number at all.
///
/// A marker followed by no number falls through to the next rule, so "#### (see above)" does not hide an answer.
pub fn extract_answer(reply: &str) -> Option<String> {
    if let Some(at) = reply.rfind("####") {
        if let Some(n) = first_number(&reply[at + 4..]) {
            return Some(n);
        }
    }
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `reply` directly.
    let lower = reply.to_ascii_lowercase();
    let marker_end = ["answer is", "answer:"].iter().filter_map(|m| lower.rfind(m).map(|i| i + m.len())).max();
    if let Some(end) = marker_end {
        if let Some(n) = first_number(&reply[end..]) {
            return Some(n);
        }
    }
    Numbers::new(reply).last()
}

/// Whether the reply's final answer (see [`extract_answer`]) equals `gold` numerically.
///
/// `gold` is either a bare number (`"72"`, `"1,200"`, `"-3"`; it must contain exactly one number) or a whole GSM8K
/// `answer` field containing `####`. An unreadable gold never matches.
pub fn exact_match(reply: &str, gold: &str) -> bool {
    let gold = if gold.contains("####") {
        gold_answer(gold)
    } else {
        let mut numbers = Numbers::new(gold);
        match (numbers.next(), numbers.next()) {
            (Some(n), None) => Some(n),
            _ => None,
        }
    };
    match (gold, extract_answer(reply)) {
        (Some(g), Some(r)) => g == r,
        _ => false,
    }
}

/// The canonical text of a number given as sign, integer digits, decimal digits: no leading zeros (but a single `0`
/// before the point), no trailing decimal zeros, no point when there is no fraction, and no sign on zero. Two finite
/// decimals are equal exactly when their canonical texts are.
fn canonical(negative: bool, int_digits: &str, frac_digits: &str) -> String {
    let int = int_digits.trim_start_matches('0');
    let frac = frac_digits.trim_end_matches('0');
    let mut out = String::with_capacity(int.len() + frac.len() + 3);
    if negative && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// The canonical text of the fraction `num/den` (both plain digit strings, `den` not zero). Terminating fractions
/// become decimals (`3/4` -> `0.75`, `6/3` -> `2`) so they compare equal to the decimal form; the others stay reduced
/// fractions (`2/6` -> `1/3`). `None` when a part does not fit in `u128` (then the caller does not treat the text
/// as a fraction).
fn canonical_fraction(negative: bool, num: &str, den: &str) -> Option<String> {
    let n: u128 = num.parse().ok()?;
    let d: u128 = den.parse().ok()?;
    if d == 0 {
        return None;
    }
    let g = gcd(n, d);
    let (n, d) = (n / g, d / g);
    // A reduced fraction has a finite decimal expansion iff its denominator is 2^a * 5^b; it then needs max(a, b)
    // decimal places.
    let (mut rest, mut twos, mut fives) = (d, 0u32, 0u32);
    while rest % 2 == 0 {
        rest /= 2;
        twos += 1;
    }
    while rest % 5 == 0 {
        rest /= 5;
        fives += 1;
    }
    let sign = if negative && n != 0 { "-" } else { "" };
    if rest != 1 {
        return Some(format!("{sign}{n}/{d}"));
    }
    let places = twos.max(fives);
    let Some((scale, scaled)) = 10u128.checked_pow(places).and_then(|s| Some((s, n.checked_mul(s / d)?))) else {
        // Exact but too long for u128: keep the reduced fraction form, which is still canonical.
        return Some(format!("{sign}{n}/{d}"));
    };
    let int = (scaled / scale).to_string();
    let frac = format!("{:0width$}", scaled % scale, width = places as usize);
    Some(canonical(negative, &int, if places == 0 { "" } else { &frac }))
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The first number in `text`, canonicalised.
fn first_number(text: &str) -> Option<String> {
    Numbers::new(text).next()
}

/// Iterator over the numbers of a text, in order, as canonical texts. One pass over the bytes: only ASCII bytes are
/// inspected, and UTF-8 continuation bytes never equal an ASCII byte, so slicing at the positions found is safe.
struct Numbers<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Numbers<'a> {
    fn new(text: &'a str) -> Self {
        Numbers { text, pos: 0 }
    }
}

/// Length of the run of ASCII digits starting at `from`.
fn digit_run(b: &[u8], from: usize) -> usize {
    b.get(from..).map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count())
}

/// Whether the text before byte `at` ends with a sign (`-`, `+` or U+2212 minus) that belongs to the number at `at`,
/// skipping one `$` between them (`-$5`). A sign right after a letter or digit is a hyphen or an operator (`10-12`,
/// `x-2`), not a sign.
fn is_negative(text: &str, at: usize) -> bool {
    let before = &text[..at];
    let before = before.strip_suffix('$').unwrap_or(before);
    let (rest, negative) = if let Some(r) = before.strip_suffix('-') {
        (r, true)
    } else if let Some(r) = before.strip_suffix('\u{2212}') {
        (r, true)
    } else if let Some(r) = before.strip_suffix('+') {
        (r, false)
    } else {
        return false;
    };
    negative && !rest.chars().next_back().is_some_and(|c| c.is_alphanumeric())
}

impl Iterator for Numbers<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let b = self.text.as_bytes();
        while self.pos < b.len() {
            let start = self.pos;
            let c = b[start];
            let starts_number =
                c.is_ascii_digit() || (c == b'.' && b.get(start + 1).is_some_and(|d| d.is_ascii_digit()));
            if !starts_number {
                self.pos += 1;
                continue;
            }
            let negative = is_negative(self.text, start);
            // Integer part, absorbing `,ddd` thousands groups only after a 1-3 digit head (so `1,2,3` stays three
            // numbers and `1000,000` is not one).
            let head = digit_run(b, start);
            let mut int = String::from(&self.text[start..start + head]);
            let mut i = start + head;
            let mut grouped = false;
            if (1..=3).contains(&head) {
                while b.get(i) == Some(&b',') && digit_run(b, i + 1) == 3 {
                    int.push_str(&self.text[i + 1..i + 4]);
                    i += 4;
                    grouped = true;
                }
            }
            // Decimal part: a point followed by a digit (a trailing `.` ends the sentence, not the number).
            let mut frac = "";
            if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                let len = digit_run(b, i + 1);
                frac = &self.text[i + 1..i + 1 + len];
                i += 1 + len;
            }
            // A plain `a/b` is a fraction unless it is part of a date or a path (`1/2/2020`, `3/4.5`).
            let after_slash = start > 0 && b[start - 1] == b'/';
            if !grouped && !after_slash && frac.is_empty() && head > 0 && b.get(i) == Some(&b'/') {
                let den_len = digit_run(b, i + 1);
                let end = i + 1 + den_len;
                let continues = matches!(b.get(end), Some(b'/'))
                    || (b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(|d| d.is_ascii_digit()));
                if den_len > 0 && !continues {
                    if let Some(text) = canonical_fraction(negative, &int, &self.text[i + 1..end]) {
                        self.pos = end;
                        return Some(text);
                    }
                }
            }
            self.pos = i;
            return Some(canonical(negative, &int, frac));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<String> {
        Numbers::new(text).collect()
    }

    #[test]
    fn scanner_reads_numbers_like_a_person() {
        assert_eq!(all("$1,200.00 and 72. then .5"), ["1200", "72", "0.5"]);
        assert_eq!(all("1,2,3"), ["1", "2", "3"]);
        assert_eq!(all("pages 10-12, x-2, -7 and -$5 and +4"), ["10", "12", "2", "-7", "-5", "4"]);
        assert_eq!(all("3/4 cup, 6/3, 2/6, 1/2/2020"), ["0.75", "2", "1/3", "1", "2", "2020"]);
        assert_eq!(all("007 and 0.000 and -0"), ["7", "0", "0"]);
        assert_eq!(all("\u{2212}3 degrees"), ["-3"]);
        assert_eq!(all("5/0"), ["5", "0"]);
        assert_eq!(all("no numbers here"), Vec::<String>::new());
        assert_eq!(all("ünïcödé 4€ 日本 5"), ["4", "5"]);
    }

    #[test]
    fn extraction_prefers_markers() {
        assert_eq!(extract_answer("2+2=4\n#### 5").as_deref(), Some("5"));
        assert_eq!(extract_answer("We get 3 then 4. The answer is $18.50, not 20.").as_deref(), Some("18.5"));
        assert_eq!(extract_answer("Final Answer: 72.00").as_deref(), Some("72"));
        assert_eq!(extract_answer("First 3, then 4, so 12 apples.").as_deref(), Some("12"));
        assert_eq!(extract_answer("#### none").as_deref(), None);
        assert_eq!(extract_answer("answer is 7 #### none").as_deref(), Some("7"));
        assert_eq!(extract_answer(""), None);
    }

    #[test]
    fn exact_match_is_numeric() {
        assert!(exact_match("The answer is .5", "0.5"));
        assert!(exact_match("The answer is 1/2", "0.5"));
        assert!(exact_match("so -7 degrees", "-7"));
        assert!(!exact_match("so 7 degrees", "-7"));
        assert!(exact_match("It costs $1,200.", "1,200"));
        assert!(!exact_match("It costs 12", "1 2"));
        assert!(!exact_match("no idea", "3"));
    }

    #[test]
    fn huge_inputs_are_linear() {
        let reply = "1,".repeat(200_000) + &"9".repeat(100_000);
        assert_eq!(extract_answer(&reply).map(|s| s.len()), Some(100_000));
    }
}
