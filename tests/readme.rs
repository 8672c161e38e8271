//! The README's deterministic output blocks are the program's output, not typing.
//!
//! Each block follows a marker line `<!-- output of: flopcal ARGS -->` and is a
//! ```` ```text ```` fence holding what `flopcal ARGS` prints on stdout with prices aged
//! to [`TODAY`]. The test runs every marked command and fails when a block differs;
//! `FLOPCAL_UPDATE_README=1 cargo test --release --test readme` rewrites the blocks
//! from the program instead (the script that regenerates them).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::path::Path;

/// The date the README's prices are aged against (`$FLOPCAL_TODAY`).
const TODAY: &str = "2026-12-03";
const MARK: &str = "<!-- output of: flopcal ";

/// One marked block: the marker's line index, the arguments, and the fence's line range
/// (first and last content line, exclusive of the fences).
struct Block {
    args: Vec<String>,
    start: usize,
    end: usize,
}

fn blocks(lines: &[&str]) -> Vec<Block> {
    let mut out = vec![];
    let mut i = 0;
    while i < lines.len() {
        if let Some(rest) = lines[i].strip_prefix(MARK) {
            let args = rest
                .strip_suffix(" -->")
                .unwrap_or_else(|| panic!("README line {}: a marker ends with ` -->`", i + 1))
                .split_whitespace()
                .map(String::from)
                .collect();
            assert_eq!(
                lines.get(i + 1).copied(),
                Some("```text"),
                "README line {}: a ```text fence must follow the marker",
                i + 2
            );
            let start = i + 2;
            let end = (start..lines.len())
                .find(|&j| lines[j] == "```")
                .unwrap_or_else(|| panic!("README line {}: the fence is not closed", i + 2));
            out.push(Block { args, start, end });
            i = end;
        }
        i += 1;
    }
    out
}

fn output_of(args: &[String]) -> String {
    let out = common::stdout_of(
        common::flopcal().args(args).env("FLOPCAL_TODAY", TODAY),
        format!("flopcal {}", args.join(" ")),
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_output_blocks_are_what_the_commands_print() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let found = blocks(&lines);
    assert!(
        found.len() >= 4,
        "{} marked blocks in the README",
        found.len()
    );
    let update = std::env::var_os("FLOPCAL_UPDATE_README").is_some();
    let mut rebuilt: Vec<String> = vec![];
    let mut at = 0;
    let mut stale = vec![];
    for b in &found {
        let got = output_of(&b.args);
        let have = lines[b.start..b.end].join("\n");
        if got != have {
            stale.push(format!("flopcal {}", b.args.join(" ")));
        }
        rebuilt.extend(lines[at..b.start].iter().map(|l| l.to_string()));
        rebuilt.push(got);
        at = b.end;
    }
    rebuilt.extend(lines[at..].iter().map(|l| l.to_string()));
    if update {
        std::fs::write(&path, rebuilt.join("\n") + "\n").unwrap();
        return;
    }
    assert!(
        stale.is_empty(),
        "README blocks differ from what these print: {}; regenerate them with \
         `FLOPCAL_UPDATE_README=1 cargo test --release --test readme`",
        stale.join("; ")
    );
}

#[test]
fn a_marker_without_its_fence_is_refused() {
    let ok = [
        "x",
        "<!-- output of: flopcal plan --top 1 -->",
        "```text",
        "a",
        "b",
        "```",
    ];
    let b = blocks(&ok);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].args, ["plan", "--top", "1"]);
    assert_eq!((b[0].start, b[0].end), (3, 5));
    let bad = std::panic::catch_unwind(|| blocks(&["<!-- output of: flopcal plan -->", "a"]));
    assert!(bad.is_err());
}
