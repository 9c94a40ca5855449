//! Streaming JSONL and CSV readers and atomic writers whose errors name the file, the line and the field.
//!
//! Readers never panic on user data and never drop a line silently: a malformed line is an error, unless the
//! caller asked to skip invalid lines, in which case the skipped lines are counted and their errors kept.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What went wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordErrorKind {
    /// The file could not be opened or read.
    Io,
    /// The file has no records.
    Empty,
    /// A line is not valid UTF-8.
    NotUtf8,
    /// A line is not valid JSON.
    Syntax,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidValue,
    /// A CSV row has a different number of cells than the header.
    Ragged,
    /// A key that must be unique occurs twice.
    Duplicate,
}

/// An error in a record file, locating the problem as precisely as known: `file:line: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RecordError {
    /// What kind of problem.
    pub kind: RecordErrorKind,
    /// The file.
    pub path: PathBuf,
    /// 1-based line number, when the problem is on a line.
    pub line: Option<u64>,
    /// Field path (`conversation[1].content`) or CSV column name, when known.
    pub field: Option<String>,
    /// Human-readable description.
    pub message: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl RecordError {
    /// An error at a line of a file.
    pub fn at_line(
        kind: RecordErrorKind,
        path: &Path,
        line: u64,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        RecordError { kind, path: path.to_path_buf(), line: Some(line), field, message: message.into() }
    }

    /// An error about a whole file.
    pub fn in_file(kind: RecordErrorKind, path: &Path, message: impl Into<String>) -> Self {
        RecordError { kind, path: path.to_path_buf(), line: None, field: None, message: message.into() }
    }

    fn io(path: &Path, err: &io::Error) -> Self {
        Self::in_file(RecordErrorKind::Io, path, err.to_string())
    }
}

/// Streams records of type `T` from a JSON Lines file. Blank lines are ignored; every other line must be one
/// JSON value of type `T`. Yields `(line_number, record)`.
pub struct JsonlReader<T> {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    line_no: u64,
    buffer: Vec<u8>,
    n_records: u64,
    finished: bool,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> JsonlReader<T> {
    /// Opens a file for streaming.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RecordError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| RecordError::io(path, &e))?;
        Ok(Self::from_reader(path, BufReader::with_capacity(1 << 16, file)))
    }

    /// Streams from any reader; `path` names the source in errors.
    pub fn from_reader(path: impl AsRef<Path>, reader: impl BufRead + Send + 'static) -> Self {
        JsonlReader {
            path: path.as_ref().to_path_buf(),
            reader: Box::new(reader),
            line_no: 0,
            buffer: Vec::new(),
            n_records: 0,
            finished: false,
            _marker: std::marker::PhantomData,
        }
    }

    /// Number of records yielded so far.
    pub fn n_records(&self) -> u64 {
        self.n_records
    }
}

impl<T: DeserializeOwned> Iterator for JsonlReader<T> {
    type Item = Result<(u64, T), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => {
                    self.finished = true;
                    return None;
                }
                Ok(_) => {}
                Err(err) => {
                    self.finished = true;
                    return Some(Err(RecordError::io(&self.path, &err)));
                }
            }
            self.line_no += 1;
            let text = match std::str::from_utf8(&self.buffer) {
                Ok(text) => text,
                Err(err) => {
                    return Some(Err(RecordError::at_line(
                        RecordErrorKind::NotUtf8,
                        &self.path,
                        self.line_no,
                        None,
                        format!("line is not valid UTF-8 (invalid byte at column {})", err.valid_up_to() + 1),
                    )))
                }
            };
            let text = text.trim_start_matches('\u{feff}').trim();
            if text.is_empty() {
                continue;
            }
            let result = parse_json_line::<T>(text, &self.path, self.line_no);
            if result.is_ok() {
                self.n_records += 1;
            }
            return Some(result.map(|record| (self.line_no, record)));
        }
    }
}

