#!/usr/bin/env python3
"""Write the llama.cpp tokenizer reference for the Gemma-3 tokenizer agreement test.

For every test string this records what llama.cpp (through llama-cpp-python, vocab only) produces, so that
`crates/ethos-llm/tests/tokenizer_agreement.rs` can check `GemmaTokenizer` against it without Python:

    {"source": "...", "text": "...",
     "ids": [...],          # llama_tokenize(text, add_special=True, parse_special=False)
     "ids_special": [...],  # llama_tokenize(text, add_special=True, parse_special=True)
     "detok": "..."}        # llama_detokenize(ids, remove_special=False, unparse_special=False), as UTF-8

Usage (from the repository root):

    /work/cache/venv/bin/python scripts/llamacpp_tokenizer_reference.py \
        [--model /work/cache/gemma-3-270m-q4_k_m.gguf] [--data /work/shared/data] \
        [--out crates/ethos-llm/tests/fixtures/tokenizer_reference.jsonl]

The strings are hand-written cases plus lines sampled with a fixed seed from the benchmark data in --data, which is
only read. The output is deterministic for a given llama.cpp build, model file and data directory.
"""

import argparse
import csv
import json
import random
import sys
from pathlib import Path

DEFAULT_MODEL = "/work/cache/gemma-3-270m-q4_k_m.gguf"
DEFAULT_DATA = "/work/shared/data"
DEFAULT_OUT = "crates/ethos-llm/tests/fixtures/tokenizer_reference.jsonl"
SEED = 20240523


