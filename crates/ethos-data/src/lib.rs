//! Scenario data: the project's offline scenario bank, validation against the catalog, near-duplicate detection
//! (MinHash over word shingles), train / held-out splits and domain filters, per-cell counts, and LLM-driven
//! scenario generation.

pub mod bank;
pub mod dedup;
pub mod generate;
pub mod select;
pub mod summary;
pub mod validate;

pub use bank::{bank_scenarios, BankError};
pub use dedup::{near_duplicate_pairs, MinHasher, NearDuplicate};
pub use select::{DomainFilter, ScenarioFilter};
pub use summary::CellCounts;
pub use validate::{validate_scenario, validate_scenarios, ValidationIssue};
