//! `ethos catalog`: prints the built-in catalog of traits, domains, persona prompts and pressure types.
//!
//! Text output is for reading; `--json` prints one JSON object with the keys `traits`, `domains`, `personas` and
//! `pressure_types` (only the selected one with `--section`), each an array of entries with every field of the
//! catalog files.

use ethos_core::catalog::{Catalog, Domain, Persona, PressureType, TraitInfo};

use crate::printer::Printer;

/// Width of the text output, indentation included.
const TEXT_WIDTH: usize = 100;
/// Indentation of an entry's details under its heading line.
const DETAIL_INDENT: &str = "    ";

/// Arguments of `ethos catalog`.
#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    /// Print the catalog as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Print only this section.
    #[arg(long, value_enum)]
    section: Option<Section>,
}

/// A section of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// The beneficial traits.
    Traits,
    /// The domains scenarios are set in.
    Domains,
    /// The persona system prompts of the persistence evaluation.
    Personas,
    /// The pressure types scenarios apply.
    Pressures,
}

/// Prints the catalog (or one section of it) as text or JSON.
pub fn run(args: CatalogArgs, printer: &Printer) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let sections = match args.section {
        Some(section) => vec![section],
        None => vec![Section::Traits, Section::Domains, Section::Personas, Section::Pressures],
    };
    if args.json {
        return print_json(catalog, &sections, printer);
    }
    for (section_idx, section) in sections.iter().enumerate() {
        if section_idx > 0 {
            printer.data("");
        }
        let lines = match section {
            Section::Traits => traits_text(catalog),
            Section::Domains => domains_text(catalog),
            Section::Personas => personas_text(catalog),
            Section::Pressures => pressures_text(catalog),
        };
        for line in lines {
            printer.data(line);
        }
    }
    Ok(())
}

/// The JSON output: the sections of [`Catalog`] under the same keys, in catalog order, leaving out unselected ones.
/// Serializing this directly (not through `serde_json::Value`) keeps the fields of each entry in declaration order.
#[derive(serde::Serialize)]
struct CatalogJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    traits: Option<&'a [TraitInfo]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domains: Option<&'a [Domain]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    personas: Option<&'a [Persona]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pressure_types: Option<&'a [PressureType]>,
}

fn print_json(catalog: &Catalog, sections: &[Section], printer: &Printer) -> anyhow::Result<()> {
    let selected = |section: Section| sections.contains(&section);
    let json = CatalogJson {
        traits: selected(Section::Traits).then(|| catalog.traits()),
        domains: selected(Section::Domains).then(|| catalog.domains()),
        personas: selected(Section::Personas).then(|| catalog.personas()),
        pressure_types: selected(Section::Pressures).then(|| catalog.pressure_types()),
    };
    printer.json(&json)
}

fn traits_text(catalog: &Catalog) -> Vec<String> {
    let n_heldout = catalog.heldout_traits().count();
    let mut lines = vec![format!(
        "TRAITS ({}; {n_heldout} marked [held-out] are reserved for evaluation and never trained on)",
        catalog.traits().len()
    )];
    for entry in catalog.traits() {
        lines.extend(trait_text(entry));
    }
    lines
}

fn trait_text(entry: &TraitInfo) -> Vec<String> {
    let marker = if entry.is_heldout() { " [held-out]" } else { "" };
    let mut lines = vec![String::new(), format!("{}: {}{marker}", entry.id(), entry.name())];
    lines.extend(wrap(entry.summary(), DETAIL_INDENT));
    lines.push(String::new());
    lines.extend(wrap(entry.description(), DETAIL_INDENT));
    lines.push(String::new());
    lines.extend(wrap(&format!("Pressure types: {}.", entry.pressure_types().join(", ")), DETAIL_INDENT));
    lines.extend(wrap(&format!("Example prompt: \"{}\"", entry.example_prompt()), DETAIL_INDENT));
    lines
}

fn domains_text(catalog: &Catalog) -> Vec<String> {
    let mut lines = vec![format!("DOMAINS ({})", catalog.domains().len())];
    for entry in catalog.domains() {
        lines.extend(domain_text(entry));
    }
    lines
}

fn domain_text(entry: &Domain) -> Vec<String> {
    let mut lines =
        vec![String::new(), format!("{}: {} [tags: {}]", entry.id(), entry.name(), entry.tags().join(", "))];
    lines.extend(wrap(entry.description(), DETAIL_INDENT));
    lines
}

fn personas_text(catalog: &Catalog) -> Vec<String> {
    let mut lines = vec![format!(
        "PERSONAS ({}; system prompts of the persistence evaluation; harmful ones are test conditions only)",
        catalog.personas().len()
    )];
    for entry in catalog.personas() {
        lines.extend(persona_text(entry));
    }
    lines
}

