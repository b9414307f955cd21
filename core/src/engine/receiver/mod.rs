//! The receiver role, with its generator: compare the sender's list with the destination,
//! create what needs no data, request what does, write it safely, then fix directory metadata.
//!
//! Owns: validating the file list from the peer (order, parents, hard-link groups), the
//! destination rules (a single file to a new name; otherwise a directory, created if missing),
//! `--delete`, the quick check (size + mtime seconds, or BLAKE3 with `-c`), itemized output,
//! and the per-file write: a temporary file in the destination directory, verified, renamed
//! into place. Does not own how bytes move ([`super::io`]) or path safety ([`super::fsys`]).

// Issue 16, adapt during the run:
mod adapting;
// Issue 15, dests:
mod alt_dests;
mod append;
mod backups;
mod ctx;
mod deletes;
mod delta;
mod gaps;
mod generate;
mod links_dirs;
mod list;
pub(crate) use list::single_file_place;
mod parted;
mod report;
// Issue 18, streaming list:
mod rounds;
// Issue 15, tempfiles:
mod staging;
mod times;
mod transfer;
mod writers;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use rustix::fs::Stat;
use tokio::sync::mpsc;

use crate::engine::basis::{BasisCandidates, CANDIDATE_MIN};
use crate::engine::event::{Event, EventSink, Itemize};
use crate::engine::fsys::{self, meta_diff, DestRoot, MetaPlan, Staging};
use crate::engine::hashcache::FileKey;
use crate::engine::ids::IdNames;
use crate::engine::io::{FileIo, Prepared, ProgressFn, RateLimit};
use crate::engine::lanes::{self, LaneEvent, ReceiverLanes};
use crate::engine::options::{DeleteWhen, SyncOptions};
use crate::engine::order::InOrder;
use crate::engine::scan::{hash_open_file, os_error};
use crate::engine::session::{
    apply_compression, apply_timeouts, exchange_hello, keepalive_cap, run_framed, shared_fs_token,
    FrameSink, FrameSource,
};
use crate::engine::stats::Stats;
use crate::engine::treelist::{self, receive_tree, TreeParams};
use crate::engine::tune;
use crate::engine::{acl, xattr};
use crate::error::SyncError;
use crate::flist::{split_parent, validate_list, FileEntry, FileKind, FileList};
use crate::merkle::chunk::{chunk_file, delta_params};
use crate::merkle::tree::{node_hash, ChunkTree, DEFAULT_FANOUT_BITS};
use crate::merkle::NodeRef;
use crate::proto::merkle::caps::{Caps, Role};
use crate::proto::merkle::{report_frames, Frame, HEADER_LEN, MAX_EXPAND, MAX_FETCH, MAX_FILES};
use crate::proto::DecodeError;
use crate::transport::Connection;

use ctx::*;
use deletes::*;
use delta::*;
use gaps::*;
use generate::*;
use links_dirs::*;
use list::*;
use parted::*;
use report::*;
use times::*;
use transfer::*;
use writers::*;

/// What the receiver is asked to do.
#[derive(Clone)]
pub struct ReceiverJob {
    /// The destination argument, as given (a trailing slash matters).
    pub dest: PathBuf,
    /// Options.
    pub opts: SyncOptions,
    /// Counters of this role.
    pub stats: Arc<Stats>,
    /// Where events go.
    pub sink: Arc<dyn EventSink>,
}

impl std::fmt::Debug for ReceiverJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverJob")
            .field("dest", &self.dest)
            .finish_non_exhaustive()
    }
}

/// Run the receiver over `conn`; `open` says whether this side opens the stream.
pub async fn run_receiver(
    conn: &dyn Connection,
    open: bool,
    job: ReceiverJob,
) -> Result<(), SyncError> {
    let stats = job.stats.clone();
    run_framed(conn, open, stats, |sink, mut source| async move {
        drive(conn, open, &sink, &mut source, job).await
    })
    .await
}

