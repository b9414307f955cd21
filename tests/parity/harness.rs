//! The parity harness: one case — options, a source and a destination to start from — run by
//! arsync in every role it can take and by rsync in the same shape, then compared: the
//! destination tree entry by entry, the source tree (options such as `--remove-source-files`
//! change it), the exit code, and the itemize/verbose lines.
//!
//! The remote roles go through a local "remote shell" (as rsync's own test suite does: it drops
//! the host name and runs the command here), so the bytes cross real pipes between real
//! processes; the reference for a remote role is rsync to rsync over the same shell.

use std::path::Path;

use crate::common::*;

/// One way arsync takes part in a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Both ends here: `arsync OPTS src/ dst/`.
    Local,
    /// arsync to `arsync --server` (the merkle protocol), pushing.
    MerklePush,
    /// arsync from `arsync --server --sender`, pulling.
    MerklePull,
    /// arsync speaking rsync's protocol to `rsync --server`, pushing.
    RsyncPush,
    /// arsync speaking rsync's protocol to `rsync --server --sender`, pulling.
    RsyncPull,
    /// The real rsync client with `arsync --server` as its receiver.
    RsyncClientPush,
    /// The real rsync client with `arsync --server --sender` as its sender.
    RsyncClientPull,
}

/// Every role.
pub const ALL_ROLES: [Role; 7] = [
    Role::Local,
    Role::MerklePush,
    Role::MerklePull,
    Role::RsyncPush,
    Role::RsyncPull,
    Role::RsyncClientPush,
    Role::RsyncClientPull,
];

/// What to compare of the two runs' standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// The itemize/verbose lines (summary lines with byte counts left out).
    Compare,
    /// Nothing (the option's effect is in the trees).
    #[allow(dead_code)] // for cases whose output rsync words differently by role
    Ignore,
}

/// One parity case.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    /// For messages.
    pub name: &'a str,
    /// The options, before the source and destination.
    pub args: &'a [&'a str],
    /// Build the source (`src`) and the destination to start from (`dst`; leave it missing
    /// for a fresh copy). Called once per side and role, so each run has its own.
    pub build: fn(src: &Path, dst: &Path),
    /// The roles to run.
    pub roles: &'a [Role],
    /// What to compare on stdout.
    pub lines: Lines,
}

pub use crate::common::fake_rsh;

/// The arguments for one run: options, then the sources (`src/` unless the case names
/// others) and the destination for `role`.
fn argv(
    case: &Case,
    role: Role,
    rsh: &Path,
    reference: bool,
    sources: &[&str],
    dest: &str,
) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let shell = |v: &mut Vec<String>, path: &str| {
        v.push(format!("--rsh={}", rsh.display()));
        v.push(format!("--rsync-path={path}"));
    };
    let rsync = rsync_path().display().to_string();
    match (role, reference) {
        (Role::Local, _) => {}
        (_, true) => shell(&mut v, &rsync),
        (Role::MerklePush | Role::MerklePull, false) => {
            v.push("--protocol=merkle".into());
            shell(&mut v, ARSYNC);
        }
        (Role::RsyncPush | Role::RsyncPull, false) => {
            v.push("--protocol=rsync".into());
            shell(&mut v, &rsync);
        }
        (Role::RsyncClientPush | Role::RsyncClientPull, false) => shell(&mut v, ARSYNC),
    }
    v.extend(case.args.iter().map(|a| a.to_string()));
    let (remote_src, dst) = match role {
        Role::Local => (false, dest.into()),
        Role::MerklePush | Role::RsyncPush | Role::RsyncClientPush => {
            (false, format!("host:{dest}"))
        }
        Role::MerklePull | Role::RsyncPull | Role::RsyncClientPull => (true, dest.into()),
    };
    for src in sources {
        v.push(if remote_src {
            format!("host:{src}")
        } else {
            src.to_string()
        });
    }
    v.push(dst);
    v
}

/// The lines worth comparing: not the byte-count summary, not blank lines.
pub fn comparable_lines(run: &Run) -> Vec<String> {
    let lines: Vec<String> = run
        .stdout_lines()
        .into_iter()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("sent ")
                && !l.starts_with("total size is ")
                && !l.starts_with("sending incremental file list")
                && !l.starts_with("receiving incremental file list")
                // An rsync client says this when its server declines incremental recursion,
                // as arsync --server does until it streams its file list (issue 18).
                && !l.starts_with("building file list ... done")
                && !l.starts_with("receiving file list ... done")
        })
        .collect();
    // Items in order (rsync's file-list order). Deletions, and the sender's notes on what it
    // leaves out (`skipping non-regular file`), are compared as sets after them: rsync prints
    // them from another process than the items, so where they fall among the items depends
    // on timing even between two rsyncs.
    let (mut apart, mut items): (Vec<String>, Vec<String>) = lines.into_iter().partition(|l| {
        l.starts_with("*deleting ") || l.starts_with("deleting ") || l.starts_with("skipping ")
    });
    apart.sort();
    items.push("(deletions and skipped entries)".into());
    items.extend(apart);
    items
}

/// A tree as the case's options keep it: hard-link groups only with `-H`, times only with
/// `-t` (or `-a`).
fn kept(case: &Case, mut t: Tree) -> Tree {
    let short = |c: char| {
        case.args
            .iter()
            .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(c))
    };
    let hard_links = short('H') || case.args.contains(&"--hard-links");
    let times = short('a') || short('t') || case.args.contains(&"--times");
    for e in t.values_mut() {
        if !hard_links {
            e.link_group = None;
        }
        if !times {
            // Without -t, what either tool wrote gets the time it was written.
            e.mtime = (0, 0);
        }
    }
    t
}

