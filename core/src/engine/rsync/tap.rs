//! What our receiver did without data, handed to an rsync client that started `arsync
//! --server` (its generator would have told it): itemize records (with a hard link's target),
//! `-v` lines as `MSG_INFO`, deletions as `MSG_DELETED`. Owns the tap on the receiver's events
//! and the records it becomes; not the transfer.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use super::mux::Mux;
use super::{ITEM_IS_NEW, ITEM_LOCAL_CHANGE, ITEM_XNAME_FOLLOWS};
use crate::engine::event::{Event, EventSink};
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
            } if itemize.update != '>' => Some(Tapped::Item(
                entry.path.clone(),
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

/// Hand what our receiver did without data to the rsync client: itemize records (with a hard
/// link's target), `-v` lines as `MSG_INFO`, deletions as `MSG_DELETED`.
pub(super) fn forward_tapped(
    items: Option<&std_mpsc::Receiver<Tapped>>,
    by_path: &HashMap<&[u8], usize>,
    to_rsync: &[i32],
    wndx: &mut NdxCodec,
    output: &mut Mux,
) -> Result<(), SyncError> {
    while let Some(t) = items.and_then(|rx| rx.try_recv().ok()) {
        match t {
            Tapped::Item(path, flags, letter, link_to) => {
                let Some(&our) = by_path.get(path.as_slice()) else {
                    continue;
                };
                let letter = if link_to.is_none() && letter == 'h' {
                    'c'
                } else {
                    letter
                };
                let iflags = rsync_iflags(flags, letter);
                if iflags == 0 {
                    continue;
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
    }
    Ok(())
}
