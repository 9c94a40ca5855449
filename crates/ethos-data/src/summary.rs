//! Counts of scenarios per trait x domain cell, for `ethos data stats`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ethos_core::catalog::Catalog;
use ethos_core::records::Scenario;
use serde::Serialize;

/// Scenario counts per (trait, domain), in catalog order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellCounts {
    /// Trait ids, catalog order.
    pub traits: Vec<String>,
    /// Domain ids, catalog order.
    pub domains: Vec<String>,
    /// `counts[t][d]`.
    pub counts: Vec<Vec<usize>>,
    /// Scenarios whose trait or domain is not in the catalog, by `trait/domain`.
    pub unknown: BTreeMap<String, usize>,
}

impl CellCounts {
    /// Counts `scenarios` over the catalog's cells.
    pub fn new<'a>(scenarios: impl IntoIterator<Item = &'a Scenario>, catalog: &Catalog) -> Self {
        let traits: Vec<String> = catalog.traits().iter().map(|t| t.id().to_string()).collect();
        let domains: Vec<String> = catalog.domains().iter().map(|d| d.id().to_string()).collect();
        let mut counts = vec![vec![0; domains.len()]; traits.len()];
        let mut unknown = BTreeMap::new();
        for s in scenarios {
            match (traits.iter().position(|t| *t == s.trait_id), domains.iter().position(|d| *d == s.domain)) {
                (Some(t), Some(d)) => counts[t][d] += 1,
                _ => *unknown.entry(format!("{}/{}", s.trait_id, s.domain)).or_insert(0) += 1,
            }
        }
        Self { traits, domains, counts, unknown }
    }

    /// Total scenarios counted in cells.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// The smallest cell count.
    pub fn min_cell(&self) -> usize {
        self.counts.iter().flatten().copied().min().unwrap_or(0)
    }

    /// The cells with fewer than `n` scenarios, as `trait x domain`.
    pub fn cells_below(&self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (t, row) in self.counts.iter().enumerate() {
            for (d, &c) in row.iter().enumerate() {
                if c < n {
                    out.push(format!("{} x {}", self.traits[t], self.domains[d]));
                }
            }
        }
        out
    }

    /// A fixed-width table: one row per trait, one column per domain (abbreviated to 5 characters), row totals.
    pub fn render(&self) -> String {
        let width = self.traits.iter().map(String::len).max().unwrap_or(5).max(5);
        let mut out = format!("{:width$}", "trait");
        for d in &self.domains {
            let short: String = d.chars().take(5).collect();
            let _ = write!(out, " {short:>5}");
        }
        out.push_str("  total\n");
        for (t, row) in self.counts.iter().enumerate() {
            let _ = write!(out, "{:width$}", self.traits[t]);
            for c in row {
                let _ = write!(out, " {c:>5}");
            }
            let _ = writeln!(out, "  {:>5}", row.iter().sum::<usize>());
        }
        let _ = write!(out, "{:width$}", "total");
        for d in 0..self.domains.len() {
            let _ = write!(out, " {:>5}", self.counts.iter().map(|r| r[d]).sum::<usize>());
        }
        let _ = writeln!(out, "  {:>5}", self.total());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cells_and_reports_gaps() {
        let catalog = Catalog::builtin();
        let bank = crate::bank_scenarios().expect("valid bank");
        let mut scenarios: Vec<Scenario> = bank.iter().take(2).cloned().collect();
        if let Some(first) = scenarios.first().cloned() {
            scenarios.push(Scenario { trait_id: "astrology".into(), ..first });
        }
        let counts = CellCounts::new(&scenarios, catalog);
        assert_eq!(counts.total() + counts.unknown.values().sum::<usize>(), scenarios.len());
        assert_eq!(counts.cells_below(1).len(), 15 * 12 - counts.counts.iter().flatten().filter(|&&c| c > 0).count());
        let table = counts.render();
        assert_eq!(table.lines().count(), 15 + 2, "{table}");
        assert!(table.lines().next().is_some_and(|l| l.contains("healt") && l.ends_with("total")));
    }
}
