//! The set of mappings the daemon should run, and where each is in its life: the config
//! file's mappings and the API's, with AWS's states (`Creating`, `Enabling`, `Enabled`,
//! `Disabling`, `Disabled`, `Updating`, `Deleting`). Pure: the API handlers change it, the
//! daemon's supervisor reads [`Control::desired`], applies it through the reload path and
//! reports back with [`Control::settle`].
//!
//! Every change bumps the mapping's generation. A settle only ends the transitional state
//! of a mapping whose generation the supervisor applied, so a change that arrives during a
//! drain stays `Updating` until its own apply.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::config::MappingConfig;

/// Where a mapping was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `[[mapping]]` in the config file: changed only by editing it (and SIGHUP).
    File,
    /// `CreateEventSourceMapping`: stored in the state store.
    Api,
}

/// A change the supervisor has not applied yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Creating,
    Enabling,
    Disabling,
    Updating,
    Deleting,
    /// Applied: `Enabled` or `Disabled`.
    Steady,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) mapping: MappingConfig,
    pub(crate) origin: Origin,
    /// The merged request document (API mappings; empty for the file's).
    pub(crate) document: Map<String, Value>,
    pub(crate) phase: Phase,
    generation: u64,
    pub(crate) last_modified: f64,
}

impl Entry {
    /// The state `GetEventSourceMapping` reports.
    pub(crate) fn state(&self) -> &'static str {
        match self.phase {
            Phase::Creating => "Creating",
            Phase::Enabling => "Enabling",
            Phase::Disabling => "Disabling",
            Phase::Updating => "Updating",
            Phase::Deleting => "Deleting",
            Phase::Steady if self.mapping.enabled => "Enabled",
            Phase::Steady => "Disabled",
        }
    }
}

/// What the supervisor applied: the generation of every mapping it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Applied(Vec<(String, u64)>);

/// Every mapping of the daemon.
#[derive(Debug, Default)]
pub(crate) struct Control {
    entries: Vec<Entry>,
    generation: u64,
}

impl Control {
    /// The mappings at start-up: the file's and the stored API ones, all already applied.
    pub(crate) fn new(file: Vec<MappingConfig>, now: f64) -> Self {
        let mut control = Control::default();
        for mapping in file {
            control.push(mapping, Origin::File, Map::new(), Phase::Steady, now);
        }
        control
    }

    fn push(
        &mut self,
        mapping: MappingConfig,
        origin: Origin,
        document: Map<String, Value>,
        phase: Phase,
        at: f64,
    ) {
        self.generation += 1;
        self.entries.push(Entry {
            mapping,
            origin,
            document,
            phase,
            generation: self.generation,
            last_modified: at,
        });
    }

    /// Adds a stored API mapping at start-up (already applied).
    pub(crate) fn restore(
        &mut self,
        mapping: MappingConfig,
        document: Map<String, Value>,
        at: f64,
    ) {
        self.push(mapping, Origin::Api, document, Phase::Steady, at);
    }

    pub(crate) fn get(&self, uuid: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.mapping.uuid == uuid)
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// AWS allows one mapping per source and function (409 otherwise).
    pub(crate) fn check_unique(&self, mapping: &MappingConfig) -> Result<(), ApiError> {
        let clash = self.entries.iter().find(|e| {
            e.mapping.uuid != mapping.uuid
                && e.phase != Phase::Deleting
                && e.mapping.source.arn() == mapping.source.arn()
                && e.mapping.function_name == mapping.function_name
        });
        match clash {
            Some(e) => Err(ApiError::conflict(format!(
                "An event source mapping with {} arn (\" {} \") and function (\" {} \") \
                 already exists. Please update or delete the existing mapping with UUID {}",
                match mapping.kind() {
                    crate::config::SourceKind::Sqs => "SQS",
                    crate::config::SourceKind::Kinesis => "Kinesis",
                    crate::config::SourceKind::DynamoDbStreams => "DynamoDB",
                },
                mapping.source.arn(),
                mapping.function_name,
                e.mapping.uuid
            ))),
            None => Ok(()),
        }
    }

    /// A new API mapping, `Creating` until the supervisor has started it.
    pub(crate) fn create(
        &mut self,
        mapping: MappingConfig,
        document: Map<String, Value>,
        now: f64,
    ) -> Result<&Entry, ApiError> {
        self.check_unique(&mapping)?;
        self.push(mapping, Origin::Api, document, Phase::Creating, now);
        self.entries
            .last()
            .ok_or_else(|| ApiError::service("lost a new mapping"))
    }

