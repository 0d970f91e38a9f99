//! RAID volumes `properties.skip_block_devices` keeps by `volume_name`:
//! IPA's `_handle_raid_skip_list`. A kept array's neighbours (arrays
//! sharing one of its holder disks) cannot be deleted with their
//! partitions, so they are wiped instead; the ESP mirror among them is
//! kept, so the next deploy finds it.

use crate::disk::md::array::{self, Array};
use crate::root::Root;

/// What `delete_configuration` does with an array.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Action {
    /// Stop it, clear its members' superblocks, drop its partitions.
    Delete,
    /// Keep the array, wipe the signatures inside it; `cause` names the
    /// volume kept by the skip list that shares its disks.
    Wipe,
    /// Leave it alone.
    Keep,
}

/// One array and what to do with it.
#[derive(Clone)]
#[cfg_attr(test, derive(Debug))]
pub struct Decision {
    pub array: Array,
    /// The volume name from its superblock (None: unreadable).
    pub name: Option<String>,
    pub holders: Vec<String>,
    pub action: Action,
    /// The kept volume that made this one `Wipe` or (ESP) `Keep`.
    pub cause: Option<String>,
}

impl std::fmt::Display for Decision {
    /// The action as IPA's log shows it, `Wipe(Some("root"))` with its
    /// cause (what a derived Debug of `Wipe(Option<String>)` printed).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.action {
            Action::Delete => f.write_str("Delete"),
            Action::Wipe => write!(f, "Wipe({:?})", self.cause),
            Action::Keep => f.write_str("Keep"),
        }
    }
}

/// Decide for every array; with an empty skip list, all are deleted.
pub fn decide(root: &Root, mut arrays: Vec<Array>, skip: &[&str]) -> Vec<Decision> {
    let mut out: Vec<Decision> = vec![];
    // taken out by reference: no IntoIter and its drop glue
    for a in arrays.iter_mut() {
        out.push(Decision {
            name: array::volume_name(root, a),
            holders: array::holders(root, a),
            array: std::mem::take(a),
            action: Action::Delete,
            cause: None,
        });
    }
    if skip.is_empty() {
        return out;
    }
    for i in 0..out.len() {
        let kept = out[i].name.as_deref().is_some_and(|n| skip.contains(&n));
        if !kept {
            continue;
        }
        crate::util::log_at!(
            Warn,
            "RAID device /dev/{} will not be deleted",
            out[i].array.kname
        );
        out[i].action = Action::Keep;
        // by index: the kept one's holders and name read in place, cloned
        // only for the neighbours that get them
        for j in 0..out.len() {
            if j != i
                && matches!(out[j].action, Action::Delete)
                && out[j].holders.iter().any(|h| out[i].holders.contains(h))
            {
                out[j].action = Action::Wipe;
                out[j].cause = out[i].name.clone();
            }
        }
    }
    for d in out.iter_mut() {
        if d.name.as_deref() == Some("esp") && d.action == Action::Wipe {
            d.action = Action::Keep;
        }
    }
    out
}
