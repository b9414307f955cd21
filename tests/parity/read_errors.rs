//! A source directory the sender cannot read must not cost the destination its files: rsync
//! then deletes nothing ("IO error encountered -- skipping file deletion", exit 23), and so
//! must arsync in every role. The tools run as `nobody` (`runuser`), since root reads a
//! mode-000 directory anyway; the arsync binary is copied where `nobody` may run it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// What a run as `nobody` said and how it ended.
pub(crate) struct Out {
    pub(crate) code: Option<i32>,
    /// Both streams: arsync warns on stderr; a remote rsync's message is printed on stdout.
    pub(crate) stderr: String,
}

pub(crate) fn as_nobody(cwd: &Path, program: &Path, args: &[String]) -> Out {
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("runuser");
    Out {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout),
    }
}

pub(crate) fn chown_tree(root: &Path) {
    let st = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(root)
        .status()
        .expect("chown");
    assert!(st.success());
}

/// A scratch directory `nobody` may enter, with a copy of arsync it may run and the remote
/// shell: `(scratch, arsync, rsh)`.
pub(crate) fn nobody_scratch() -> (Scratch, std::path::PathBuf, std::path::PathBuf) {
    let s = Scratch::new();
    fs::set_permissions(s.path(), fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    let bin = s.join("arsync");
    fs::copy(ARSYNC, &bin).expect("copy arsync");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod arsync");
    let rsh = crate::harness::fake_rsh(s.path());
    (s, bin, rsh)
}

#[test]
fn an_unreadable_source_directory_deletes_nothing_in_any_role() {
    let (s, bin, rsh) = nobody_scratch();
    let rsync_bin = rsync_path();
    let roles: [(&str, &[&str], bool); 5] = [
        ("local", &[], false),
        ("merkle push", &["--protocol=merkle"], true),
        ("merkle pull", &["--protocol=merkle"], false),
        ("rsync push", &["--protocol=rsync"], true),
        ("rsync pull", &["--protocol=rsync"], false),
    ];
    for (i, (role, extra, push)) in roles.into_iter().enumerate() {
        let dir = s.join(format!("r{i}"));
        write(&dir.join("src/a"), b"a\n");
        write(&dir.join("src/sub/s"), b"s\n");
        write(&dir.join("dst/sub/old"), b"keep me\n");
        write(&dir.join("dst/extra"), b"extraneous\n");
        chown_tree(&dir);
        fs::set_permissions(dir.join("src/sub"), fs::Permissions::from_mode(0o000)).unwrap();
        let remote = i > 0;
        let (src, dst) = match (remote, push) {
            (false, _) => ("src/".to_owned(), "dst/".to_owned()),
            (true, true) => ("src/".to_owned(), format!("host:{}/dst/", dir.display())),
            (true, false) => (format!("host:{}/src/", dir.display()), "dst/".to_owned()),
        };
        let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        if remote {
            args.push(format!("--rsh={}", rsh.display()));
            let path = if role.starts_with("rsync") {
                rsync_bin.display().to_string()
            } else {
                bin.display().to_string()
            };
            args.push(format!("--rsync-path={path}"));
        }
        args.extend(["-r".to_owned(), "--delete".to_owned(), src, dst]);
        let out = as_nobody(&dir, &bin, &args);
        let kept = dir.join("dst/sub/old");
        assert!(
            kept.exists(),
            "{role}: a file under the unreadable directory was deleted\n{}",
            out.stderr
        );
        assert_eq!(out.code, Some(23), "{role}: {}", out.stderr);
        // Said by arsync itself; pushing to rsync, by rsync's receiver, and shown.
        assert!(
            out.stderr.contains("skipping file deletion"),
            "{role}: {}",
            out.stderr
        );
    }
    // rsync itself, as the reference, over the same shape locally.
    let dir = s.join("ref");
    write(&dir.join("src/a"), b"a\n");
    write(&dir.join("src/sub/s"), b"s\n");
    write(&dir.join("dst/sub/old"), b"keep me\n");
    chown_tree(&dir);
    fs::set_permissions(dir.join("src/sub"), fs::Permissions::from_mode(0o000)).unwrap();
    let out = as_nobody(
        &dir,
        &rsync_bin,
        &["-r", "--delete", "src/", "dst/"].map(String::from),
    );
    assert_eq!(out.code, Some(23), "rsync: {}", out.stderr);
    assert!(dir.join("dst/sub/old").exists(), "rsync kept it too");
    for d in fs::read_dir(s.path()).unwrap().flatten() {
        let _ = fs::set_permissions(d.path().join("src/sub"), fs::Permissions::from_mode(0o755));
    }
}