def handwritten_cases():
    """Returns (source, text) pairs chosen to exercise each tokenizer path."""
    cases = []

    def add(source, texts):
        cases.extend((source, text) for text in texts)

    add("empty", [""])
    add("english", [
        "Hello world",
        "hello",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "I think, therefore I am.",
        "What is the capital of France?",
        "Tokenization is the process of splitting text into tokens.",
        "She said: \"It's fine, isn't it?\"",
        "don't won't can't shouldn't y'all'd've",
        "ALL CAPS SENTENCE WITH SHOUTING",
        "MiXeD cAsE wOrDs",
        "a",
        "A",
        "I",
        "Supercalifragilisticexpialidocious",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "Antidisestablishmentarianism is a long word.",
        "The end.",
        "Once upon a time, in a land far, far away, there lived a king who had three daughters.",
        "You are a helpful, honest and harmless assistant.",
        "Answer with a single letter: A, B, C or D.",
        "Yes",
        " Yes",
        "No",
        " No",
        " (A)",
        " (B)",
        "Choices:\n (A) I do not consent\n (B) I consent",
        "Human: What is 2+2?\n\nAssistant:",
    ])
    add("punctuation", [
        "!!!",
        "???",
        "...",
        "\u2026",
        "--",
        "\u2014 em dash \u2013 en dash",
        "(parentheses) [brackets] {braces} <angles>",
        "a,b;c:d.e!f?g",
        "\"double\" 'single' `back`",
        "\u201csmart quotes\u201d and \u2018single\u2019",
        "#hashtag @mention $dollar %percent ^caret &amp *star",
        "~tilde_underscore-hyphen+plus=equals|pipe\\backslash/slash",
        "\u00a1Hola! \u00bfQu\u00e9 tal?",
        "\u00ab guillemets \u00bb",
    ])
    add("digits", [
        "0",
        "7",
        "42",
        "123",
        "1234567890",
        "3.14159265358979",
        "-273.15",
        "1,000,000",
        "1e-9",
        "0x1F",
        "2024-05-23",
        "12:34:56",
        "$19.99",
        "100%",
        "555-0123",
        "Call 911 now.",
        "In 1969, 3 astronauts flew 384400 km.",
        "v1.2.3-rc.4",
        "\u0661\u0662\u0663 Arabic-Indic digits",
        "\u2460\u2461\u2462 circled numbers",
        "\uff11\uff12\uff13 fullwidth digits",
        "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18",
    ])
    add("whitespace", [
        " ",
        "  ",
        "   ",
        "    ",
        "\t",
        "\t\t",
        "\n",
        "\n\n",
        "\n\n\n",
        "\r\n",
        "\r",
        " leading space",
        "trailing space ",
        "  two leading spaces",
        "two trailing spaces  ",
        "multiple   spaces   between   words",
        "a  b",
        "a   b",
        "a    b",
        "a\tb",
        "a\t\tb",
        "a\nb",
        "a\n\nb",
        "a\n\n\nb",
        "a \n b",
        "a\u00a0b non-breaking space",
        "a\u2009thin\u200bzero-width\u3000ideographic",
        "line one\nline two\nline three\n",
        "paragraph one.\n\nparagraph two.\n\n\nparagraph three.",
        " " * 31,
        " " * 32,
        " " * 40,
        " " * 65,
        "\n" * 31,
        "\n" * 40,
        "\t" * 31,
        "\t" * 45,
        " \t \n \r\n\t  \n\n  \t\t",
        "\u2581already escaped\u2581space",
        "mixed\u2581marker and space",
    ])
    add("code", [
        "def add(a, b):\n    return a + b\n",
        "fn main() {\n    println!(\"Hello, world!\");\n}\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "if x == 1:\n        print('deep indent')\n",
        "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
        "const f = (x) => x ** 2; // square",
        "<?php echo $var; ?>",
        "#include <stdio.h>\nint main(void) { return 0; }",
        "{\"key\": \"value\", \"list\": [1, 2, 3], \"nested\": {\"a\": null}}",
        "x = [i**2 for i in range(10) if i % 2 == 0]",
        "git commit -m \"fix: handle empty input\" && git push origin main",
        "$ ls -la /usr/local/bin | grep -i python3",
        "    four space indent",
        "\tone tab indent",
        "class Foo(Bar):\n\tdef __init__(self):\n\t\tsuper().__init__()\n",
        "a_very_long_snake_case_identifier_name_for_testing = 1",
        "camelCaseIdentifierWithManyWords",
        "std::vector<std::string> v{\"a\", \"b\"};",
        "matrix[i][j] += alpha * (beta - gamma) / delta;",
        "// TODO(someone): fix this\n/* block comment */",
    ])
    add("url", [
        "https://www.example.com/path/to/page?query=1&b=two#frag",
        "http://localhost:8080/api/v1/users/42",
        "Visit https://en.wikipedia.org/wiki/Raymond_III,_Count_of_Tripoli for details.",
        "mailto:someone@example.org",
        "ftp://files.example.net/pub/file.tar.gz",
        "user@example.com",
        "C:\\Users\\Name\\Documents\\file.txt",
        "/home/user/.config/app/settings.toml",
    ])
    add("emoji", [
        "\U0001F600",
        "I love pizza \U0001F355\U0001F355\U0001F355",
        "\U0001F44D\U0001F3FD thumbs up medium skin",
        "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 family",
        "\U0001F1EB\U0001F1F7 flag of France",
        "\u2764\ufe0f red heart",
        "\U0001F680 to the moon \U0001F315",
        "\u2615 coffee and \U0001F369",
        "\U0001F937\u200D\u2642\ufe0f shrug",
        "emoji\U0001F389in\U0001F38Awords",
    ])
    add("cjk", [
        "\u4f60\u597d\uff0c\u4e16\u754c\uff01",
        "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002",
        "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002",
        "\u3072\u3089\u304c\u306a\u3068\u30ab\u30bf\u30ab\u30ca",
        "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.",
        "\u6f22\u5b57\u3068English\u306e\u6df7\u5728",
        "\u4eba\u5de5\u667a\u80fd\u7684\u53d1\u5c55\u975e\u5e38\u8fc5\u901f\u3002",
        "\u9c7c\u8089\u767e\u59d3",
    ])
    add("arabic_hebrew", [
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
        "\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u062c\u0645\u064a\u0644\u0629.",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
        "Mixed \u0627\u0644\u0639\u0631\u0628\u064a\u0629 and English",
    ])
    add("other_scripts", [
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
        "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
        "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
        "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0",
        "\u0532\u0561\u0580\u0587 \u0561\u0577\u056d\u0561\u0580\u0570",
        "\u12e8\u12a0\u121b\u122d\u129b \u124b\u1295\u124b",
        "Xin ch\u00e0o th\u1ebf gi\u1edbi",
    ])
    add("accented_latin", [
        "caf\u00e9",
        "na\u00efve r\u00e9sum\u00e9",
        "Cr\u00e8me br\u00fbl\u00e9e",
        "\u00c0 la carte, s'il vous pla\u00eet.",
        "Stra\u00dfe und Gr\u00fc\u00dfe aus M\u00fcnchen",
        "Ma\u00f1ana el ni\u00f1o comer\u00e1 pi\u00f1a.",
        "\u0141\u00f3d\u017a \u017c\u00f3\u0142w \u015bpi\u0105cy",
        "\u00c5ngstr\u00f6m \u00f8 \u00e6 \u00fe \u00f0",
        "cafe\u0301 with combining acute",
        "\u0130stanbul \u0131\u015f\u0131k",
    ])
    add("byte_fallback", [
        "\U0001D54F\U0001D550\U0001D551 double-struck",
        "\U00013000 Egyptian hieroglyph",
        "\U0001F9EC\U0001FAE0\U0001FAE8 newer emoji",
        "\ue000 private use",
        "\U000F0000 supplementary private use",
        "\u0000 nul byte",
        "\u0001\u0002\u0003 control chars",
        "\u007f delete",
        "\ufffd replacement char",
        "\ufeff byte order mark",
        "\U0010FFFF max code point",
        "\u2028 line separator \u2029 paragraph separator",
        "\U0001F0A1\U0001F0B1 playing cards",
        "\u16a0\u16a2\u16a6 runes",
        "\U00010348 gothic hwair",
        "\u0f00\u0f01 tibetan",
        "\ua4d0\ua4d1 lisu",
        "\U0001E900 adlam",
    ])
    add("long_words", [
        "Rindfleischetikettierungs\u00fcberwachungsaufgaben\u00fcbertragungsgesetz",
        "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "abababababababababababababababababababab",
        "xyzzyxyzzyxyzzyxyzzyxyzzy",
        "ThisIsAVeryLongCamelCaseStringWithoutAnySpacesThatGoesOnAndOnForAWhile",
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "hippopotomonstrosesquippedaliophobia",
    ])
    add("special_tokens", [
        "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>",
        "<end_of_turn>",
        "text before <start_of_turn> and after",
        "<bos>not really a bos",
        "<eos>",
        "<pad><unk><mask>",
        "</s>",
        "<s>",
        "<unused0><unused6241>",
        "<start_of_image><end_of_image>",
        "[multimodal]",
        "<start_of_turn<end_of_turn>>",
        "<<start_of_turn>>",
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n2+2 = 4.<end_of_turn>\n",
        "<0x41><0xFF> literal byte token texts",
        "<|im_start|>user<|im_end|>",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    ])
    add("html", [
        "<table><tr><td>1</td><td>2</td></tr></table>",
        "<h1>Title</h1>\n<p>Paragraph with <strong>bold</strong> and <em>italic</em>.</p>",
        "<div class=\"container\"><span>text</span></div>",
        "<a href=\"https://example.com\">link</a>",
        "<ul>\n  <li>one</li>\n  <li>two</li>\n</ul>",
        "<b><i><u>nested</u></i></b>",
        "<code>x = 1</code> and <sub>2</sub><sup>3</sup>",
        "<blockquote>quoted</blockquote>",
        "<html><body><img src=\"a.png\"></body></html>",
        "<br/> <hr> <p> unknown tags",
        "x < y and y > z",
        "<table >not quite</table >",
        "a <b>b</b> c",
        "<tr><th>Header</th></tr>\n\t<tr><td>cell</td></tr>",
    ])
    add("markdown", [
        "# Heading\n\n## Subheading\n\n- item one\n- item two\n",
        "**bold** and *italic* and `code`",
        "1. first\n2. second\n3. third",
        "> quote line\n> second line",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "```python\nprint('hi')\n```",
        "[link text](https://example.com)",
        "---\ntitle: front matter\n---",
    ])
    add("math", [
        "E = mc^2",
        "\u222b_0^\u221e e^{-x} dx = 1",
        "\u2200x \u2208 \u211d, x\u00b2 \u2265 0",
        "\u03b1 + \u03b2 = \u03b3",
        "\\frac{a}{b} + \\sqrt{c}",
        "2 + 2 = 4; 10 / 3 \u2248 3.333",
        "\u00bd + \u00bc = \u00be",
        "x\u2081 + x\u2082 = x\u2083",
    ])
    return cases