    /// The API mapping that an Update or Delete may change: it exists, the API made it, and
    /// no other change to it is under way (AWS answers `ResourceInUseException`).
    pub(crate) fn changeable(&self, uuid: &str) -> Result<&Entry, ApiError> {
        let entry = self.get(uuid).ok_or_else(|| ApiError::not_found(uuid))?;
        if entry.origin == Origin::File {
            return Err(ApiError::invalid(format!(
                "event source mapping {uuid} is defined in esmd's config file; edit the file \
                 and send esmd SIGHUP to change it"
            )));
        }
        if entry.phase != Phase::Steady {
            return Err(ApiError::in_use(format!(
                "Cannot update the event source mapping because it is in use (state {}). \
                 Retry when it is Enabled or Disabled.",
                entry.state()
            )));
        }
        Ok(entry)
    }

    /// Replaces an API mapping's settings: `Enabling`, `Disabling` or `Updating` until
    /// applied.
    pub(crate) fn update(
        &mut self,
        mapping: MappingConfig,
        document: Map<String, Value>,
        now: f64,
    ) -> Result<&Entry, ApiError> {
        self.changeable(&mapping.uuid)?;
        self.check_unique(&mapping)?;
        self.generation += 1;
        let generation = self.generation;
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.mapping.uuid == mapping.uuid)
            .ok_or_else(|| ApiError::not_found(&mapping.uuid))?;
        entry.phase = match (entry.mapping.enabled, mapping.enabled) {
            (false, true) => Phase::Enabling,
            (true, false) => Phase::Disabling,
            _ => Phase::Updating,
        };
        entry.mapping = mapping;
        entry.document = document;
        entry.generation = generation;
        entry.last_modified = now;
        Ok(entry)
    }

    /// Marks an API mapping `Deleting`; it goes once the supervisor has drained it.
    pub(crate) fn delete(&mut self, uuid: &str, now: f64) -> Result<&Entry, ApiError> {
        self.changeable(uuid)?;
        self.generation += 1;
        let generation = self.generation;
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.mapping.uuid == uuid)
            .ok_or_else(|| ApiError::not_found(uuid))?;
        entry.phase = Phase::Deleting;
        entry.generation = generation;
        entry.last_modified = now;
        Ok(entry)
    }

    /// The mappings to run (all but those being deleted), and what this snapshot covers.
    pub(crate) fn desired(&self) -> (Vec<MappingConfig>, Applied) {
        let mappings = self
            .entries
            .iter()
            .filter(|e| e.phase != Phase::Deleting)
            .map(|e| e.mapping.clone())
            .collect();
        let applied = self
            .entries
            .iter()
            .map(|e| (e.mapping.uuid.clone(), e.generation))
            .collect();
        (mappings, Applied(applied))
    }

    /// The supervisor has applied `applied`: those changes are done. Returns the uuids of the
    /// mappings whose deletion is now complete.
    pub(crate) fn settle(&mut self, applied: &Applied) -> Vec<String> {
        let done = |e: &Entry| {
            applied
                .0
                .iter()
                .any(|(uuid, generation)| *uuid == e.mapping.uuid && *generation == e.generation)
        };
        let mut deleted = Vec::new();
        self.entries.retain_mut(|e| {
            if !done(e) {
                return true;
            }
            if e.phase == Phase::Deleting {
                deleted.push(e.mapping.uuid.clone());
                return false;
            }
            e.phase = Phase::Steady;
            true
        });
        deleted
    }

    /// The config file was loaded again: its mappings replace the file's old ones. Refused
    /// when a file mapping would clash with an API mapping (same uuid, or same source and
    /// function).
    pub(crate) fn replace_file(
        &mut self,
        file: Vec<MappingConfig>,
        now: f64,
    ) -> Result<(), String> {
        for mapping in &file {
            let clash = self.entries.iter().find(|e| {
                e.origin == Origin::Api
                    && e.phase != Phase::Deleting
                    && (e.mapping.uuid == mapping.uuid
                        || (e.mapping.source.arn() == mapping.source.arn()
                            && e.mapping.function_name == mapping.function_name))
            });
            if let Some(e) = clash {
                return Err(format!(
                    "mapping {} ({}) clashes with mapping {} created through the Lambda API; \
                     delete one of them",
                    mapping.uuid,
                    mapping.label(),
                    e.mapping.uuid
                ));
            }
        }
        self.entries.retain(|e| e.origin == Origin::Api);
        for mapping in file {
            self.push(mapping, Origin::File, Map::new(), Phase::Steady, now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
