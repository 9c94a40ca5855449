//! ethos-core: the records every ethos stage exchanges, the catalog of traits, domains and personas, and
//! JSONL/CSV I/O whose errors name the file, the line and the field.
//!
//! Nothing here depends on another ethos crate; every other crate depends on this one.
//!
//! ```
//! use ethos_core::records::ItemScore;
//! let score: ItemScore = serde_json::from_str(r#"{"benchmark":"truthfulness","item":"s1","score":0.5}"#).unwrap();
//! assert_eq!(score.score, Some(0.5));
//! ```
#![deny(missing_docs)]

pub mod catalog;
pub mod io;
pub mod records;

pub use io::{RecordError, RecordErrorKind};
pub use records::SCHEMA_VERSION;
