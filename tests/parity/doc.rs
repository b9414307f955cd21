//! docs/RSYNC_COMPATIBILITY.md stays true: every option of the installed rsync's `--help` has
//! a row; a `yes` or `accepted` option is in arsync's option table, a `yes` one is used by a
//! test (most compare with rsync), and a `no` one is refused with exit 1, never ignored.

use std::collections::BTreeMap;

use crate::common::*;

/// The doc's rows: option → status.
fn rows() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/RSYNC_COMPATIBILITY.md"
    ))
    .expect("docs/RSYNC_COMPATIBILITY.md");
    let mut rows = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `--long` `-s` | status | …
        if cells.len() < 4 || !cells[1].starts_with("`--") {
            continue;
        }
        let long = cells[1].split('`').nth(1).unwrap_or("").to_owned();
        rows.insert(long, cells[2].to_owned());
    }
    rows
}

/// rsync's long options, from its `--help`.
fn rsync_options() -> Vec<String> {
    let s = Scratch::new();
    let help = rsync(s.path(), &["--help"]).stdout_str();
    help.lines()
        .filter_map(|l| {
            let t = l.trim_start();
            t.starts_with("--")
                .then(|| t.split([' ', '=', ',']).next().unwrap_or("").to_owned())
        })
        .filter(|o| o.len() > 2)
        .collect()
}

#[test]
fn every_rsync_option_has_a_true_row() {
    let rows = rows();
    let s = Scratch::new();
    let ours = arsync(s.path(), &["--help"]).stdout_str();
    let in_table = |long: &str| {
        ours.match_indices(long).any(|(i, _)| {
            !ours[i + long.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '-')
        })
    };
    let mut tests = String::new();
    for dir in ["tests", "tests/parity"] {
        let dir = format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"));
        for e in std::fs::read_dir(dir).expect("tests").flatten() {
            if e.path().extension().is_some_and(|x| x == "rs") && !e.path().ends_with("doc.rs") {
                tests.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    let mut wrong = Vec::new();
    for long in rsync_options() {
        let Some(status) = rows.get(&long) else {
            wrong.push(format!("{long}: no row"));
            continue;
        };
        // `--no-OPTION` is rsync's family of negations: arsync's must work for one.
        if long == "--no-OPTION" {
            mkdir(&s.join("src"));
            let run = arsync(s.path(), &["-a", "--no-perms", "--no-D", "src/", "dst/"]);
            if run.code() != Some(0) || status != "differs" {
                wrong.push(format!("{long}: negations must work and be `differs`"));
            }
            continue;
        }
        match status.as_str() {
            "yes" | "accepted" | "differs" if !in_table(&long) => {
                wrong.push(format!("{long}: `{status}` but not in arsync --help"))
            }
            "yes" if !tests.contains(&long) && !short_tested(&long, &tests) => {
                wrong.push(format!("{long}: `yes` but no test uses it"))
            }
            "no" => {
                mkdir(&s.join("src"));
                let run = arsync(s.path(), &[&long, "src/", "dst/"]);
                if run.code() != Some(1) {
                    wrong.push(format!("{long}: `no` but arsync exits {:?}", run.code()));
                }
            }
            "yes" | "accepted" | "differs" => {}
            other => wrong.push(format!("{long}: unknown status {other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/RSYNC_COMPATIBILITY.md:\n{}",
        wrong.join("\n")
    );
}

/// Options the tests use by their short letter (`-a`'s `-rlptgoD` included).
fn short_tested(long: &str, tests: &str) -> bool {
    let short = match long {
        "--recursive" => 'r',
        "--links" => 'l',
        "--perms" => 'p',
        "--times" => 't',
        "--group" => 'g',
        "--owner" => 'o',
        "--archive" => 'a',
        "--verbose" => 'v',
        "--quiet" => 'q',
        "--checksum" => 'c',
        "--hard-links" => 'H',
        "--xattrs" => 'X',
        "--dry-run" => 'n',
        "--whole-file" => 'W',
        "--ignore-times" => 'I',
        "--compress" => 'z',
        "--itemize-changes" => 'i',
        "--human-readable" => 'h',
        "--rsh" => 'e',
        "--one-file-system" => 'x',
        "--prune-empty-dirs" => 'm',
        "--relative" => 'R',
        "--update" => 'u',
        "--backup" => 'b',
        "--copy-links" => 'L',
        "--copy-dirlinks" => 'k',
        "--keep-dirlinks" => 'K',
        "--omit-dir-times" => 'O',
        "--omit-link-times" => 'J',
        "--secluded-args" => 's',
        "--8-bit-output" => '8',
        "--dirs" => 'd',
        "--from0" => '0',
        _ => return false,
    };
    tests.match_indices("\"-").any(|(i, _)| {
        let cluster: String = tests[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        cluster.contains(short) || (cluster.contains('a') && "rlptgoD".contains(short))
    })
}
