//! Markdown output (a CI step summary): pipe tables with escaped cells.

/// A table cell's text with the characters that would break a pipe table escaped.
pub fn escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The head of a pipe table: the header row and the alignment row (`---` left,
/// `---:` right, one per column, given as `l` or `r`).
pub fn head(header: &[&str], align: &str) -> String {
    let rule: Vec<&str> = align
        .chars()
        .map(|c| if c == 'r' { "---:" } else { "---" })
        .collect();
    format!("| {} |\n|{}|\n", header.join(" | "), rule.join("|"))
}

/// One row of a pipe table from cells already escaped.
pub fn row<S: AsRef<str>>(cells: impl IntoIterator<Item = S>) -> String {
    let cells: Vec<String> = cells.into_iter().map(|c| c.as_ref().to_string()).collect();
    format!("| {} |\n", cells.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_in_a_cell_is_escaped_and_the_head_aligns_each_column() {
        assert_eq!(escape("a|b"), "a\\|b");
        assert_eq!(head(&["x", "y"], "lr"), "| x | y |\n|---|---:|\n");
        assert_eq!(row(["1", "2"]), "| 1 | 2 |\n");
    }
}