/// The receiver's session, phase by phase: hellos, the list (whole or by the tree exchange,
/// while the lanes are set up), the destination, the generator (and `--delete`), the
/// transfers, then what comes after them (deferred deletions, hard links, directory
/// metadata) and the summary.
async fn drive(
    conn: &dyn Connection,
    open: bool,
    fsink: &FrameSink,
    source: &mut FrameSource,
    job: ReceiverJob,
) -> Result<(), SyncError> {
    let token = shared_fs_token();
    let am_root = rustix::process::geteuid().is_root();
    let shared_capable = conn.capabilities().shared_filesystem && !job.opts.stream_data;
    let offer = TreeParams::for_receiver(&job.opts, am_root);
    let lane_offer = (!shared_capable)
        .then(|| lanes::offer(conn, job.opts.streams))
        .flatten();
    // Files the sender may have open at once on each stream: one writer each.
    let window = job.opts.parallelism().clamp(1, lanes::MAX_WINDOW);
    // Issue 18, streaming list: a fresh copy (or one the tree exchange would not serve)
    // streams the list instead; so does every copy behind the rsync adapter, which serves no
    // tree exchange and streams when rsync's sender sends its lists incrementally.
    let streams = crate::engine::segments::receiver_can_stream(
        &job.dest,
        &job.opts,
        offer.is_some() && !job.opts.behind_rsync_adapter,
        shared_capable,
    )
    .then(crate::engine::segments::round_offer);
    let offer = offer.filter(|_| streams.is_none());
    let ours = Caps {
        role: Some(Role::Receiver),
        delta: true,
        shared_fs: shared_capable.then(|| token.clone()),
        chunk_avg: job.opts.chunk_avg,
        dirtree: offer.map(|p| p.cap()),
        compress: job.opts.compress.is_some(),
        lanes: lane_offer,
        window: Some(lanes::window_cap(window)),
        keepalive: keepalive_cap(job.opts.io_timeout),
        // Issue 16, params:
        tune: tune::ours(&job.opts),
        // Issue 16, remote CPU:
        cpu: job.opts.cpu_chunk,
        // Issue 15: a sending server's notices are printed here.
        notices: true,
        // Issue 18, scattered deltas:
        gaps: !job.opts.no_gap_sums,
        // Entries of kinds left out are listed, and skipped here (rsync's --delete spares
        // them).
        unwanted: Some(crate::proto::merkle::caps::Unwanted::SenderSays),
        // Issue 18, streaming list:
        segments: streams,
        ..Caps::default()
    };
    source.set_role("receiver");
    source.print_notices(job.sink.clone());
    // The hello is waited for with the timeout too.
    source.set_timeout(job.opts.io_timeout);
    let peer = exchange_hello(fsink, source, &ours).await?;
    // Issue 16, remote CPU: what the peer said of its speed, for the client to remember.
    if let Some(c) = peer.cpu {
        job.stats.peer_cpu.store(c, Relaxed);
    }
    // Issue 16, params: the parameters both ends agreed in their `tune` capabilities.
    let tuned = tune::agreed(peer.tune, ours.tune);
    let mut job = job;
    tune::apply(&mut job.opts, tuned);
    let peer = tune::peer_view(peer, tuned);
    apply_timeouts(fsink, source, job.opts.io_timeout, &peer);
    let shared = shared_capable && peer.shared_fs.as_ref() == Some(&token);
    apply_compression(fsink, source, job.opts.compress, &peer);
    let lane_count = lanes::agreed(lane_offer, &peer);
    let delta_ok = !shared && peer.delta;
    // Issue 18, scattered deltas: `GapSums` only to a sender that offered the exchange.
    let gaps = ours.gaps && peer.gaps;
    // From here on `no_gap_sums` says the session has no gap exchange (the chunk sizes of
    // `delta_params` follow it, as the sender's do).
    job.opts.no_gap_sums |= !gaps;
    // Issue 18, streaming list: both offered it.
    if let Some(round) = crate::engine::segments::agreed_round(ours.segments, peer.segments) {
        let agreed = rounds::Agreed {
            round,
            shared,
            lane_count,
            delta_ok,
            gaps,
            window,
            report: peer.report,
        };
        return rounds::drive_rounds(conn, open, fsink, source, job, agreed).await;
    }
    let tree = match shared {
        // Issue 16, params: with the agreed levels per round trip.
        false => tune::tree(TreeParams::negotiate(peer.dirtree, ours.dirtree), tuned),
        true => None,
    };

    let lane_pairs;
    let (mut list, complete, dest_files, mut missing) = match tree {
        Some(params) => {
            // Scan the destination while the sender scans its sources.
            let (dest, opts) = (job.dest.clone(), job.opts.clone());
            let mine = tokio::task::spawn_blocking(move || {
                treelist::scan_destination(&dest, &opts, params, CANDIDATE_MIN)
            });
            let mine = async move { mine.await.ok().flatten() };
            let started = Instant::now();
            let (got, pairs) = tokio::join!(
                receive_tree(fsink, source, mine, &job.stats),
                lanes::setup(conn, open, lane_count)
            );
            let got = got?;
            lane_pairs = pairs;
            job.stats
                .flist_xfer_us
                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            (
                Arc::new(got.list),
                Some(got.complete),
                got.dest_files,
                Vec::new(),
            )
        }
        None => {
            // Issue 18: a sender in this process hands over its own list.
            let shelf = shared.then(|| conn.local_shelf()).flatten();
            let (got, pairs) = tokio::join!(
                // Issue 19, hostile peers: missing arguments only when asked for.
                receive_list(
                    source,
                    &job.stats,
                    job.opts.select.delete_missing_args,
                    shelf.as_deref()
                ),
                lanes::setup(conn, open, lane_count)
            );
            lane_pairs = pairs;
            let (list, missing) = got?;
            (list, None, Vec::new(), missing)
        }
    };
    let lanes = (lane_count > 0)
        .then(|| ReceiverLanes::new(lane_pairs, &job.stats, job.opts.compress.is_some()));
    // A sending client that prints what happens here asks for reports.
    let report = peer
        .report
        .then(|| Arc::new(ReportSink::new(job.sink.clone(), job.opts.dry_run)));
    // Issue 15, write: `--chmod` changes the modes the sender listed (issue 18: as each entry
    // is read, `Ctx::perms`; the list may be a local sender's own).
    let chmod = crate::engine::chmod::ChmodRules::parse_all(&job.opts.write.chmod, umask())
        .map_err(SyncError::Usage)?;
    // Issue 15: `--munge-links` stores targets behind rsync's prefix. (A local copy's receiver
    // is never asked to: a list shared with the sender would be copied here.)
    if job.opts.symlinks.munge_links {
        munge_links(&mut list);
    }
    let (root, root_created) = match &report {
        Some(r) => open_destination(&job, &**r, &mut list, &mut missing)?,
        None => open_destination(&job, &*job.sink, &mut list, &mut missing)?,
    };
    job.sink.event(Event::ListTotals {
        files: job.stats.files.total(),
        bytes: job.stats.total_size.load(Relaxed),
    });
    // Issue 15, own: the owner maps, resolved here.
    let ids = IdNames::for_receiver(&job.opts.own, |message| {
        job.sink.event(Event::Warning { message })
    })
    .map_err(SyncError::Usage)?;
    // Issue 15, tempfiles:
    let temp = staging::TempState::open(&job.opts, root.as_deref())?;
    // A sending client prints the transfers as it is asked for them: what the generator did
    // is then in order as soon as it is done, and the client puts the two together.
    let sender_prints = report.is_some() || job.sink.transfers_shown_by_sender();
    // Items in list order, whatever order the files finish in.
    let (ctx, order) = Ctx::in_order(
        &job,
        report.as_ref(),
        CtxParts {
            list,
            root,
            root_created,
            ids,
            complete,
            chmod,
            temp,
        },
    );

    // Files the destination already has may hold a new file's chunks (a rename, a copy):
    // extraneous ones that could serve so are deleted after the transfers, not before.
    let candidates = Arc::new(if ctx.opts.dry_run {
        BasisCandidates::default()
    } else {
        BasisCandidates::new(dest_files, &ctx.list, ctx.complete.as_ref())
    });
    let (c, cands) = (ctx.clone(), candidates.clone());
    let mut plan = tokio::task::spawn_blocking(move || {
        let read_errors = skip_deletions(&c);
        if c.opts.delete && read_errors {
            c.sink.event(Event::Warning {
                message: "IO error encountered -- skipping file deletion".into(),
            });
        }
        let times_before = if c.opts.delete && !read_errors {
            let times = delete_extraneous(&c, &cands.deferred);
            // `--delete-before`: rsync's generator runs after a pass of its own and sees the
            // times the deletions left (`.d..t`); otherwise it itemized each directory first.
            if c.opts.delete_when == DeleteWhen::Before {
                TimesBefore::new()
            } else {
                times
            }
        } else {
            TimesBefore::new()
        };
        // Issue 15, select: `--delete-missing-args`.
        delete_missing(&c, &missing);
        let plan = generate(&c, &times_before);
        // Hard links are made and shown after everything else, as rsync's generator does
        // once their leader is written: they hold nothing up.
        // (A dry run itemizes its transfers here too, after the generator.)
        // Issue 18: a flag per entry, not a set of every transfer.
        let mut pending = Vec::new();
        if !sender_prints || c.opts.dry_run {
            pending.resize(c.list.entries.len(), false);
            for t in &plan.transfers {
                pending[t.ndx as usize] = true;
            }
        }
        if let Some(o) = &c.order {
            o.settle_all_but(&pending);
        }
        plan
    })
    .await?;

    if ctx.opts.dry_run {
        return dry_run(&ctx, &plan, report.as_deref(), fsink, source).await;
    }
    if let Some(r) = &report {
        r.send(fsink).await?;
    }
    let mut transfers = Transfers::start(
        ctx.clone(),
        fsink,
        &mut plan,
        lanes,
        shared,
        window,
        &candidates,
        delta_ok,
        gaps,
        Arc::new(crate::engine::io::FileIo::new(
            ctx.opts.io,
            ctx.opts.parallelism(),
        )?),
    )?;
    // Issue 18: the transfers took the plan's list, to ask for a window at a time.
    let result = transfers.run(source).await;
    let lanes = transfers.finish(result).await;
    if lanes.is_err() {
        // What was done before the failure is still said.
        order.finish();
    }
    let lanes = lanes?;

    let c = ctx.clone();
    tokio::task::spawn_blocking(move || {
        if c.opts.delete && !skip_deletions(&c) {
            delete_deferred(&c, &candidates.deferred);
            warn_skipped_deletes(&c);
        }
        if let Some(o) = &c.order {
            o.finish();
        }
        // Issue 15, tempfiles: files held back by --delay-updates go in place first.
        staging::apply_delayed(&c);
        link_followers(&c, &plan);
        fix_dirs(&c, &plan);
    })
    .await?;
    if let Some(l) = &lanes {
        report_streams(&ctx, l);
    }
    // Deletions made after the transfers.
    if let Some(r) = &report {
        r.send(fsink).await?;
    }
    // Issue 15, source: what the sender may remove now.
    let c = ctx.clone();
    let synced = tokio::task::spawn_blocking(move || synced_files(&c)).await?;
    for f in crate::engine::source_removal::synced_frames(synced) {
        fsink.send(&f).await?;
    }
    fsink
        .send(&Frame::Summary(ctx.stats.summary_counters()))
        .await
}

