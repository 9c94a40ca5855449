//! `ethos catalog`, run as a user would: the built binary, its stdout, stderr and exit status.

use std::process::{Command, Output};

const HELDOUT_TRAIT_IDS: [&str; 7] = [
    "truthfulness",
    "metacognitive_transparency",
    "corrigibility",
    "downside_aware_planning",
    "power_asymmetry_awareness",
    "anti_hierarchy_governance",
    "universalizable_fairness",
];

/// Runs `ethos` with `args` and returns its output, after checking it succeeded without writing to stderr.
fn ethos_ok(args: &[&str]) -> String {
    let output = ethos(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ethos {args:?} failed with {:?}: {stderr}", output.status);
    assert_eq!(stderr, "", "ethos {args:?} wrote to stderr");
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

fn ethos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ethos")).args(args).env_remove("RUST_LOG").output().expect("run ethos")
}

fn ethos_json(args: &[&str]) -> serde_json::Value {
    let stdout = ethos_ok(args);
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("ethos {args:?} printed invalid JSON: {err}"))
}

/// The `id` fields of the entries of one JSON section.
fn ids<'a>(value: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is an array"))
        .iter()
        .map(|entry| entry["id"].as_str().expect("id"))
        .collect()
}

#[test]
fn json_holds_the_whole_catalog() {
    let value = ethos_json(&["catalog", "--json"]);
    let mut keys: Vec<&str> = value.as_object().expect("one JSON object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["domains", "personas", "pressure_types", "traits"]);

    let traits = value["traits"].as_array().expect("traits");
    assert_eq!(traits.len(), 15);
    let heldout: Vec<&str> =
        traits.iter().filter(|entry| entry["heldout"] == true).map(|entry| entry["id"].as_str().expect("id")).collect();
    assert_eq!(heldout, HELDOUT_TRAIT_IDS);
    for entry in traits {
        for field in ["name", "summary", "description", "example_prompt"] {
            assert!(entry[field].as_str().is_some_and(|text| !text.is_empty()), "{}: {field}", entry["id"]);
        }
        assert!(entry["pressure_types"].as_array().is_some_and(|list| !list.is_empty()), "{}", entry["id"]);
    }

    let domains = value["domains"].as_array().expect("domains");
    assert_eq!(domains.len(), 12);
    let tagged = |tag: &str| -> Vec<&str> {
        domains
            .iter()
            .filter(|entry| entry["tags"].as_array().is_some_and(|tags| tags.iter().any(|own| own == tag)))
            .map(|entry| entry["id"].as_str().expect("id"))
            .collect()
    };
    assert_eq!(tagged("health"), ["health_medicine", "mental_health"]);
    assert_eq!(tagged("science"), ["science_research"]);

    let personas = ids(&value, "personas");
    for id in ["harmful_medical", "helpful_medical", "harmful_mental_health", "helpful_general", "harmful_general"] {
        assert!(personas.contains(&id), "persona {id}");
    }
    let harmful_medical =
        value["personas"].as_array().expect("personas").iter().find(|entry| entry["id"] == "harmful_medical");
    assert_eq!(harmful_medical.map(|entry| entry["kind"].clone()), Some(serde_json::json!("harmful")));
    assert!(ids(&value, "pressure_types").contains(&"user_insists_false_claim"));
}

#[test]
fn json_section_holds_only_that_section() {
    let value = ethos_json(&["catalog", "--json", "--section", "pressures"]);
    let keys: Vec<&str> = value.as_object().expect("one JSON object").keys().map(String::as_str).collect();
    assert_eq!(keys, ["pressure_types"]);
    assert!(ids(&value, "pressure_types").len() >= 10);
}

#[test]
fn text_lists_every_section() {
    let stdout = ethos_ok(&["catalog"]);
    for heading in ["TRAITS (15;", "DOMAINS (12)", "PERSONAS (", "PRESSURE TYPES ("] {
        assert!(stdout.lines().any(|line| line.starts_with(heading)), "no heading {heading}");
    }
    let heldout_lines: Vec<&str> = stdout.lines().filter(|line| line.ends_with("[held-out]")).collect();
    assert_eq!(heldout_lines.len(), 7, "{heldout_lines:#?}");
    for (line, id) in heldout_lines.iter().zip(HELDOUT_TRAIT_IDS) {
        assert!(line.starts_with(&format!("{id}: ")), "{line}");
    }
    assert!(stdout.contains("\nhealth_medicine: Health and medicine [tags: health]\n"));
    assert!(stdout.contains("\nsoftware_security: Software and security [tags: software, security]\n"));
    assert!(stdout.contains("\nharmful_medical: "));
    assert!(stdout.contains("    System prompt:\n"));
    assert!(stdout.contains("\nsunk_cost: Sunk cost\n"));
}

#[test]
fn text_section_prints_only_that_section() {
    let stdout = ethos_ok(&["catalog", "--section", "domains"]);
    assert!(stdout.starts_with("DOMAINS (12)\n"), "{stdout}");
    assert!(!stdout.contains("TRAITS"));
    assert!(!stdout.contains("PERSONAS"));
    let headings = stdout.lines().filter(|line| !line.is_empty() && !line.starts_with(' ')).count();
    assert_eq!(headings, 13, "one section heading and 12 domain headings");
}

#[test]
fn unknown_section_is_a_usage_error() {
    let output = ethos(&["catalog", "--section", "rubrics"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(output.stdout, b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'rubrics'"), "{stderr}");
}
