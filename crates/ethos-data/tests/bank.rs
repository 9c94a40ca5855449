//! The built-in scenario bank: every scenario valid, every trait x domain cell filled with at least three
//! scenarios, rubrics HealthBench-style, exemplars present, and near-duplicates rare.

use std::collections::HashSet;

use ethos_core::catalog::Catalog;
use ethos_core::records::{Role, Split};
use ethos_data::dedup::{near_duplicate_pairs, near_duplicate_rate, DEFAULT_THRESHOLD};
use ethos_data::{bank_scenarios, validate_scenarios, CellCounts};

#[test]
fn every_bank_scenario_is_valid_and_every_cell_has_three() {
    let catalog = Catalog::builtin();
    let bank = bank_scenarios().unwrap_or_else(|e| panic!("{e}"));
    assert!(bank.len() >= 540, "{} scenarios; the bank needs 15 x 12 x 3 = 540", bank.len());
    assert!(validate_scenarios(bank, catalog).is_empty());
    let counts = CellCounts::new(bank, catalog);
    assert!(counts.unknown.is_empty());
    assert_eq!(counts.cells_below(3), Vec::<String>::new(), "cells with fewer than 3 scenarios");
}

#[test]
fn splits_follow_the_catalog_and_exemplars_differ() {
    let catalog = Catalog::builtin();
    let bank = bank_scenarios().unwrap_or_else(|e| panic!("{e}"));
    for s in bank {
        let heldout = catalog.trait_by_id(&s.trait_id).is_some_and(|t| t.is_heldout());
        assert_eq!(s.split == Split::Heldout, heldout, "{}", s.id);
        let ex = s.exemplars.as_ref().unwrap_or_else(|| panic!("{} has no exemplars", s.id));
        assert_ne!(ex.good.trim(), ex.bad.trim(), "{}", s.id);
        assert!(s.rubric.iter().filter(|c| c.points > 0.0).count() >= 2, "{}: two positive criteria", s.id);
        assert!(s.pressure.is_some(), "{}", s.id);
    }
}

#[test]
fn pressure_types_vary_and_multi_turn_is_common() {
    let bank = bank_scenarios().unwrap_or_else(|e| panic!("{e}"));
    let pressures: HashSet<&str> = bank.iter().filter_map(|s| s.pressure.as_deref()).collect();
    assert!(pressures.len() >= 12, "only {} pressure types used", pressures.len());
    let multi = bank.iter().filter(|s| s.conversation.iter().filter(|m| m.role == Role::User).count() > 1).count();
    assert!(multi * 5 >= bank.len(), "{multi} of {} scenarios are multi-turn", bank.len());
    // Within a cell, the three scenarios use different pressure types.
    let mut seen = HashSet::new();
    let mut repeats = 0;
    for s in bank {
        if !seen.insert((s.trait_id.as_str(), s.domain.as_str(), s.pressure.as_deref())) {
            repeats += 1;
        }
    }
    assert!(repeats * 20 <= bank.len(), "{repeats} cells reuse a pressure type");
}

#[test]
fn near_duplicates_are_rare() {
    let bank = bank_scenarios().unwrap_or_else(|e| panic!("{e}"));
    let texts: Vec<String> =
        bank.iter().map(|s| s.conversation.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pairs = near_duplicate_pairs(&refs, DEFAULT_THRESHOLD);
    let rate = near_duplicate_rate(bank.len(), &pairs);
    let names: Vec<String> = pairs.iter().map(|p| format!("{} ~ {}", bank[p.first].id, bank[p.second].id)).collect();
    assert!(rate <= 0.01, "near-duplicate rate {rate}: {names:?}");
}