/// Parses one JSON line into `T`, naming the field on error.
pub fn parse_json_line<T: DeserializeOwned>(text: &str, path: &Path, line: u64) -> Result<T, RecordError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    // Trailing garbage after the value is a syntax error, not silently ignored.
    if parsed.is_ok() {
        if let Err(err) = deserializer.end() {
            return Err(RecordError::at_line(RecordErrorKind::Syntax, path, line, None, err.to_string()));
        }
    }
    parsed.map_err(|err| {
        let field_path = err.path().to_string();
        let inner = err.into_inner();
        let kind = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => RecordErrorKind::Syntax,
            serde_json::error::Category::Io => RecordErrorKind::Io,
            serde_json::error::Category::Data => {
                if inner.to_string().starts_with("missing field") {
                    RecordErrorKind::MissingField
                } else {
                    RecordErrorKind::InvalidValue
                }
            }
        };
        let mut message = inner.to_string();
        // serde_json appends " at line 1 column N"; the line is ours, the column is useful only for syntax errors.
        if kind != RecordErrorKind::Syntax {
            if let Some(index) = message.find(" at line ") {
                message.truncate(index);
            }
        }
        let field = match kind {
            RecordErrorKind::MissingField => {
                let missing = message.split('`').nth(1).unwrap_or_default().to_string();
                Some(if field_path == "." || field_path.is_empty() {
                    missing
                } else {
                    format!("{field_path}.{missing}")
                })
            }
            RecordErrorKind::Syntax => None,
            _ if field_path == "." || field_path.is_empty() => None,
            _ => Some(field_path),
        };
        RecordError::at_line(kind, path, line, field, message)
    })
}

/// Options for reading a whole record file.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Skip malformed lines (counting them) instead of failing on the first.
    pub skip_invalid: bool,
    /// Accept a file with no records.
    pub allow_empty: bool,
}

/// The records of a file plus what was skipped.
#[derive(Debug)]
pub struct ReadOutcome<T> {
    /// Records with their line numbers, in file order.
    pub records: Vec<(u64, T)>,
    /// Errors of the lines skipped (empty unless `skip_invalid`).
    pub skipped: Vec<RecordError>,
}

/// Reads a whole JSONL file. Fails on the first malformed line unless `skip_invalid`; fails on an empty file
/// unless `allow_empty`.
pub fn read_jsonl<T: DeserializeOwned>(
    path: impl AsRef<Path>,
    options: ReadOptions,
) -> Result<ReadOutcome<T>, RecordError> {
    let path = path.as_ref();
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for result in JsonlReader::<T>::open(path)? {
        match result {
            Ok(record) => records.push(record),
            Err(err) if err.kind == RecordErrorKind::Io => return Err(err),
            Err(err) if options.skip_invalid => skipped.push(err),
            Err(err) => return Err(err),
        }
    }
    if records.is_empty() && skipped.is_empty() && !options.allow_empty {
        return Err(RecordError::in_file(RecordErrorKind::Empty, path, "file has no records"));
    }
    Ok(ReadOutcome { records, skipped })
}

