//! Text tables for the terminal. Every table the binaries print goes through
//! [`Table`]: a header and rows of cells, each column as wide as its widest
//! cell, columns two spaces apart, no blanks at the end of a line.

/// A table under construction: the header, then one row per call to
/// [`Table::row`].
#[derive(Debug, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|cell| (*cell).to_owned()).collect()],
        }
    }

    /// Adds a row: one cell per header column (missing cells are blank,
    /// extra ones are dropped).
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    /// The lines of the table, without a newline after the last one.
    pub fn render(&self) -> String {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|col| {
                self.rows
                    .iter()
                    .map(|row| cell(row, col).chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        self.rows
            .iter()
            .map(|row| {
                widths
                    .iter()
                    .enumerate()
                    .map(|(col, width)| format!("{:<width$}", cell(row, col)))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The cell at `col`, blank when the row is short.
fn cell(row: &[String], col: usize) -> &str {
    row.get(col).map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_end_without_blanks() {
        let mut table = Table::new(&["NAME", "N", "NOTE"]);
        table.row(["list".to_owned(), "12345".to_owned(), String::new()]);
        table.row(["dashboard".to_owned(), "7".to_owned(), "ok".to_owned()]);
        assert_eq!(
            table.render(),
            "NAME       N      NOTE\nlist       12345\ndashboard  7      ok"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut table = Table::new(&["A", "B"]);
        table.row(["é…".to_owned(), "x".to_owned()]);
        assert_eq!(table.render(), "A   B\né…  x");
    }
}