fn persona_text(entry: &Persona) -> Vec<String> {
    let domain = entry.domain().map(|domain| format!("; domain: {domain}")).unwrap_or_default();
    let mut lines = vec![
        String::new(),
        format!("{}: {}", entry.id(), entry.name()),
        format!("{DETAIL_INDENT}Kind: {}{domain}", entry.kind()),
    ];
    lines.extend(wrap(entry.description(), DETAIL_INDENT));
    lines.push(String::new());
    lines.push(format!("{DETAIL_INDENT}System prompt:"));
    // The system prompt keeps its own line breaks (it is often a list of rules); each line is wrapped on its own, and
    // the continuation lines of a `- ` item are indented under its text.
    let prompt_indent = format!("{DETAIL_INDENT}| ");
    let item_indent = format!("{prompt_indent}  ");
    for prompt_line in entry.system_prompt().lines() {
        let rest_indent = if prompt_line.starts_with("- ") { &item_indent } else { &prompt_indent };
        lines.extend(wrap_hanging(prompt_line, &prompt_indent, rest_indent));
    }
    lines
}

fn pressures_text(catalog: &Catalog) -> Vec<String> {
    let mut lines = vec![format!("PRESSURE TYPES ({})", catalog.pressure_types().len())];
    for entry in catalog.pressure_types() {
        lines.extend(pressure_text(entry));
    }
    lines
}

fn pressure_text(entry: &PressureType) -> Vec<String> {
    let mut lines = vec![String::new(), format!("{}: {}", entry.id(), entry.name())];
    lines.extend(wrap(entry.description(), DETAIL_INDENT));
    lines
}

/// Greedy word wrap to [`TEXT_WIDTH`] columns, every line starting with `indent`.
fn wrap(text: &str, indent: &str) -> Vec<String> {
    wrap_hanging(text, indent, indent)
}

/// Greedy word wrap to [`TEXT_WIDTH`] columns: the first line starts with `first_indent`, the others with
/// `rest_indent`. A word longer than a line gets a line of its own rather than being split. An empty text gives one
/// line holding the indent, trimmed.
fn wrap_hanging(text: &str, first_indent: &str, rest_indent: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut current_width = 0;
    for word in text.split_whitespace() {
        let indent = if lines.is_empty() { first_indent } else { rest_indent };
        let width = TEXT_WIDTH.saturating_sub(indent.chars().count()).max(1);
        let word_width = word.chars().count();
        if current_width > 0 && current_width + 1 + word_width > width {
            lines.push(format!("{indent}{current}"));
            current.clear();
            current_width = 0;
        }
        if current_width > 0 {
            current.push(' ');
            current_width += 1;
        }
        current.push_str(word);
        current_width += word_width;
    }
    if current_width > 0 || lines.is_empty() {
        let indent = if lines.is_empty() { first_indent } else { rest_indent };
        lines.push(format!("{indent}{current}").trim_end().to_string());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_wrap(text: &str, indent: &str, expect: &[&str]) {
        assert_eq!(wrap(text, indent), expect);
    }

    #[test]
    fn wrap_keeps_short_text_on_one_line() {
        check_wrap("a short  text", "  ", &["  a short text"]);
    }

    #[test]
    fn wrap_breaks_at_the_width() {
        let word = "x".repeat(49);
        let text = format!("{word} {word} {word}");
        check_wrap(&text, "", &[&format!("{word} {word}"), &word]);
        check_wrap(&text, "  ", &[&format!("  {word}"), &format!("  {word}"), &format!("  {word}")]);
    }

    #[test]
    fn wrap_gives_long_words_their_own_line() {
        let long = "y".repeat(120);
        check_wrap(&format!("a {long} b"), "", &["a", &long, "b"]);
    }

    #[test]
    fn wrap_hanging_indents_continuation_lines() {
        let word = "z".repeat(45);
        let text = format!("- {word} {word} {word}");
        assert_eq!(wrap_hanging(&text, "| ", "|   "), [format!("| - {word} {word}"), format!("|   {word}")]);
    }

    #[test]
    fn wrap_of_empty_text_is_one_blank_line() {
        check_wrap("", "    | ", &["    |"]);
    }

    #[test]
    fn text_lines_fit_the_width() {
        let catalog = Catalog::builtin();
        let lines =
            [traits_text(catalog), domains_text(catalog), personas_text(catalog), pressures_text(catalog)].concat();
        for line in lines {
            let is_single_word = line.split_whitespace().count() <= 1;
            assert!(line.chars().count() <= TEXT_WIDTH || is_single_word, "too wide: {line}");
        }
    }
}
