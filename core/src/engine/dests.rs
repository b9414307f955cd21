//! Issue 15, dests: `--link-dest`, `--compare-dest`, `--copy-dest` — other trees the receiver
//! consults for a file missing or changed in the destination (rsync's `basis_dir`): which kind
//! and which directories, with rsync's limits and the arguments a server is told. What the
//! receiver does with them is in `receiver::alt_dests`.

use std::path::PathBuf;

/// At most this many directories (rsync's `MAX_BASIS_DIRS`).
pub const MAX_DEST_DIRS: usize = 20;

/// What a matching file in one of the directories makes the receiver do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AltDestKind {
    /// `--compare-dest`: nothing is created.
    Compare,
    /// `--copy-dest`: copied locally.
    Copy,
    /// `--link-dest`: hard-linked.
    Link,
}

impl AltDestKind {
    /// The option's name, as rsync spells it.
    pub fn option(self) -> &'static str {
        match self {
            AltDestKind::Compare => "--compare-dest",
            AltDestKind::Copy => "--copy-dest",
            AltDestKind::Link => "--link-dest",
        }
    }
}

/// The receiver's other trees, tried in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestsOptions {
    /// Which option named them (`None`: none given).
    pub kind: Option<AltDestKind>,
    /// The directories; a relative one is relative to the destination directory.
    pub dirs: Vec<PathBuf>,
}

impl DestsOptions {
    /// Add `dir` for option `kind`, with rsync's checks (one kind only, at most 20).
    pub fn add(&mut self, kind: AltDestKind, dir: PathBuf) -> Result<(), String> {
        if let Some(k) = self.kind.filter(|&k| k != kind) {
            return Err(format!(
                "the {} option conflicts with the {} option",
                kind.option(),
                k.option()
            ));
        }
        if self.dirs.len() >= MAX_DEST_DIRS {
            return Err(format!(
                "at most {MAX_DEST_DIRS} {} args may be specified",
                kind.option()
            ));
        }
        self.kind = Some(kind);
        self.dirs.push(dir);
        Ok(())
    }

    /// Whether any directory was given.
    pub fn any(&self) -> bool {
        self.kind.is_some() && !self.dirs.is_empty()
    }

    /// The arguments that tell a receiving server (`--link-dest=DIR` per directory, as
    /// upstream's `server_options` sends them).
    pub fn server_args(&self) -> Vec<String> {
        let Some(kind) = self.kind else {
            return Vec::new();
        };
        self.dirs
            .iter()
            .map(|d| format!("{}={}", kind.option(), d.to_string_lossy()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_kind_at_most_twenty() {
        let mut d = DestsOptions::default();
        for i in 0..MAX_DEST_DIRS {
            d.add(AltDestKind::Link, format!("d{i}").into()).unwrap();
        }
        assert!(d.add(AltDestKind::Link, "x".into()).is_err());
        let mut d = DestsOptions::default();
        d.add(AltDestKind::Copy, "a".into()).unwrap();
        let err = d.add(AltDestKind::Link, "b".into()).unwrap_err();
        assert!(err.contains("--link-dest option conflicts with the --copy-dest"));
        assert_eq!(d.server_args(), ["--copy-dest=a"]);
    }
}
