//! What our receiver did without data, handed to an rsync client that started `arsync
//! --server` (its generator would have told it): itemize records (with a hard link's target),
//! `-v` lines as `MSG_INFO`, deletions as `MSG_DELETED`. Owns the tap on the receiver's events
//! and the records it becomes; not the transfer.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use super::mux::Mux;
use super::{ITEM_IS_NEW, ITEM_LOCAL_CHANGE, ITEM_TRANSFER, ITEM_XNAME_FOLLOWS};
use crate::engine::event::{Event, EventSink};
use crate::engine::order::Held;
use crate::error::SyncError;
use crate::proto::rsync::codec::{put_u16, put_vstring, NdxCodec};

/// What our receiver did without data, for a client that prints it: created or changed
/// entries (by path, with their [`crate::engine::event::Itemize::to_flags`] bits and update letter),
/// and deletions.
#[derive(Debug)]
pub enum Tapped {
    /// An entry created or changed without data: path, flags, update letter, and for a hard
    /// link the path it links to.
    Item(Vec<u8>, u16, char, Option<Vec<u8>>),
    /// A line the receiver printed at `-v` (`created directory DEST`).
    Info(String),
    /// A deleted path.
    Deleted(Vec<u8>, bool),
}

/// An event sink that also hands non-transfer items and deletions to the adapter, so a
/// receiving server can show them to its rsync client (itemize records, `MSG_DELETED`).
pub struct ItemTap {
    tx: std::sync::Mutex<std_mpsc::Sender<Tapped>>,
    inner: Arc<dyn EventSink>,
    infos: bool,
}

impl std::fmt::Debug for ItemTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemTap")
    }
}

impl ItemTap {
    /// A tap in front of `inner`, and the receiving end for the adapter; with `infos` the
    /// `-v` lines go to the client too.
    pub fn new(inner: Arc<dyn EventSink>, infos: bool) -> (ItemTap, std_mpsc::Receiver<Tapped>) {
        let (tx, rx) = std_mpsc::channel();
        (
            ItemTap {
                tx: std::sync::Mutex::new(tx),
                inner,
                infos,
            },
            rx,
        )
    }
}

impl EventSink for ItemTap {
    fn event(&self, event: Event<'_>) {
        let tapped = match &event {
            Event::Item {
                entry,
                itemize,
                link_to,
            } => Some(Tapped::Item(
                entry.path.to_vec(),
                itemize.to_flags(),
                itemize.update,
                link_to.map(<[u8]>::to_vec),
            )),
            Event::Info { message } if self.infos => Some(Tapped::Info(message.clone())),
            Event::Deleted { path, is_dir } => Some(Tapped::Deleted(path.clone(), *is_dir)),
            _ => None,
        };
        if let (Some(t), Ok(tx)) = (tapped, self.tx.lock()) {
            let _ = tx.send(t);
        }
        self.inner.event(event);
    }

    fn transfers_shown_by_sender(&self) -> bool {
        true
    }
}

/// rsync's item flags for arsync's [`crate::engine::event::Itemize::to_flags`] bits (and `c`).
pub(super) fn rsync_iflags(ours: u16, letter: char) -> u16 {
    let mut f = 0u16;
    if ours & 1 != 0 {
        f |= ITEM_IS_NEW;
    }
    f |= ours & (0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40);
    if ours & 128 != 0 {
        f |= 0x100;
    }
    // Issue 15, acls: `ITEM_REPORT_ACL`.
    if ours & 512 != 0 {
        f |= 0x80;
    }
    match letter {
        'c' => f |= ITEM_LOCAL_CHANGE,
        'h' => f |= ITEM_LOCAL_CHANGE | ITEM_XNAME_FOLLOWS,
        _ => {}
    }
    f
}

/// Our receiver's records on their way to the rsync client: what it did without data —
/// itemize records (with a hard link's target; in a dry run the transfers too, which then
/// carry no data), `-v` lines as `MSG_INFO`, deletions as `MSG_DELETED`.
pub(super) struct TapForward<'a> {
    /// A dry run: transfers are itemized here too.
    pub(super) dry_run: bool,
    /// The tap's receiving end.
    pub(super) items: Option<&'a std_mpsc::Receiver<Tapped>>,
    /// Our index of each path.
    pub(super) by_path: &'a HashMap<&'a [u8], usize>,
    /// rsync's index of each of ours.
    pub(super) to_rsync: &'a [i32],
    /// Item records waiting for the transfers before them.
    pub(super) held: Held<Tapped>,
}

impl TapForward<'_> {
    /// Hand the client the item records of entries before `before` (our index of the file
    /// about to be requested; `None`: all), holding the others, so that it prints them in list
    /// order among its transfers; messages and deletions at once.
    pub(super) fn forward(
        &mut self,
        before: Option<u32>,
        wndx: &mut NdxCodec,
        output: &mut Mux,
    ) -> Result<(), SyncError> {
        let Some(before) = before else {
            // No more transfers: what is held, then the rest as it comes (hard links are
            // made last, in their own order).
            for t in self.held.take_all() {
                self.one(t, wndx, output)?;
            }
            while let Some(t) = self.items.and_then(|rx| rx.try_recv().ok()) {
                self.one(t, wndx, output)?;
            }
            return Ok(());
        };
        while let Some(t) = self.items.and_then(|rx| rx.try_recv().ok()) {
            match t {
                Tapped::Item(ref path, ..) => {
                    if let Some(&our) = self.by_path.get(path.as_slice()) {
                        self.held.hold(our as u32, t);
                    }
                }
                other => self.one(other, wndx, output)?,
            }
        }
        for t in self.held.take_before(before) {
            self.one(t, wndx, output)?;
        }
        Ok(())
    }

    /// One record to the rsync client.
    fn one(&self, t: Tapped, wndx: &mut NdxCodec, output: &mut Mux) -> Result<(), SyncError> {
        let (dry_run, by_path, to_rsync) = (self.dry_run, self.by_path, self.to_rsync);
        match t {
            Tapped::Item(path, flags, letter, link_to) => {
                let Some(&our) = by_path.get(path.as_slice()) else {
                    return Ok(());
                };
                let letter = if link_to.is_none() && letter == 'h' {
                    'c'
                } else {
                    letter
                };
                let mut iflags = rsync_iflags(flags, letter);
                if letter == '>' {
                    // A real transfer is asked for with its request instead.
                    if !dry_run {
                        return Ok(());
                    }
                    iflags |= ITEM_TRANSFER;
                }
                if iflags == 0 {
                    return Ok(());
                }
                let mut rec = Vec::new();
                wndx.put(&mut rec, to_rsync[our]);
                put_u16(&mut rec, iflags);
                if let (true, Some(name)) = (iflags & ITEM_XNAME_FOLLOWS != 0, &link_to) {
                    put_vstring(&mut rec, name);
                }
                output.write(&rec)?;
            }
            Tapped::Info(mut message) => {
                message.push('\n');
                output.write_msg(crate::proto::rsync::codec::msg::INFO, message.as_bytes())?;
            }
            Tapped::Deleted(mut path, is_dir) => {
                // A directory's name carries a trailing NUL (`log_delete`).
                if is_dir {
                    path.push(0);
                }
                output.write_msg(crate::proto::rsync::codec::msg::DELETED, &path)?;
            }
        }
        Ok(())
    }
}
