//! One table type rendered four ways: aligned text, Markdown, CSV and JSON.
//! Every listing command prints through it (`--format table|md|csv|json`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[default]
    Table,
    Md,
    Csv,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "md" | "markdown" => Ok(Format::Md),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown format `{other}` (expected table, md, csv or json)"
            )),
        }
    }
}

/// A titled table of strings.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: Option<String>,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            title: Some(title.into()),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.text(),
            Format::Md => self.markdown(),
            Format::Csv => self.csv(),
            Format::Json => serde_json::to_string_pretty(&self.json()).unwrap_or_default() + "\n",
        }
    }

    /// Rows as objects keyed by header (numbers stay numbers).
    pub fn json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut map = serde_json::Map::new();
                for (h, v) in self.headers.iter().zip(row) {
                    let value = v
                        .parse::<i64>()
                        .map(serde_json::Value::from)
                        .or_else(|_| v.parse::<f64>().map(serde_json::Value::from))
                        .unwrap_or_else(|_| serde_json::Value::String(v.clone()));
                    map.insert(h.clone(), value);
                }
                serde_json::Value::Object(map)
            })
            .collect();
        serde_json::Value::Array(rows)
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < w.len() {
                    w[i] = w[i].max(cell.chars().count());
                }
            }
        }
        w
    }

    fn text(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        if let Some(t) = &self.title {
            out.push_str(t);
            out.push('\n');
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let numeric = cell.parse::<f64>().is_ok() || cell.ends_with('%');
                if i > 0 {
                    s.push_str("  ");
                }
                if numeric && i > 0 {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        out.push_str(&line(&self.headers));
        out.push_str(
            &(widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("  ")
                + "\n"),
        );
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        if let Some(t) = &self.title {
            out.push_str(&format!("**{t}**\n\n"));
        }
        let esc = |s: &String| s.replace('|', "\\|");
        out.push_str(&format!(
            "| {} |\n",
            self.headers.iter().map(esc).collect::<Vec<_>>().join(" | ")
        ));
        out.push_str(&format!(
            "|{}\n",
            self.headers.iter().map(|_| "---|").collect::<String>()
        ));
        for row in &self.rows {
            out.push_str(&format!(
                "| {} |\n",
                row.iter().map(esc).collect::<Vec<_>>().join(" | ")
            ));
        }
        out
    }

    fn csv(&self) -> String {
        let field = |s: &String| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        };
        let mut out = self.headers.iter().map(field).collect::<Vec<_>>().join(",") + "\n";
        for row in &self.rows {
            out.push_str(&(row.iter().map(field).collect::<Vec<_>>().join(",") + "\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_format() {
        let mut t = Table::new("t", &["name", "rows"]);
        t.push(vec!["a,b".into(), "10".into()]);
        assert_eq!(t.render(Format::Csv), "name,rows\n\"a,b\",10\n");
        assert_eq!(
            t.render(Format::Md),
            "**t**\n\n| name | rows |\n|---|---|\n| a,b | 10 |\n"
        );
        assert_eq!(
            t.render(Format::Table),
            "t\nname  rows\n----  ----\na,b     10\n"
        );
        assert_eq!(t.json()[0]["rows"], 10);
    }
}
