//! Issue 15, acls: `-A` copies POSIX ACLs (named users and groups, the mask, directories'
//! default ACLs) as rsync does, and `-X` alone copies none. The trees the harness compares do
//! not show ACLs, so each case also compares every entry's ACLs (the kernel's
//! `system.posix_acl_access`/`system.posix_acl_default` values, which list the entries in one
//! canonical order) between arsync's and rsync's destinations.
//!
//! Roles: all of them — local, the merkle protocol both ways, and rsync's protocol both ways
//! and as a server (ACLs in rsync's file list, `proto::rsync::acl`).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::harness::{check_then, Case, Lines, Role, ALL_ROLES};

/// Every role carries ACLs.
const ACL_ROLES: [Role; 7] = ALL_ROLES;
/// The roles where `-X` works today.
const XATTR_ROLES: [Role; 3] = [Role::Local, Role::MerklePush, Role::MerklePull];

const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";

// ACL entry tags and the "no id" id of the kernel's xattr format (linux/posix_acl_xattr.h).
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const NO_ID: u32 = u32::MAX;

/// An ACL in the kernel's xattr format: version 2, then (tag, perms, id) sorted by tag and id.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

fn set_acl(p: &Path, name: &str, value: &[u8]) {
    let n = CString::new(name).expect("name");
    // SAFETY: both strings are NUL-terminated and `value` is valid for its length.
    let rc = unsafe {
        libc::setxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn get_acl(p: &Path, name: &str) -> Option<Vec<u8>> {
    let n = CString::new(name).expect("name");
    let mut buf = vec![0u8; 4096];
    // SAFETY: `buf` is valid for its length; both strings are NUL-terminated.
    let rc = unsafe {
        libc::lgetxattr(
            cpath(p).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (rc >= 0).then(|| {
        buf.truncate(rc as usize);
        buf
    })
}

/// Entry → (access ACL, default ACL) values.
type AclsByPath = BTreeMap<PathBuf, (Option<Vec<u8>>, Option<Vec<u8>>)>;

/// Every entry's ACLs under `root` (entries without any are left out).
fn acls(root: &Path) -> AclsByPath {
    snapshot(root)
        .into_iter()
        .filter(|(_, e)| e.kind != Kind::Symlink)
        .map(|(rel, _)| {
            let p = root.join(&rel);
            (rel, (get_acl(&p, ACCESS), get_acl(&p, DEFAULT)))
        })
        .filter(|(_, (a, d))| a.is_some() || d.is_some())
        .collect()
}

/// Files, directories and a FIFO with named-user, named-group, mask and default ACLs; a file that
/// inherits its ACL from its directory's default; a destination directory with a default ACL
/// the source's lacks (a new file made in it inherits one it must lose).
fn acl_tree(src: &Path, dst: &Path) {
    write(&src.join("plain"), b"no acl\n");
    write(&src.join("f"), b"named user and group\n");
    chmod(&src.join("f"), 0o640);
    set_acl(
        &src.join("f"),
        ACCESS,
        &acl(&[
            (USER_OBJ, 6, NO_ID),
            (USER, 4, 1),
            (GROUP_OBJ, 4, NO_ID),
            (GROUP, 6, 2),
            (MASK, 6, NO_ID),
            (OTHER, 0, NO_ID),
        ]),
    );
    mkdir(&src.join("d"));
    set_acl(
        &src.join("d"),
        ACCESS,
        &acl(&[
            (USER_OBJ, 7, NO_ID),
            (USER, 5, 3),
            (GROUP_OBJ, 5, NO_ID),
            (MASK, 7, NO_ID),
            (OTHER, 5, NO_ID),
        ]),
    );
    set_acl(
        &src.join("d"),
        DEFAULT,
        &acl(&[
            (USER_OBJ, 7, NO_ID),
            (USER, 5, 1),
            (GROUP_OBJ, 5, NO_ID),
            (GROUP, 1, 4),
            (MASK, 5, NO_ID),
            (OTHER, 0, NO_ID),
        ]),
    );
    // Made after the default ACL: inherits an access ACL from it.
    write(&src.join("d/inherited"), b"inherited\n");
    mkdir(&src.join("d/sub"));
    write(
        &src.join("e/new"),
        b"new in a directory that loses its default ACL\n",
    );
    symlink("f", &src.join("link"));
    mkfifo(&src.join("fifo"), 0o640);
    set_acl(
        &src.join("fifo"),
        ACCESS,
        &acl(&[
            (USER_OBJ, 6, NO_ID),
            (GROUP_OBJ, 4, NO_ID),
            (GROUP, 4, 3),
            (MASK, 4, NO_ID),
            (OTHER, 0, NO_ID),
        ]),
    );
    mkdir(&dst.join("e"));
    set_acl(
        &dst.join("e"),
        DEFAULT,
        &acl(&[
            (USER_OBJ, 7, NO_ID),
            (USER, 7, 5),
            (GROUP_OBJ, 7, NO_ID),
            (MASK, 7, NO_ID),
            (OTHER, 7, NO_ID),
        ]),
    );
    stamp_tree(src, 0);
    stamp_tree(dst, 1);
}

/// [`acl_tree`] over a destination holding the same files with other ACLs: `f` up to date but
/// with another named user, `plain` up to date with an ACL the source's lacks, `d` without its
/// ACLs, `d/inherited` with other content and no ACL.
fn acl_changes(src: &Path, dst: &Path) {
    acl_tree(src, dst);
    write(&dst.join("f"), b"named user and group\n");
    chmod(&dst.join("f"), 0o640);
    set_acl(
        &dst.join("f"),
        ACCESS,
        &acl(&[
            (USER_OBJ, 6, NO_ID),
            (USER, 4, 9),
            (GROUP_OBJ, 4, NO_ID),
            (GROUP, 6, 2),
            (MASK, 6, NO_ID),
            (OTHER, 0, NO_ID),
        ]),
    );
    write(&dst.join("plain"), b"no acl\n");
    set_acl(
        &dst.join("plain"),
        ACCESS,
        &acl(&[
            (USER_OBJ, 6, NO_ID),
            (USER, 6, 1),
            (GROUP_OBJ, 4, NO_ID),
            (MASK, 6, NO_ID),
            (OTHER, 4, NO_ID),
        ]),
    );
    write(&dst.join("d/inherited"), b"older\n");
    // The same times as the source's, so the quick check passes `f` and `plain`.
    stamp_tree(dst, 0);
}

/// [`acl_tree`] with hard links to a file with an ACL and to one without (rsync's list sends a
/// linked entry's ACLs after its abbreviated entry).
fn acl_links(src: &Path, dst: &Path) {
    acl_tree(src, dst);
    hard_link(&src.join("f"), &src.join("f-link"));
    hard_link(&src.join("plain"), &src.join("d/plain-link"));
    stamp_tree(src, 0);
}

/// Run `args` in `roles` against rsync, comparing the ACLs too; `expect_acls` says whether
/// the destination must have the source's (so a run that drops them cannot pass).
fn acl_case(name: &str, args: &[&str], roles: &[Role], expect_acls: bool) {
    acl_case_over(name, args, roles, expect_acls, acl_tree);
}

fn acl_case_over(
    name: &str,
    args: &[&str],
    roles: &[Role],
    expect_acls: bool,
    build: fn(&Path, &Path),
) {
    let case = Case {
        name,
        args,
        build,
        roles,
        lines: Lines::Compare,
    };
    check_then(&case, "dst/", |role, a, r| {
        let (ours, theirs) = (acls(&a.join("dst")), acls(&r.join("dst")));
        assert_eq!(ours, theirs, "{name} ({role:?}): ACLs differ from rsync's");
        let copied = theirs.get(Path::new("f")).is_some_and(|(a, _)| a.is_some())
            && theirs.get(Path::new("d")).is_some_and(|(_, d)| d.is_some());
        assert_eq!(copied, expect_acls, "{name} ({role:?}): {theirs:?}");
        // The source's ACLs are all there is to copy: a `-A` destination has them and no more.
        if expect_acls {
            assert_eq!(ours, acls(&a.join("src")), "{name} ({role:?})");
        }
    });
}

#[test]
fn acls_copy_named_entries_masks_and_defaults() {
    acl_case("-A", &["-ai", "-A"], &ACL_ROLES, true);
    // -A implies -p: the modes (group bits = the mask) come along without -p.
    acl_case("-A without -p", &["-rltDiA"], &ACL_ROLES, true);
    // No id lists in rsync's protocol then; named entries keep their ids.
    acl_case(
        "-A --numeric-ids",
        &["-ai", "-A", "--numeric-ids"],
        &ACL_ROLES,
        true,
    );
}

#[test]
fn acls_with_hard_links() {
    acl_case_over("-AH", &["-aiH", "-A"], &ACL_ROLES, true, acl_links);
}

#[test]
fn acls_in_a_dry_run_change_nothing() {
    // The lines say what would change; the destination keeps its old ACLs.
    let case = Case {
        name: "-A -n",
        args: &["-ai", "-A", "-n"],
        build: acl_changes,
        roles: &ACL_ROLES,
        lines: Lines::Compare,
    };
    check_then(&case, "dst/", |role, a, r| {
        assert_eq!(
            acls(&a.join("dst")),
            acls(&r.join("dst")),
            "-A -n ({role:?})"
        );
    });
}

#[test]
fn acls_updated_on_existing_entries() {
    // `.f.......a.`-style lines for files the quick check passes, `>f.st......a.` for one
    // it does not, and the ACLs set in both cases.
    acl_case_over(
        "-A over old ACLs",
        &["-ai", "-A"],
        &ACL_ROLES,
        true,
        acl_changes,
    );
}

#[test]
fn xattrs_alone_copy_no_acls() {
    // -X is refused with rsync's protocol (another area's), so local and merkle only.
    acl_case("-X", &["-ai", "-X"], &XATTR_ROLES, false);
    acl_case("-AX", &["-ai", "-AX"], &XATTR_ROLES, true);
}