/// Writes records to `path` atomically: a temporary file in the same directory, synced, then renamed over the
/// target, so a reader never sees a half-written file and a crash leaves the old file intact.
pub fn write_jsonl_atomic<T: Serialize>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = T>,
) -> io::Result<()> {
    write_atomic(path.as_ref(), |writer| {
        for record in records {
            serde_json::to_writer(&mut *writer, &record)?;
            writer.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Writes a file atomically with the bytes produced by `fill`.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(&dir)?;
    {
        let mut writer = io::BufWriter::new(temp.as_file_mut());
        fill(&mut writer)?;
        writer.flush()?;
    }
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

/// A table read from a CSV file with a header row. Cells are kept as strings; `line` of each row is the 1-based
/// line of the file where the row starts, so callers can name line and column in their own errors.
#[derive(Debug, Clone)]
pub struct CsvTable {
    /// The file.
    pub path: PathBuf,
    /// Column names from the header.
    pub header: Vec<String>,
    /// Rows with the line where each starts.
    pub rows: Vec<(u64, Vec<String>)>,
}

impl CsvTable {
    /// Reads a CSV file (UTF-8, optional BOM). Ragged rows and non-UTF-8 bytes are errors naming the line.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, RecordError> {
        let path = path.as_ref();
        let mut bytes = Vec::new();
        File::open(path).and_then(|mut file| file.read_to_end(&mut bytes)).map_err(|e| RecordError::io(path, &e))?;
        let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(body);
        let mut header: Option<Vec<String>> = None;
        let mut rows = Vec::new();
        for result in reader.byte_records() {
            let record = result.map_err(|err| {
                let line = err.position().map(|p| p.line()).unwrap_or(0);
                RecordError::at_line(RecordErrorKind::Syntax, path, line, None, err.to_string())
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let mut cells = Vec::with_capacity(record.len());
            for (column_idx, cell) in record.iter().enumerate() {
                let text = std::str::from_utf8(cell).map_err(|_| {
                    let field = header.as_ref().and_then(|h| h.get(column_idx).cloned());
                    RecordError::at_line(
                        RecordErrorKind::NotUtf8,
                        path,
                        line,
                        field,
                        format!("cell in column {} is not valid UTF-8", column_idx + 1),
                    )
                })?;
                cells.push(text.to_string());
            }
            match &header {
                None => header = Some(cells.iter().map(|c| c.trim().to_string()).collect()),
                Some(names) => {
                    if cells.iter().all(|c| c.trim().is_empty()) {
                        continue;
                    }
                    if cells.len() != names.len() {
                        return Err(RecordError::at_line(
                            RecordErrorKind::Ragged,
                            path,
                            line,
                            None,
                            format!("row has {} cells but the header has {} columns", cells.len(), names.len()),
                        ));
                    }
                    rows.push((line, cells));
                }
            }
        }
        let Some(header) = header else {
            return Err(RecordError::in_file(RecordErrorKind::Empty, path, "file is empty (no header row)"));
        };
        Ok(CsvTable { path: path.to_path_buf(), header, rows })
    }

    /// Index of a column by name, or an error naming the missing column.
    pub fn column(&self, name: &str) -> Result<usize, RecordError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| RecordError {
            kind: RecordErrorKind::MissingField,
            path: self.path.clone(),
            line: Some(1),
            field: Some(name.to_string()),
            message: format!("header has no column `{name}` (columns: {})", self.header.join(", ")),
        })
    }

    /// Parses a cell as a finite or NaN float; an empty cell is `None`. Errors name line and column.
    pub fn parse_f64(&self, row_idx: usize, column_idx: usize) -> Result<Option<f64>, RecordError> {
        let (line, cells) = &self.rows[row_idx];
        let cell = cells[column_idx].trim();
        if cell.is_empty() || cell.eq_ignore_ascii_case("na") || cell.eq_ignore_ascii_case("nan") {
            return Ok(None);
        }
        cell.parse::<f64>().map(Some).map_err(|_| {
            RecordError::at_line(
                RecordErrorKind::InvalidValue,
                &self.path,
                *line,
                self.header.get(column_idx).cloned(),
                format!("`{cell}` is not a number (column {})", column_idx + 1),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ConversationRecord, ItemScore};

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn first_error<T: DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) -> RecordError {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "input.jsonl", bytes);
        read_jsonl::<T>(&path, ReadOptions::default()).unwrap_err()
    }

    #[test]
    fn reads_records_with_line_numbers_skipping_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "a.jsonl",
            b"{\"benchmark\":\"b\",\"item\":\"1\",\"score\":0.5}\n\n{\"benchmark\":\"b\",\"item\":\"2\",\"score\":1}\n",
        );
        let outcome = read_jsonl::<ItemScore>(&path, ReadOptions::default()).unwrap();
        let lines: Vec<u64> = outcome.records.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![1, 3]);
    }

    #[test]
    fn bad_json_names_line() {
        let err = first_error::<ItemScore>(b"{\"benchmark\":\"b\",\"item\":\"1\",\"score\":0.5}\n{\"benchmark\":\n");
        assert_eq!(err.kind, RecordErrorKind::Syntax);
        assert_eq!(err.line, Some(2));
        assert!(err.to_string().contains("input.jsonl:2:"), "{err}");
    }

    #[test]
    fn missing_field_names_field() {
        let err = first_error::<ItemScore>(b"{\"benchmark\":\"b\",\"score\":0.5}\n");
        assert_eq!(err.kind, RecordErrorKind::MissingField);
        assert_eq!(err.field.as_deref(), Some("item"));
        assert!(err.to_string().contains("input.jsonl:1: field `item`: missing field"), "{err}");
    }

    #[test]
    fn nested_missing_field_names_full_path() {
        let err = first_error::<ConversationRecord>(b"{\"id\":\"x\",\"conversation\":[{\"role\":\"user\"}]}\n");
        assert_eq!(err.field.as_deref(), Some("conversation[0].content"));
    }

    #[test]
    fn wrong_type_names_field() {
        let err = first_error::<ItemScore>(b"{\"benchmark\":\"b\",\"item\":\"1\",\"score\":\"high\"}\n");
        assert_eq!(err.kind, RecordErrorKind::InvalidValue);
        assert_eq!(err.field.as_deref(), Some("score"));
    }

    #[test]
    fn empty_file_is_an_error() {
        let err = first_error::<ItemScore>(b"\n\n");
        assert_eq!(err.kind, RecordErrorKind::Empty);
    }

    #[test]
    fn non_utf8_names_line() {
        let err =
            first_error::<ItemScore>(b"{\"benchmark\":\"b\",\"item\":\"1\",\"score\":1}\n{\"benchmark\":\"\xff\"}\n");
        assert_eq!(err.kind, RecordErrorKind::NotUtf8);
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn trailing_garbage_is_a_syntax_error() {
        let err = first_error::<ItemScore>(b"{\"benchmark\":\"b\",\"item\":\"1\",\"score\":1} x\n");
        assert_eq!(err.kind, RecordErrorKind::Syntax);
    }

    #[test]
    fn skip_invalid_counts_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.jsonl", b"{\"benchmark\":\"b\",\"item\":\"1\",\"score\":1}\nnope\n{\"benchmark\":\"b\",\"item\":\"2\",\"score\":0}\n");
        let outcome = read_jsonl::<ItemScore>(&path, ReadOptions { skip_invalid: true, allow_empty: false }).unwrap();
        assert_eq!(outcome.records.len(), 2);
        assert_eq!(outcome.skipped.len(), 1);
        assert_eq!(outcome.skipped[0].line, Some(2));
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        write_jsonl_atomic(&path, [1, 2, 3]).unwrap();
        write_jsonl_atomic(&path, [4]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4\n");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "temporary files must not be left behind");
    }

    #[test]
    fn csv_ragged_row_names_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "m.csv", b"model,a,b\nm1,1,2\nm2,3\n");
        let err = CsvTable::read(&path).unwrap_err();
        assert_eq!(err.kind, RecordErrorKind::Ragged);
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn csv_non_numeric_cell_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "m.csv", b"\xef\xbb\xbfmodel,a,b\nm1,1,x\n");
        let table = CsvTable::read(&path).unwrap();
        assert_eq!(table.header[0], "model");
        let err = table.parse_f64(0, 2).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.field.as_deref(), Some("b"));
        assert_eq!(table.parse_f64(0, 1).unwrap(), Some(1.0));
    }
}
