//! Issue 18, streaming list: the receiver's session when the list comes in segments — a
//! round at a time: the round's segments read and checked ([`SegmentReader`]), then today's
//! phases on the round's list (`--delete` in its directories, the generator, the transfers,
//! which end with both `Done`s), and the next round. What spans rounds is small: the
//! destination, the lanes, and a table of the directories whose metadata is set at the end.
//! Does not decide when a session streams (`engine::segments`).

#[allow(unused_imports)]
use super::*;
use crate::engine::basis::BasisCandidates;
use crate::engine::segments::{Round, SegmentReader};
use crate::flist::OwnerTable;

/// What the session agreed before the list, for [`drive_rounds`].
pub(super) struct Agreed {
    /// Entries a round holds at most (beyond its first segment).
    pub(super) round: u32,
    pub(super) shared: bool,
    pub(super) lane_count: u8,
    pub(super) delta_ok: bool,
    pub(super) gaps: bool,
    /// Files the sender may have open on each stream.
    pub(super) window: usize,
    /// The sending client prints what happens here (`Report` frames).
    pub(super) report: bool,
}

/// Read one round: its segments' frames up to `RoundEnd` or `FileListEnd`, each entry
/// counted as the whole list's are.
async fn read_round(
    source: &mut FrameSource,
    reader: &mut SegmentReader,
    owners: &mut OwnerTable,
    stats: &Stats,
) -> Result<Round, SyncError> {
    let started = Instant::now();
    let before = stats.bytes_received.load(Relaxed);
    let round = loop {
        match source.expect("file list").await? {
            Frame::Segment {
                parent,
                base,
                count,
            } => reader.segment(parent, base, count)?,
            Frame::FileEntries(batch) => {
                for e in &batch {
                    stats.count_listed(e);
                }
                reader.entries(
                    batch
                        .into_iter()
                        .map(|mut e| {
                            owners.share(&mut e);
                            e
                        })
                        .collect(),
                )?
            }
            // The sender's read errors so far (cumulative): deletions stop from here on.
            Frame::Totals(c) if !reader.in_segment() => {
                let errors = c.get(6).copied().unwrap_or(0);
                stats.sender_read_errors.fetch_max(errors, Relaxed);
            }
            Frame::RoundEnd { count } => break reader.end_round(count, false)?,
            Frame::FileListEnd { count } => break reader.end_round(count, true)?,
            other => {
                return Err(DecodeError::invalid(
                    "file list",
                    format!("unexpected frame {other:?}"),
                )
                .into())
            }
        }
    };
    stats
        .flist_size
        .fetch_add(stats.bytes_received.load(Relaxed) - before, Relaxed);
    stats
        .flist_xfer_us
        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    Ok(round)
}