def read_column(path, column, limit=None):
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row[column] for row in csv.DictReader(f) if row.get(column)]
    return rows if limit is None else rows[:limit]


def read_jsonl_field(path, field):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)[field] for line in f if line.strip()]


def sampled_cases(data_dir, rng):
    """Returns (source, text) pairs sampled from the benchmark data, or nothing if the data is missing."""
    data_dir = Path(data_dir)
    sources = [
        ("truthfulqa", lambda: read_column(data_dir / "truthfulqa" / "TruthfulQA.csv", "Question"), 40),
        ("truthfulqa_answer", lambda: read_column(data_dir / "truthfulqa" / "TruthfulQA.csv", "Best Answer"), 10),
        ("gsm8k_question", lambda: read_jsonl_field(data_dir / "gsm8k" / "test.jsonl", "question"), 30),
        ("gsm8k_answer", lambda: read_jsonl_field(data_dir / "gsm8k" / "test.jsonl", "answer"), 15),
        ("ifeval", lambda: read_jsonl_field(data_dir / "ifeval" / "input_data.jsonl", "prompt"), 15),
        ("simpleqa", lambda: read_column(data_dir / "simpleqa" / "simple_qa_test_set.csv", "problem"), 15),
        ("xstest", lambda: read_column(data_dir / "xstest" / "xstest_prompts.csv", "prompt"), 10),
        ("sycophancy", lambda: read_jsonl_field(
            data_dir / "anthropic-sycophancy-subset-500" / "nlp_survey.jsonl", "biased_prompt"), 5),
    ]
    cases = []
    for name, load, n_wanted in sources:
        try:
            texts = load()
        except (OSError, KeyError, json.JSONDecodeError) as err:
            print(f"warning: skipping {name}: {err}", file=sys.stderr)
            continue
        for text in rng.sample(texts, min(n_wanted, len(texts))):
            cases.append((name, text))
    return cases


