//! Lease balancing, pure: with a shared lease table, an instance takes shards from the most
//! loaded instance while that one holds at least two more than it does, at most
//! [`MAX_STEALS_PER_PERIOD`] per discovery period (docs/leases.md). The end state: every
//! instance within one shard of every other.

use std::collections::BTreeMap;

/// How many shards one instance takes from others in one discovery period: enough to reach
/// its share in one period on streams of a few dozen shards, few enough that a newcomer does
/// not stop a large part of a big stream at once.
pub(crate) const MAX_STEALS_PER_PERIOD: usize = 4;

/// The shards `me` should take from other instances now: [`shard_to_steal`] applied until it
/// says none or the bound is reached, each step seeing the moves before it.
pub(crate) fn shards_to_steal(me: &str, leases: &[(String, Option<String>)]) -> Vec<String> {
    let mut table = leases.to_vec();
    let mut stolen = Vec::new();
    while stolen.len() < MAX_STEALS_PER_PERIOD {
        let Some(shard) = shard_to_steal(me, &table) else {
            break;
        };
        if let Some(entry) = table.iter_mut().find(|(s, _)| *s == shard) {
            entry.1 = Some(me.to_string());
        }
        stolen.push(shard);
    }
    stolen
}

/// The shard `me` should take from another instance, if any. `leases` holds each open
/// shard with the owner of its live lease (`None`: free). `me` takes a shard from the most
/// loaded instance when that one holds at least two more than `me`: every move narrows the
/// gap, so two instances never trade a shard back and forth, and an instance that holds
/// nothing (which the others cannot see in the table) still gets its turn.
pub(crate) fn shard_to_steal(me: &str, leases: &[(String, Option<String>)]) -> Option<String> {
    if leases.iter().any(|(_, owner)| owner.is_none()) {
        return None; // free shards first: the coordinator takes those without stealing
    }
    let mut held: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    held.entry(me).or_default();
    for (shard, owner) in leases {
        if let Some(owner) = owner {
            held.entry(owner.as_str()).or_default().push(shard.as_str());
        }
    }
    let mine = held.get(me).map_or(0, Vec::len);
    let (_, victim) = held
        .iter()
        .filter(|(owner, _)| **owner != me)
        .max_by_key(|(owner, shards)| (shards.len(), std::cmp::Reverse(**owner)))?;
    (victim.len() >= mine + 2)
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
    fn one_period_reaches_the_share_within_the_bound() {
        let all_a = leases(&["a"; 8]);
        assert_eq!(
            shards_to_steal("b", &all_a).len(),
            4,
            "8 shards, 2 instances"
        );
        let two = leases(&["a", "a", "a", "a", "b", "b", "b", "b"]);
        let stolen = shards_to_steal("c", &two);
        assert_eq!(stolen.len(), 2, "8 shards, 3 instances: 3, 3, 2");
        let from_a = stolen
            .iter()
            .filter(|s| {
                two.iter()
                    .any(|(t, o)| t == *s && o.as_deref() == Some("a"))
            })
            .count();
        assert_eq!(from_a, 1, "one from each of the most loaded");
        let big = leases(&["a"; 40]);
        assert_eq!(shards_to_steal("b", &big).len(), MAX_STEALS_PER_PERIOD);
    }

    #[test]
    fn free_shards_and_fair_shares_mean_no_stealing() {
        assert_eq!(shard_to_steal("b", &leases(&["a", "a", ""])), None);
        assert_eq!(
            shard_to_steal("b", &leases(&["a", "a", "b"])),
            None,
            "2 and 1: within one"
        );
        assert_eq!(
            shard_to_steal("c", &leases(&["a", "a", "b", "b"])).as_deref(),
            Some("shard-1"),
            "an idle newcomer takes one from the first of the most loaded"
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
        /// others (idle ones included), and never moves a shard back.
        #[test]
        fn stealing_converges_to_even_shares(owners in proptest::collection::vec(0usize..4, 1..24), instances in 1usize..5) {
            let names = ["i0", "i1", "i2", "i3", "i4"];
            let mut table: Vec<(String, Option<String>)> = owners
                .iter()
                .enumerate()
                .map(|(i, o)| (format!("shard-{i:02}"), Some(names[o % instances].to_string())))
                .collect();
            let mut moved = std::collections::HashSet::new();
            for _ in 0..1000 {
                let mut any = false;
                for me in &names[..instances] {
                    if let Some(shard) = shard_to_steal(me, &table) {
                        prop_assert!(moved.insert((shard.clone(), me.to_string())), "{shard} came back to {me}");
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
            let (max, min) = (counts.iter().max().copied().unwrap_or(0), counts.iter().min().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "{counts:?}");
        }
    }
}
