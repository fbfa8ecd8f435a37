//! How CLI commands print: readable text by default (aligned `key  value` lines for one object, a table for a
//! list), the same data as JSON with `--json` for scripts. Nothing here writes colour.

use serde::Serialize;
use serde_json::Value;

/// The output mode of one command.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// One object: pretty JSON, or one aligned `key  value` line per field (nested fields as `a.b`).
    pub fn record<T: Serialize>(&self, v: &T) -> anyhow::Result<()> {
        let v = serde_json::to_value(v)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", record_text(&v));
        }
        Ok(())
    }

    /// A list: a JSON array, or a table of `columns` (header, field; a field may be a path `a.b`).
    pub fn table<T: Serialize>(&self, rows: &[T], columns: &[(&str, &str)]) -> anyhow::Result<()> {
        let rows = rows.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print!("{}", table_text(&rows, columns));
        }
        Ok(())
    }

    /// The outcome of an action: a sentence, or `json` with `--json`.
    pub fn done(&self, text: &str, json: Value) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            println!("{text}");
        }
        Ok(())
    }
}

/// A scalar as a table cell or value: strings bare, null as `-`, lists joined with commas.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
        other => other.to_string(),
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Object(map) => {
            // Fields come in name order (serde_json's map); the id leads.
            let (ids, rest): (Vec<_>, Vec<_>) = map.iter().partition(|(k, _)| k.as_str() == "id");
            for (k, v) in ids.into_iter().chain(rest) {
                flatten(&key(k), v, out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&key(&i.to_string()), item, out);
            }
        }
        other => out.push((prefix.to_string(), scalar(other))),
    }
}

/// `key  value` lines, keys padded to one width.
pub fn record_text(v: &Value) -> String {
    let mut fields = Vec::new();
    flatten("", v, &mut fields);
    let width = fields.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    fields.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

fn field<'a>(row: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(row, |v, k| v.get(k).unwrap_or(&Value::Null))
}

/// A header line and one line per row; columns as wide as their widest cell, the last one not padded.
pub fn table_text(rows: &[Value], columns: &[(&str, &str)]) -> String {
    let cells: Vec<Vec<String>> =
        rows.iter().map(|r| columns.iter().map(|(_, path)| scalar(field(r, path))).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| cells.iter().map(|c| c[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let line = |items: Vec<&str>| {
        let last = items.len().saturating_sub(1);
        let mut s = String::new();
        for (i, item) in items.into_iter().enumerate() {
            if i == last {
                s.push_str(item);
            } else {
                s.push_str(&format!("{item:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(columns.iter().map(|(h, _)| *h).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_is_aligned_lines_with_nested_keys() {
        let text = record_text(&json!({"id": 1, "name": "shop", "portal": null, "connector": {"status": "ok"},
                                       "warnings": ["a", "b"], "empty": []}));
        assert_eq!(
            text,
            "id                1\nconnector.status  ok\nempty             -\nname              shop\n\
             portal            -\nwarnings          a, b\n"
        );
    }

    #[test]
    fn a_table_fits_its_widest_cells() {
        let rows =
            vec![json!({"id": 1, "number": "+5511930001234", "c": {"s": "ok"}}), json!({"id": 22, "number": "+1"})];
        let text = table_text(&rows, &[("ID", "id"), ("NUMBER", "number"), ("LINE", "c.s")]);
        assert_eq!(text, "ID  NUMBER          LINE\n1   +5511930001234  ok\n22  +1              -\n");
        assert_eq!(table_text(&[], &[("ID", "id"), ("NAME", "name")]), "ID  NAME\n");
    }
}