/// The receiver's session after the hellos, a round at a time (see the module's summary).
pub(super) async fn drive_rounds(
    conn: &dyn Connection,
    open: bool,
    fsink: &FrameSink,
    source: &mut FrameSource,
    job: ReceiverJob,
    agreed: Agreed,
) -> Result<(), SyncError> {
    let mut reader = SegmentReader::new(agreed.round);
    let mut owners = OwnerTable::default();
    let (first, lane_pairs) = tokio::join!(
        read_round(source, &mut reader, &mut owners, &job.stats),
        lanes::setup(conn, open, agreed.lane_count)
    );
    let mut round = first?;
    let mut lanes = (agreed.lane_count > 0)
        .then(|| ReceiverLanes::new(lane_pairs, &job.stats, job.opts.compress.is_some()));
    let chmod = crate::engine::chmod::ChmodRules::parse_all(&job.opts.write.chmod, umask())
        .map_err(SyncError::Usage)?;
    // The destination, opened with the first round that lists anything.
    let mut dest: Option<(Option<Arc<DestRoot>>, bool)> = None;
    // Directories whose metadata is set at the end: their entries, and whether made here.
    let mut dirs = FileList::default();
    let mut dir_fixes: Vec<(u32, bool)> = Vec::new();
    let mut warned_io = false;
    let mut first_ids = true;
    let mut last_ctx: Option<Arc<Ctx>>;
    let mut rounds = 0u64;
    // Issue 18: per-directory filter rules, inherited from round to round.
    let mut dir_rules = super::deletes::DirRules::new();
    // One pool of I/O workers for every round (rsync's lists make rounds of ~1,000 entries).
    let io = Arc::new(crate::engine::io::FileIo::new(
        job.opts.io,
        job.opts.parallelism(),
    )?);
    loop {
        rounds += 1;
        let mut list = Arc::new(std::mem::take(&mut round.list));
        if job.opts.symlinks.munge_links {
            munge_links(&mut list);
        }
        let report = agreed
            .report
            .then(|| Arc::new(ReportSink::new(job.sink.clone(), false)));
        if dest.is_none() && (!list.entries.is_empty() || round.last) {
            dest = Some(match &report {
                Some(r) => open_destination(&job, &**r, &mut list, &mut [])?,
                None => open_destination(&job, &*job.sink, &mut list, &mut [])?,
            });
        }
        let (root, root_created) = dest.clone().unwrap_or((None, false));
        job.sink.event(Event::ListTotals {
            files: job.stats.files.total(),
            bytes: job.stats.total_size.load(Relaxed),
        });
        // The owner maps: their warnings once.
        let ids = if first_ids {
            first_ids = false;
            IdNames::for_receiver(&job.opts.own, |message| {
                job.sink.event(Event::Warning { message })
            })
        } else {
            IdNames::for_receiver(&job.opts.own, |_| {})
        }
        .map_err(SyncError::Usage)?;
        let temp = staging::TempState::open(&job.opts, root.as_deref())?;
        let sender_prints = report.is_some() || job.sink.transfers_shown_by_sender();
        let (ctx, order) = Ctx::in_order(
            &job,
            report.as_ref(),
            CtxParts {
                list,
                root,
                root_created,
                ids,
                complete: None,
                chmod: chmod.clone(),
                temp,
            },
        );
        let later_dirs = std::mem::take(&mut round.later_dirs);
        let c = ctx.clone();
        let mut rules = std::mem::take(&mut dir_rules);
        let (mut plan, io_warning, rules) = tokio::task::spawn_blocking(move || {
            let read_errors = skip_deletions(&c);
            let times_before = if c.opts.delete && !read_errors {
                // The directories whose own segments are still to come are listed.
                super::deletes::delete_extraneous_in_round(&c, &later_dirs, &mut rules)
            } else {
                TimesBefore::new()
            };
            let plan = generate(&c, &times_before);
            let mut pending = Vec::new();
            if !sender_prints {
                pending.resize(c.list.entries.len(), false);
                for t in &plan.transfers {
                    pending[t.ndx as usize] = true;
                }
            }
            if let Some(o) = &c.order {
                o.settle_all_but(&pending);
            }
            (plan, c.opts.delete && read_errors, rules)
        })
        .await?;
        dir_rules = rules;
        if io_warning && !warned_io {
            warned_io = true;
            ctx.sink.event(Event::Warning {
                message: "IO error encountered -- skipping file deletion".into(),
            });
        }
        // Directory metadata waits for the end: only the directories are kept.
        for (ndx, created) in plan.dir_fixes.drain(..) {
            dir_fixes.push((dirs.entries.len() as u32, created));
            dirs.entries.push(ctx.list.entries[ndx as usize].clone());
        }
        if let Some(r) = &report {
            r.send(fsink).await?;
        }
        let mut transfers = Transfers::start(
            ctx.clone(),
            fsink,
            &mut plan,
            lanes.take(),
            agreed.shared,
            agreed.window,
            &BasisCandidates::default(),
            agreed.delta_ok,
            agreed.gaps,
            io.clone(),
        )?;
        let result = transfers.run(source).await;
        let given_back = transfers.finish(result).await;
        order.finish();
        lanes = given_back?;
        if let Some(r) = &report {
            // After the transfers only deletions and messages are reported: the sender
            // is on the next round's list by the time they arrive.
            if let Ok(mut c) = r.collected.lock() {
                c.items.clear();
                c.unlisted.clear();
            }
            r.send(fsink).await?;
        }
        last_ctx = Some(ctx);
        if round.last {
            break;
        }
        round = read_round(source, &mut reader, &mut owners, &job.stats).await?;
    }

    job.sink.event(Event::Debug {
        message: format!(
            "file list in segments: {} entries in {rounds} round{}",
            reader.received(),
            if rounds == 1 { "" } else { "s" }
        ),
    });
    // The directories, deepest first, once everything in them is written.
    if let Some(last) = last_ctx {
        let dirs_ctx = Arc::new(Ctx {
            opts: job.opts.clone(),
            stats: job.stats.clone(),
            sink: job.sink.clone(),
            order: None,
            list: Arc::new(dirs),
            root: last.root.clone(),
            root_created: last.root_created,
            ids: IdNames::for_receiver(&job.opts.own, |_| {}).map_err(SyncError::Usage)?,
            complete: None,
            am_root: last.am_root,
            euid: last.euid,
            egid: last.egid,
            umask: last.umask,
            chmod: chmod.clone(),
            synced: Default::default(),
            temp: staging::TempState::default(),
        });
        let plan = Plan {
            dir_fixes,
            ..Plan::default()
        };
        let streams_ctx = last.clone();
        tokio::task::spawn_blocking(move || {
            if last.opts.delete && !skip_deletions(&last) {
                warn_skipped_deletes(&last);
            }
            fix_dirs(&dirs_ctx, &plan);
        })
        .await?;
        if let Some(l) = &lanes {
            report_streams(&streams_ctx, l);
        }
    }
    fsink
        .send(&Frame::Summary(job.stats.summary_counters()))
        .await
}