// Issue 15, source:
/// The entries synchronized here, each with its file's device and inode (0, 0 if it cannot
/// be found), so that a sender never removes the destination's file itself. A symlink's are
/// never named: rsync names its target's (`stat`), which never matches the link, so a symlink
/// synchronized onto itself goes.
fn synced_files(ctx: &Ctx) -> Vec<(u32, u64, u64)> {
    let ndxs = ctx
        .synced
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    ndxs.into_iter()
        .map(|ndx| {
            let e = &ctx.list.entries[ndx as usize];
            if e.kind == FileKind::Symlink {
                return (ndx, 0, 0);
            }
            let (parent, name) = split_parent(&e.path);
            let st = ctx
                .dir(parent)
                .ok()
                .flatten()
                .and_then(|d| fsys::lstat_at(&d, name).ok().flatten());
            st.map_or((ndx, 0, 0), |s| (ndx, s.st_dev, s.st_ino))
        })
        .collect()
}

/// The sender could not read everything, so deleting could remove what it failed to list
/// (rsync's `IO error encountered -- skipping file deletion`) — unless `--ignore-errors`
/// (Issue 15, source).
fn skip_deletions(ctx: &Ctx) -> bool {
    ctx.stats.sender_read_errors.load(Relaxed) > 0 && !ctx.opts.source.ignore_errors
}

