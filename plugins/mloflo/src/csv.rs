//! MLOFLO's CSV export/import format as a stream: `first, last, email, phone, street, city,
//! state, county, zip, dob, source, tags`, read from the file named by `csv_path`.
//!
//! A record per data row. Its id is the file's content fingerprint and the row's line, so reading
//! the same file again yields the same ids and a different file new ones; the stored cursor is
//! `<fingerprint>:<rows delivered>`, so a replaced file is read from its first row.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tether_abi::{Page, Record};

use crate::api;
use crate::error::MlofloError;

/// One row as parsed: the line it starts on and its cells.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub line: usize,
    pub cells: Vec<String>,
}

/// RFC 4180: quoted cells may hold commas, doubled quotes and line breaks; CRLF or LF.
pub fn parse(text: &str) -> Result<Vec<Row>, MlofloError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut line = 1;
    let mut row_line = 1;
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                cell.push(c);
            }
            (false, '"') if cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            (false, ',') => cells.push(std::mem::take(&mut cell)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                cells.push(std::mem::take(&mut cell));
                if !(cells.len() == 1 && cells[0].trim().is_empty()) {
                    rows.push(Row {
                        line: row_line,
                        cells: std::mem::take(&mut cells),
                    });
                }
                cells.clear();
                line += 1;
                row_line = line;
            }
            (false, c) => cell.push(c),
        }
    }
    if quoted {
        return Err(MlofloError::Csv(format!(
            "a quoted cell opened on line {row_line} never closes"
        )));
    }
    if !cell.is_empty() || !cells.is_empty() {
        cells.push(cell);
        rows.push(Row { line: row_line, cells });
    }
    Ok(rows)
}

pub fn fingerprint(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn split_tags(value: &str) -> Vec<Value> {
    value
        .split([',', ';', '|'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| json!(t))
        .collect()
}

/// Column positions from the header row: known columns by name, case and spaces ignored.
fn columns(header: &Row) -> Result<Vec<Option<&'static str>>, MlofloError> {
    let positions: Vec<Option<&'static str>> = header
        .cells
        .iter()
        .map(|h| {
            let name = h.trim().to_ascii_lowercase();
            api::CSV_COLUMNS.iter().copied().find(|c| *c == name)
        })
        .collect();
    let missing: Vec<&str> = api::CSV_IDENTITY
        .iter()
        .copied()
        .filter(|c| !positions.contains(&Some(*c)))
        .collect();
    if missing.len() == api::CSV_IDENTITY.len() {
        return Err(MlofloError::Csv(format!(
            "the header row names none of {}; is this an MLOFLO export? (columns: {})",
            api::CSV_IDENTITY.join(", "),
            api::CSV_COLUMNS.join(", ")
        )));
    }
    Ok(positions)
}

/// A row's record. Every known column is present (`null` when empty), so mappings can test
/// any of them; `problems` lists what is wrong with the row itself.
fn row_record(fingerprint: &str, columns: &[Option<&'static str>], row: &Row) -> Record {
    let mut fields = Map::new();
    for column in api::CSV_COLUMNS {
        fields.insert((*column).to_owned(), Value::Null);
    }
    let mut problems = Vec::new();
    if row.cells.len() != columns.len() {
        problems.push(json!(format!(
            "line {} has {} cells, the header {}",
            row.line,
            row.cells.len(),
            columns.len()
        )));
    }
    for (cell, column) in row.cells.iter().zip(columns) {
        let (Some(column), value) = (column, cell.trim()) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let value = if *column == "tags" {
            Value::Array(split_tags(value))
        } else {
            json!(value)
        };
        fields.insert((*column).to_owned(), value);
    }
    if api::CSV_IDENTITY
        .iter()
        .all(|c| fields.get(*c).is_none_or(Value::is_null))
    {
        problems.push(json!(format!("line {} has neither an email nor a phone", row.line)));
    }
    fields.insert("row".into(), json!(row.line));
    fields.insert("problems".into(), Value::Array(problems));
    Record {
        id: format!("{fingerprint}:{}", row.line),
        updated_at: None,
        deleted: false,
        parent: None,
        event: None,
        fields,
    }
}

/// One page of the file's rows after the cursor.
pub fn read_page(text: &str, cursor: Option<&str>, limit: usize) -> Result<Page, MlofloError> {
    let print = fingerprint(text);
    let done = match cursor.and_then(|c| c.split_once(':')) {
        Some((file, n)) if file == print => n
            .parse::<usize>()
            .map_err(|_| MlofloError::Input(format!("`{n}` is not a CSV cursor")))?,
        // Another file (or none read yet): from its first row.
        _ => 0,
    };
    let rows = parse(text)?;
    let Some((header, data)) = rows.split_first() else {
        return Ok(Page {
            records: Vec::new(),
            next: Some(format!("{print}:0")),
            has_more: false,
        });
    };
    let columns = columns(header)?;
    let records: Vec<Record> = data
        .iter()
        .skip(done)
        .take(limit.max(1))
        .map(|row| row_record(&print, &columns, row))
        .collect();
    let delivered = done + records.len();
    Ok(Page {
        records,
        next: Some(format!("{print}:{delivered}")),
        has_more: delivered < data.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_cells_keep_commas_quotes_and_line_breaks() {
        let rows = parse("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\"two\nlines\",z\n\n").expect("csv");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].cells, ["x, y", "say \"hi\""]);
        assert_eq!(rows[2].cells, ["two\nlines", "z"]);
        assert_eq!(rows[2].line, 3);
        assert!(parse("a\n\"open").is_err());
    }

    #[test]
    fn rows_become_records_with_their_problems() {
        let text = "First,Last,Email,Phone,Tags,Unknown\nAna,Lee,ana@example.com,,\"vip; va\",x\nBo,Ray,,,,\nCy\n";
        let page = read_page(text, None, 2).expect("page");
        assert_eq!(page.records.len(), 2);
        assert!(page.has_more);
        let ana = &page.records[0].fields;
        assert_eq!(ana["first"], "Ana");
        assert_eq!(ana["tags"], json!(["vip", "va"]));
        assert_eq!(ana["phone"], Value::Null);
        assert_eq!(ana["problems"], json!([]));
        let bo = &page.records[1].fields;
        assert!(
            bo["problems"][0].as_str().is_some_and(|p| p.contains("neither")),
            "{bo:?}"
        );
        let rest = read_page(text, page.next.as_deref(), 10).expect("rest");
        assert_eq!(rest.records.len(), 1);
        assert!(!rest.has_more);
        assert!(rest.records[0].fields["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("1 cells")));
        // The same cursor against another file starts over.
        let other = read_page("email\nz@example.com\n", page.next.as_deref(), 10).expect("other");
        assert_eq!(other.records.len(), 1);
        assert!(read_page("foo,bar\n1,2\n", None, 10).is_err());
    }
}