/// [`kept`], and in the source tree after `--remove-source-files` no directory times: removing
/// files gives their directories the time of the run. The same for the destination's top in
/// the `--delete-missing-args` cases (with the option or without it): its sources are named
/// files, no list entry sets its time back after a deletion or a new file.
fn kept_in(case: &Case, tree: &str, t: Tree) -> Tree {
    let mut t = kept(case, t);
    if tree == "src" && case.args.contains(&"--remove-source-files") {
        for e in t.values_mut().filter(|e| e.kind == Kind::Dir) {
            e.mtime = (0, 0);
        }
    }
    if tree == "dst" && case.name == "--delete-missing-args" {
        if let Some(top) = t.get_mut(Path::new(".")) {
            top.mtime = (0, 0);
        }
    }
    t
}

/// Run `args` over `build` in every role, comparing the itemized lines too.
pub fn check_all(name: &str, args: &[&str], build: fn(&Path, &Path)) {
    check(&Case {
        name,
        args,
        build,
        roles: &ALL_ROLES,
        lines: Lines::Compare,
    });
}

/// Run `case` in each of its roles and compare with rsync; panics with every difference.
pub fn check(case: &Case) {
    check_into(case, "dst/");
}

/// [`check`] with another destination argument than `dst/` (under `dst`, e.g. `dst/a/b/`).
pub fn check_into(case: &Case, dest: &str) {
    check_then(case, dest, |_, _, _| {});
}

/// [`check_into`], then `after(role, arsync's side, rsync's side)` for what the trees do not
/// show (e.g. how many blocks a file takes).
pub fn check_then(case: &Case, dest: &str, after: impl Fn(Role, &Path, &Path)) {
    check_sources_then(case, &["src/"], dest, after);
}

/// [`check`] with other source arguments than `src/` (paths from the side's directory; a
/// pulling role names each on the remote host).
pub fn check_sources(case: &Case, sources: &[&str]) {
    check_sources_then(case, sources, "dst/", |_, _, _| {});
}

/// A case's `@SIDE@` stands for the absolute path of the side a tool runs in (`a` or `r`):
/// rsync 3.5 refuses a relative `--temp-dir` that climbs out of the destination (`../tmp`:
/// "mkstemp … failed: Invalid argument"), so a directory beside the destination is named
/// absolutely.
fn at_side(args: Vec<String>, side: &Path) -> Vec<String> {
    let side = side.display().to_string();
    args.into_iter()
        .map(|a| a.replace("@SIDE@", &side))
        .collect()
}

fn check_sources_then(
    case: &Case,
    sources: &[&str],
    dest: &str,
    after: impl Fn(Role, &Path, &Path),
) {
    for &role in case.roles {
        let s = Scratch::new();
        let rsh = fake_rsh(s.path());
        let (a, r) = (s.side(Tool::Arsync), s.side(Tool::Rsync));
        for side in [&a, &r] {
            (case.build)(&side.join("src"), &side.join("dst"));
        }
        let a_args = at_side(argv(case, role, &rsh, false, sources, dest), &a);
        let r_args = at_side(argv(case, role, &rsh, true, sources, dest), &r);
        let a_refs: Vec<&str> = a_args.iter().map(String::as_str).collect();
        let r_refs: Vec<&str> = r_args.iter().map(String::as_str).collect();
        let ours = match role {
            Role::RsyncClientPush | Role::RsyncClientPull => rsync(&a, &a_refs),
            _ => arsync(&a, &a_refs),
        };
        let theirs = rsync(&r, &r_refs);
        let what = format!("{} ({role:?}: {:?})", case.name, case.args);
        assert_eq!(
            ours.code(),
            theirs.code(),
            "{what}: exit codes differ\n--- arsync ---\n{}\n--- rsync ---\n{}",
            ours.describe(),
            theirs.describe()
        );
        for tree in ["dst", "src"] {
            assert_same_tree(
                &format!("{what}: {tree}"),
                "arsync",
                &kept_in(case, tree, snapshot_if_any(&a.join(tree))),
                "rsync",
                &kept_in(case, tree, snapshot_if_any(&r.join(tree))),
            );
        }
        if case.lines == Lines::Compare {
            let (al, rl) = (comparable_lines(&ours), comparable_lines(&theirs));
            assert_eq!(
                al,
                rl,
                "{what}: stdout lines differ\n--- arsync ---\n{}\n--- rsync ---\n{}",
                ours.describe(),
                theirs.describe()
            );
        }
        after(role, &a, &r);
    }
}

/// A snapshot of `root`, or an empty tree when it does not exist.
fn snapshot_if_any(root: &Path) -> Tree {
    if root.symlink_metadata().is_ok() {
        snapshot(root)
    } else {
        Tree::default()
    }
}

/// rsync itself gives a different destination with `with` than with `without` (so a case
/// that passes cannot be passing by ignoring the option).
pub fn rsync_differs(with: &[&str], without: &[&str], build: fn(&Path, &Path)) {
    let trees: Vec<Tree> = [with, without]
        .iter()
        .map(|args| {
            let s = Scratch::new();
            let side = s.side(Tool::Rsync);
            build(&side.join("src"), &side.join("dst"));
            let mut v = args.to_vec();
            v.extend(["src/", "dst/"]);
            rsync(&side, &v);
            snapshot(&side.join("dst"))
        })
        .collect();
    assert!(
        !tree_diff("with", &trees[0], "without", &trees[1]).is_empty(),
        "{with:?} changes nothing in this fixture"
    );
}