/// A dry run after the generator: what would be transferred is counted and shown, nothing is
/// asked for.
async fn dry_run(
    ctx: &Ctx,
    plan: &Plan,
    report: Option<&ReportSink>,
    fsink: &FrameSink,
    source: &mut FrameSource,
) -> Result<(), SyncError> {
    for t in plan.transfers.iter().map(|q| q.transfer(ctx)) {
        let e = &ctx.list.entries[t.ndx as usize];
        ctx.stats.transferred.fetch_add(1, Relaxed);
        ctx.stats.transferred_size.fetch_add(e.size, Relaxed);
        if t.itemize.new {
            ctx.stats.created.add(FileKind::File);
        }
        ctx.item(e, t.itemize);
    }
    if ctx.opts.delete {
        warn_skipped_deletes(ctx);
    }
    if let Some(o) = &ctx.order {
        o.finish();
    }
    link_followers(ctx, plan);
    if let Some(r) = report {
        r.send(fsink).await?;
    }
    fsink.send(&Frame::Done).await?;
    expect_done(source).await?;
    fsink
        .send(&Frame::Summary(ctx.stats.summary_counters()))
        .await
}

/// `-v`'s line on how the bytes came in over the streams.
fn report_streams(ctx: &Ctx, l: &ReceiverLanes) {
    let per_lane: Vec<u64> = l.bytes.iter().map(|b| b.load(Relaxed)).collect();
    let control = ctx
        .stats
        .bytes_received
        .load(Relaxed)
        .saturating_sub(per_lane.iter().sum());
    let shown: Vec<String> = std::iter::once(control)
        .chain(per_lane)
        .map(|b| b.to_string())
        .collect();
    ctx.sink.event(Event::Debug {
        message: format!(
            "bytes received per stream (control first): {}",
            shown.join(" ")
        ),
    });
}

async fn expect_done(source: &mut FrameSource) -> Result<(), SyncError> {
    match source.expect("done").await? {
        Frame::Done => Ok(()),
        other => Err(DecodeError::invalid("frame", format!("expected done, got {other:?}")).into()),
    }
}
