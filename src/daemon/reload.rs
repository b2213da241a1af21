//! Live reload: what a new configuration changes in the running set of mappings.
//!
//! Planning is pure: compare the running mappings with the new file's, by `uuid` (the
//! identity checkpoints are keyed by). Unchanged mappings are left alone; a changed mapping is
//! stopped (drained, checkpointed) before its new version starts, so two versions never hold
//! the same shard; removed mappings drain and stop; added ones start. Settings outside
//! `[[mappings]]` (state, http, aws) are only read at start-up, and a reload that changes them
//! is applied to the mappings and reported for the rest.

use crate::config::{Config, MappingConfig};

/// What a reload does, in mapping identities.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReloadPlan {
    /// New uuids: start them.
    pub(crate) added: Vec<String>,
    /// Gone from the file: drain and stop them.
    pub(crate) removed: Vec<String>,
    /// Present in both with different settings: drain the old version, then start the new.
    pub(crate) changed: Vec<String>,
    /// Identical: not touched.
    pub(crate) unchanged: Vec<String>,
    /// Top-level sections that differ and take effect only after a restart.
    pub(crate) needs_restart: Vec<&'static str>,
}

impl ReloadPlan {
    #[cfg(test)]
    fn is_noop(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares the running configuration with a newly loaded one.
pub(crate) fn plan(running: &Config, next: &Config) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    let find = |list: &[MappingConfig], uuid: &str| -> Option<MappingConfig> {
        list.iter().find(|m| m.uuid == uuid).cloned()
    };
    for old in &running.mappings {
        match find(&next.mappings, &old.uuid) {
            None => plan.removed.push(old.uuid.clone()),
            Some(new) if new == *old => plan.unchanged.push(old.uuid.clone()),
            Some(_) => plan.changed.push(old.uuid.clone()),
        }
    }
    for new in &next.mappings {
        if find(&running.mappings, &new.uuid).is_none() {
            plan.added.push(new.uuid.clone());
        }
    }
    if running.state != next.state {
        plan.needs_restart.push("state");
    }
    if running.http != next.http {
        plan.needs_restart.push("http");
    }
    if running.aws != next.aws {
        plan.needs_restart.push("aws");
    }
    if running.lambda_api != next.lambda_api {
        plan.needs_restart.push("lambda_api");
    }
    if running.daemon.worker_threads != next.daemon.worker_threads {
        plan.needs_restart.push("daemon.worker_threads");
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "11111111-1111-4111-8111-111111111111";
    const B: &str = "22222222-2222-4222-8222-222222222222";
    const C: &str = "33333333-3333-4333-8333-333333333333";

    fn mapping(uuid: &str, queue: &str, batch: usize) -> String {
        format!(
            "[[mapping]]\nuuid = \"{uuid}\"\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:{queue}\"\nfunction_name = \"f\"\nbatch_size = {batch}\n"
        )
    }

    fn config(head: &str, mappings: &[String]) -> Config {
        let text = format!("{head}\n{}", mappings.concat());
        match Config::parse(&text) {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    #[test]
    fn classifies_added_removed_changed_and_unchanged_by_uuid() {
        let old = config("", &[mapping(A, "a", 10), mapping(B, "b", 10)]);
        let new = config(
            "",
            &[mapping(A, "a", 10), mapping(B, "b", 5), mapping(C, "c", 10)],
        );
        let p = plan(&old, &new);
        assert_eq!(p.unchanged, vec![A]);
        assert_eq!(p.changed, vec![B]);
        assert_eq!(p.added, vec![C]);
        assert!(p.removed.is_empty());
        assert!(p.needs_restart.is_empty());

        let p = plan(&new, &old);
        assert_eq!(p.removed, vec![C]);
        assert_eq!(p.changed, vec![B]);
    }

    #[test]
    fn the_same_file_is_a_no_op_and_order_does_not_matter() {
        let old = config("", &[mapping(A, "a", 10), mapping(B, "b", 10)]);
        let new = config("", &[mapping(B, "b", 10), mapping(A, "a", 10)]);
        let p = plan(&old, &new);
        assert!(p.is_noop(), "{p:?}");
        assert_eq!(p.unchanged.len(), 2);
    }

    #[test]
    fn top_level_changes_are_reported_as_needing_a_restart() {
        let old = config("", &[mapping(A, "a", 10)]);
        let new = config(
            "[http]\nlisten = \"127.0.0.1:9999\"\n[aws]\nregion = \"eu-west-1\"\n\
             [daemon]\nworker_threads = 1\nshutdown_timeout_seconds = 5",
            &[mapping(A, "a", 10)],
        );
        let p = plan(&old, &new);
        assert!(p.is_noop());
        assert_eq!(
            p.needs_restart,
            vec!["http", "aws", "daemon.worker_threads"]
        );
    }

    #[test]
    fn disabling_a_mapping_is_a_change() {
        let old = config("", &[mapping(A, "a", 10)]);
        let new = config("", &[format!("{}enabled = false\n", mapping(A, "a", 10))]);
        assert_eq!(plan(&old, &new).changed, vec![A]);
    }
}
