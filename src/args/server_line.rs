//! The command line the remote side runs: `arsync --server …` for a peer arsync, rsync's
//! `rsync --server …` (upstream's `server_options`) for a peer rsync.

use super::{Command, Remote};

impl Command {
    /// What an rsync server must know of what this client prints.
    pub fn client_output(&self) -> arsync_core::engine::rsync::ClientOutput {
        arsync_core::engine::rsync::ClientOutput {
            verbose: self.output.verbose,
            itemize: self.output.itemize,
        }
    }

    /// The command line a remote rsync runs for a pull: `rsync --server --sender -FLAGSe.INFO .
    /// PATH…` (upstream's `server_options`).
    pub fn rsync_sender_command(&self, remote: &Remote) -> Vec<String> {
        let mut v: Vec<String> = arsync_transports::ssh::split_words(&self.rsync_path)
            .unwrap_or_else(|| vec![self.rsync_path.clone()]);
        v.push("--server".into());
        v.push("--sender".into());
        v.extend(arsync_core::engine::rsync::sender_args(
            &self.opts,
            self.client_output(),
        ));
        // Issue 15, connection: `-M` words, for the remote side only.
        v.extend(self.net.remote_options.iter().cloned());
        v.push(".".into());
        v.extend(remote.paths.iter().cloned());
        v
    }

    /// The command line a remote rsync runs for a push: `rsync --server -FLAGSe.INFO … . DEST`.
    pub fn rsync_receiver_command(&self, remote: &Remote) -> Vec<String> {
        let mut v: Vec<String> = arsync_transports::ssh::split_words(&self.rsync_path)
            .unwrap_or_else(|| vec![self.rsync_path.clone()]);
        v.push("--server".into());
        v.extend(arsync_core::engine::rsync::server_args(
            &self.opts,
            self.client_output(),
        ));
        // Issue 15, connection: `-M` words, for the remote side only.
        v.extend(self.net.remote_options.iter().cloned());
        v.push(".".into());
        v.extend(remote.paths.iter().cloned());
        v
    }

    /// The command line the remote side runs: `arsync --server [--sender] OPTIONS . PATH…`.
    pub fn server_command(&self, remote: &Remote, sender: bool) -> Vec<String> {
        let mut v: Vec<String> = arsync_transports::ssh::split_words(&self.rsync_path)
            .unwrap_or_else(|| vec![self.rsync_path.clone()]);
        v.push("--server".into());
        if sender {
            v.push("--sender".into());
        }
        let o = &self.opts;
        for (on, flag) in [
            (o.recursive, "-r"),
            (o.links, "-l"),
            (o.perms, "-p"),
            (o.times, "-t"),
            (o.group, "-g"),
            (o.owner, "-o"),
            (o.devices, "--devices"),
            (o.specials, "--specials"),
            (o.hard_links, "-H"),
            (o.xattrs, "-X"),
            (o.checksum, "-c"),
            // Issue 18, chunk cache: the opt-out covers the peer's chunk-index cache too.
            (
                self.no_hash_cache || (o.checksum && o.hash_cache.is_none()),
                "--no-hash-cache",
            ),
            (o.dry_run, "-n"),
            (o.ignore_times, "-I"),
            (o.size_only, "--size-only"),
            (o.existing, "--existing"),
            (o.ignore_existing, "--ignore-existing"),
            (o.delete, o.delete_when.flag()),
            (o.delete_excluded, "--delete-excluded"),
            (o.numeric_ids, "--numeric-ids"),
            (o.inplace, "--inplace"),
            (o.whole_file, "-W"),
            (o.partial, "--partial"),
            (o.write.executability && !o.perms, "-E"),
            // Issue 15, links:
            (o.symlinks.copy_links, "-L"),
            (o.symlinks.copy_unsafe_links, "--copy-unsafe-links"),
            (o.symlinks.safe_links, "--safe-links"),
            (o.symlinks.copy_dirlinks, "-k"),
            (o.symlinks.keep_dirlinks, "-K"),
            // Issue 15, acls:
            (o.acls, "-A"),
        ] {
            if on {
                v.push(flag.into());
            }
        }
        if let Some(rate) = o.bwlimit {
            v.push(format!("--bwlimit={rate}b"));
        }
        if let Some(t) = o.io_timeout {
            v.push(format!("--timeout={t}"));
        }
        if let Some(n) = o.tree_levels {
            v.push(format!("--tree-levels={n}"));
        }
        if let Some(n) = o.chunk_avg {
            v.push(format!("--chunk-size={n}"));
        }
        if let Some(l) = o.compress {
            v.push(format!("--compress-level={l}"));
        }
        for rule in &self.filter_rules {
            v.push(format!("--filter={rule}"));
        }
        // Issue 15, select:
        let sel = &o.select;
        if sel.prune_empty_dirs {
            v.push("-m".into());
        }
        if let Some(n) = sel.max_size {
            v.push(format!("--max-size={n}"));
        }
        if let Some(n) = sel.min_size {
            v.push(format!("--min-size={n}"));
        }
        for _ in 0..sel.one_file_system {
            v.push("-x".into());
        }
        if sel.ignore_missing_args {
            v.push("--ignore-missing-args".into());
        }
        if sel.delete_missing_args {
            v.push("--delete-missing-args".into());
        }
        if sel.relative {
            v.push("-R".into());
        }
        // Issue 15, filters: the server adds the CVS rules after the forwarded ones.
        if o.listing.cvs_exclude {
            v.push("-C".into());
        }
        v.extend(o.listing.server_args(o.recursive, true, true));
        // Issue 15, own:
        if !sender {
            v.extend(o.own.receiver_args());
        }
        // Issue 15, dest: what the receiver does with each file.
        v.extend(arsync_core::engine::rsync::dest_args(&o.dest, true));
        // Issue 15, write: the receiving server applies --chmod for a pushing client.
        if !sender {
            v.extend(arsync_core::engine::rsync::write_args(&o.write));
        }
        // Issue 15, backup:
        if o.backup.make_backups {
            v.push("-b".into());
        }
        v.extend(o.backup.server_long_args());
        // Issue 15, dests: only a receiving server needs them.
        if !sender {
            v.extend(o.dests.server_args());
        }
        // Issue 15, source: both roles take part in each.
        v.extend(arsync_core::engine::rsync::source_args(&o.source));
        // Issue 15, tempfiles: only a receiving server needs them.
        if !sender {
            v.extend(o.temp.server_args(false)); // --partial is in the list above
        }
        // Issue 15, connection: `-M` words, for the remote side only.
        v.extend(self.net.remote_options.iter().cloned());
        v.push(".".into());
        v.extend(remote.paths.iter().cloned());
        v
    }
}