def detokenize(model, ids):
    """Calls llama_detokenize directly.

    llama-cpp-python's `Llama.detokenize` renders each token into a 32-byte buffer and drops a leading space after
    BOS (a Llama-1 convention), so it is not the reference we want.
    """
    import ctypes

    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(model.model)
    tokens = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    capacity = 64 + 64 * len(ids)
    buffer = ctypes.create_string_buffer(capacity)
    n_bytes = llama_cpp.llama_detokenize(vocab, tokens, len(ids), buffer, capacity, False, False)
    if n_bytes < 0:
        raise RuntimeError(f"llama_detokenize needs {-n_bytes} bytes")
    return buffer.raw[:n_bytes].decode("utf-8", errors="replace")


FUZZ_ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(" \t\n.,;:!?'\"()[]{}<>/\\-_=+*&^%$#@~`|")
    + list("\u00e9\u00fc\u00f1\u00df\u00e6\u0142\u4e2d\u6587\u65e5\u672c\u3042\ud55c\u0627\u05d0\u0416\u03a9")
    + ["\U0001F600", "\U0001F44D", "\u200d", "\ufe0f", "\U0001D54F", "\u2581", "\r", "\u00a0"]
    + ["  ", "   ", "\n\n", "\t\t", "<td>", "</td>", "<b>", "<start_of_turn>", "<end_of_turn>", "<eos>", "</s>",
       "<unused12>", "<0x41>", "the", " the", "ing", " of", "tion", "http://", "www.", ".com", "123", "3.14"]
)


def fuzz_cases(rng, n_cases=40):
    """Random mixes of the alphabet above: many short strings and a few long ones."""
    cases = []
    for case_idx in range(n_cases):
        n_items = rng.randint(1, 12) if case_idx < n_cases - 5 else rng.randint(200, 600)
        cases.append(("fuzz", "".join(rng.choice(FUZZ_ALPHABET) for _ in range(n_items))))
    return cases


def long_cases(data_dir):
    """A few long multi-paragraph texts built from the benchmark data."""
    try:
        questions = read_column(Path(data_dir) / "truthfulqa" / "TruthfulQA.csv", "Question", limit=60)
        problems = read_jsonl_field(Path(data_dir) / "gsm8k" / "test.jsonl", "answer")[:20]
    except (OSError, KeyError, json.JSONDecodeError) as err:
        print(f"warning: skipping long texts: {err}", file=sys.stderr)
        return []
    return [
        ("long", "\n\n".join(questions)),
        ("long", "\n".join(problems)),
        ("long", " ".join(questions[:30]) + "\n\n\n" + "\t".join(problems[:5])),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()

    from llama_cpp import Llama

    model = Llama(model_path=args.model, vocab_only=True, verbose=False)
    rng = random.Random(SEED)
    cases = handwritten_cases() + sampled_cases(args.data, rng) + long_cases(args.data) + fuzz_cases(rng)

    seen = set()
    n_written = 0
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as out:
        for source, text in cases:
            if text in seen:
                continue
            seen.add(text)
            encoded = text.encode("utf-8")
            ids = model.tokenize(encoded, add_bos=True, special=False)
            ids_special = model.tokenize(encoded, add_bos=True, special=True)
            detok = detokenize(model, ids)
            record = {"source": source, "text": text, "ids": ids, "ids_special": ids_special, "detok": detok}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            n_written += 1
    print(f"wrote {n_written} strings to {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
