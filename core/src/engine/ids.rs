//! User and group names ↔ ids, cached: the sender names its ids, the receiver maps names back.
//!
//! Owns the lookups (getpwuid/getgrgid/getpwnam/getgrnam through `nix`) and their caches.
//! Looking a name up once per distinct id keeps a 100,000-file scan from doing 100,000 lookups.

use std::collections::HashMap;
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};

use super::idmap::{IdMap, MapKind};
use super::own::OwnOptions;
use crate::flist::Name;

/// Cached id ↔ name lookups.
#[derive(Debug, Default)]
pub struct IdNames {
    users: Mutex<HashMap<u32, Name>>,
    groups: Mutex<HashMap<u32, Name>>,
    uids: Mutex<HashMap<Vec<u8>, Option<u32>>>,
    gids: Mutex<HashMap<Vec<u8>, Option<u32>>>,
    /// Issue 15, own: `--usermap`/`--groupmap` (and `--chown`), applied before names.
    maps: Option<(IdMap, IdMap)>,
}

fn cached<K: std::hash::Hash + Eq + Clone, V: Clone>(
    map: &Mutex<HashMap<K, V>>,
    key: &K,
    look: impl FnOnce() -> V,
) -> V {
    if let Ok(m) = map.lock() {
        if let Some(v) = m.get(key) {
            return v.clone();
        }
    }
    let v = look();
    if let Ok(mut m) = map.lock() {
        m.insert(key.clone(), v.clone());
    }
    v
}

impl IdNames {
    /// Issue 15, own: the receiver's lookups with `own`'s maps resolved here; a map whose
    /// syntax is wrong is an error, a name unknown here is `warn`ed about and its rule dropped.
    pub fn for_receiver(own: &OwnOptions, mut warn: impl FnMut(String)) -> Result<Self, String> {
        let mut map = |m: &Option<String>, kind| match m {
            Some(m) => IdMap::parse(m, kind, &mut warn),
            None => Ok(IdMap::default()),
        };
        let users = map(&own.usermap, MapKind::User)?;
        let groups = map(&own.groupmap, MapKind::Group)?;
        Ok(IdNames {
            maps: Some((users, groups)),
            ..IdNames::default()
        })
    }

    /// The name of user `uid` (empty when it has none), one shared copy per id.
    pub fn user_name(&self, uid: u32) -> Name {
        cached(&self.users, &uid, || {
            User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| Name::new(u.name.as_bytes()))
                .unwrap_or_default()
        })
    }

    /// The name of group `gid` (empty when it has none), one shared copy per id.
    pub fn group_name(&self, gid: u32) -> Name {
        cached(&self.groups, &gid, || {
            Group::from_gid(Gid::from_raw(gid))
                .ok()
                .flatten()
                .map(|g| Name::new(g.name.as_bytes()))
                .unwrap_or_default()
        })
    }

    /// The local uid for a sender's (name, id): the local user of that name, else the id.
    pub fn local_uid(&self, name: &[u8], id: u32) -> u32 {
        if let Some(to) = self.maps.as_ref().and_then(|(u, _)| u.lookup(name, id)) {
            return to;
        }
        if name.is_empty() || name == b"root" && id != 0 {
            return id;
        }
        let key = name.to_vec();
        cached(&self.uids, &key, || {
            std::str::from_utf8(name)
                .ok()
                .and_then(|n| User::from_name(n).ok().flatten())
                .map(|u| u.uid.as_raw())
        })
        .unwrap_or(id)
    }

    /// The local gid for a sender's (name, id): the local group of that name, else the id.
    pub fn local_gid(&self, name: &[u8], id: u32) -> u32 {
        if let Some(to) = self.maps.as_ref().and_then(|(_, g)| g.lookup(name, id)) {
            return to;
        }
        if name.is_empty() || name == b"root" && id != 0 {
            return id;
        }
        let key = name.to_vec();
        cached(&self.gids, &key, || {
            std::str::from_utf8(name)
                .ok()
                .and_then(|n| Group::from_name(n).ok().flatten())
                .map(|g| g.gid.as_raw())
        })
        .unwrap_or(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_round_trips_and_unknown_names_keep_ids() {
        let n = IdNames::default();
        assert_eq!(&*n.user_name(0), b"root");
        assert!(n.user_name(0).shares_with(&n.user_name(0)));
        assert_eq!(n.local_uid(b"root", 0), 0);
        assert_eq!(n.local_uid(b"no-such-user-arsync", 4321), 4321);
        assert_eq!(n.local_gid(b"", 77), 77);
    }
}
