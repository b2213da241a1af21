//! Lease balancing, pure: with a shared lease table, an instance holding fewer than its share
//! of a mapping's open shards takes one shard at a time from the most loaded instance
//! (docs/leases.md). Shares are `ceil(open shards / instances)`; an instance steals only when
//! it is below its share and the victim is above it, so two instances never trade a shard
//! back and forth.

use std::collections::BTreeMap;

/// The shard `me` should take from another instance, if any. `leases` holds each open
/// shard with the owner of its live lease (`None`: free).
pub(crate) fn shard_to_steal(me: &str, leases: &[(String, Option<String>)]) -> Option<String> {
    let mut held: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    held.entry(me).or_default();
    for (shard, owner) in leases {
        if let Some(owner) = owner {
            held.entry(owner.as_str()).or_default().push(shard.as_str());
        }
    }
    if leases.iter().any(|(_, owner)| owner.is_none()) {
        return None; // free shards first: the coordinator takes those without stealing
    }
    let share = leases.len().div_ceil(held.len());
    let mine = held.get(me).map_or(0, Vec::len);
    if mine >= share {
        return None;
    }
    let (_, victim) = held
        .iter()
        .filter(|(owner, _)| **owner != me)
        .max_by_key(|(owner, shards)| (shards.len(), std::cmp::Reverse(**owner)))?;
    (victim.len() > share)
        .then(|| victim.iter().max().map(|s| s.to_string()))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leases(owners: &[&str]) -> Vec<(String, Option<String>)> {
        owners
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("shard-{i}"), (!o.is_empty()).then(|| o.to_string())))
            .collect()
    }

    #[test]
    fn a_newcomer_takes_one_shard_at_a_time_until_it_has_its_share() {
        let mut table = leases(&["a", "a", "a", "a"]);
        let mut steps = 0;
        while let Some(shard) = shard_to_steal("b", &table) {
            let entry = table.iter_mut().find(|(s, _)| *s == shard).unwrap();
            assert_eq!(entry.1.as_deref(), Some("a"));
            entry.1 = Some("b".into());
            steps += 1;
        }
        assert_eq!(steps, 2, "4 shards, 2 instances: 2 each");
        assert_eq!(shard_to_steal("a", &table), None, "and no stealing back");
    }

    #[test]
    fn free_shards_and_fair_shares_mean_no_stealing() {
        assert_eq!(shard_to_steal("b", &leases(&["a", "a", ""])), None);
        assert_eq!(
            shard_to_steal("c", &leases(&["a", "a", "b", "b"])),
            None,
            "share is 2: nobody is above it"
        );
        assert_eq!(
            shard_to_steal("b", &leases(&["a", "a", "a", "b", "b"])),
            None,
            "3 and 2 of 5"
        );
        assert_eq!(shard_to_steal("a", &[]), None);
    }

    proptest! {
        /// Stealing until nobody wants to ends with every instance within one shard of the
        /// others, and never moves a shard twice.
        #[test]
        fn stealing_converges_to_even_shares(owners in proptest::collection::vec(0usize..4, 1..24), instances in 1usize..5) {
            let names = ["i0", "i1", "i2", "i3", "i4"];
            let mut table: Vec<(String, Option<String>)> = owners
                .iter()
                .enumerate()
                .map(|(i, o)| (format!("shard-{i:02}"), Some(names[o % instances].to_string())))
                .collect();
            let mut moved = std::collections::HashSet::new();
            for _ in 0..100 {
                let mut any = false;
                for me in &names[..instances] {
                    if let Some(shard) = shard_to_steal(me, &table) {
                        prop_assert!(moved.insert(shard.clone()), "{shard} moved twice");
                        table.iter_mut().find(|(s, _)| *s == shard).unwrap().1 = Some(me.to_string());
                        any = true;
                    }
                }
                if !any { break; }
            }
            let counts: Vec<usize> = names[..instances]
                .iter()
                .map(|n| table.iter().filter(|(_, o)| o.as_deref() == Some(*n)).count())
                .collect();
            let share = table.len().div_ceil(instances);
            prop_assert!(counts.iter().all(|c| *c <= share), "{counts:?}");
        }
    }
}
