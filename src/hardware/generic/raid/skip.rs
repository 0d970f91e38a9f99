//! RAID volumes `properties.skip_block_devices` keeps by `volume_name`:
//! IPA's `_handle_raid_skip_list`. A kept array's neighbours (arrays
//! sharing one of its holder disks) cannot be deleted with their
//! partitions, so they are wiped instead; the ESP mirror among them is
//! kept, so the next deploy finds it.

use crate::disk::md::array::{self, Array};
use crate::root::Root;

/// What `delete_configuration` does with an array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop it, clear its members' superblocks, drop its partitions.
    Delete,
    /// Keep the array, wipe the signatures inside it; the volume kept by
    /// the skip list that shares its disks.
    Wipe(Option<String>),
    /// Leave it alone.
    Keep,
}

/// One array and what to do with it.
#[derive(Clone, Debug)]
pub struct Decision {
    pub array: Array,
    /// The volume name from its superblock (None: unreadable).
    pub name: Option<String>,
    pub holders: Vec<String>,
    pub action: Action,
    /// The kept volume that made this one `Wipe` or (ESP) `Keep`.
    pub cause: Option<String>,
}

/// Decide for every array; with an empty skip list, all are deleted.
pub fn decide(root: &Root, arrays: Vec<Array>, skip: &[String]) -> Vec<Decision> {
    let mut out: Vec<Decision> = vec![];
    for a in arrays {
        out.push(Decision {
            name: array::volume_name(root, &a),
            holders: array::holders(root, &a),
            array: a,
            action: Action::Delete,
            cause: None,
        });
    }
    if skip.is_empty() {
        return out;
    }
    for i in 0..out.len() {
        let kept = out[i].name.as_ref().is_some_and(|n| skip.contains(n));
        if !kept {
            continue;
        }
        log::warn!("RAID device {} will not be deleted", out[i].array.path());
        out[i].action = Action::Keep;
        // by index: the kept one's holders and name read in place, cloned
        // only for the neighbours that get them
        for j in 0..out.len() {
            if j != i
                && matches!(out[j].action, Action::Delete)
                && out[j].holders.iter().any(|h| out[i].holders.contains(h))
            {
                let cause = out[i].name.clone();
                out[j].action = Action::Wipe(cause.clone());
                out[j].cause = cause;
            }
        }
    }
    for d in out.iter_mut() {
        if d.name.as_deref() == Some("esp") && matches!(d.action, Action::Wipe(_)) {
            d.action = Action::Keep;
        }
    }
    out
}
