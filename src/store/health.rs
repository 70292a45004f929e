//! What a store can see of a collection's replicas: on a Qdrant cluster, which shard
//! copies are active, dead or recovering, as the node triage talks to knows them. Used
//! by `/readyz` to report a degraded cluster that still answers.

use std::collections::BTreeMap;

use serde::Serialize;

/// One copy of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaInfo {
    pub shard: u32,
    pub peer: u64,
    /// Qdrant's replica state name: `Active`, `Dead`, `Partial`, `Initializing`, ...
    pub state: String,
}

impl ReplicaInfo {
    fn active(&self) -> bool {
        self.state == "Active"
    }
}

/// The replicas of one collection as one node sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaHealth {
    /// The peer that answered.
    pub peer: u64,
    pub shards: usize,
    pub replicas: usize,
    pub active_replicas: usize,
    /// Shards without an active replica: searches and writes that need them fail.
    pub unavailable_shards: Vec<u32>,
    /// Replicas that are not active, e.g. `shard 2 on peer 123: Dead`.
    pub problems: Vec<String>,
    /// Shard transfers in progress (a replica being recovered or moved).
    pub transfers: usize,
}

/// What `/readyz` makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaStatus {
    /// Every replica active, nothing moving.
    Healthy,
    /// Every shard has an active replica, but some copy is dead or recovering: answers
    /// still come, with less redundancy.
    Degraded,
    /// Some shard has no active replica.
    Unavailable,
}

impl ReplicaHealth {
    pub fn from_replicas(peer: u64, replicas: Vec<ReplicaInfo>, transfers: usize) -> Self {
        let mut by_shard: BTreeMap<u32, Vec<&ReplicaInfo>> = BTreeMap::new();
        for r in &replicas {
            by_shard.entry(r.shard).or_default().push(r);
        }
        let unavailable_shards =
            by_shard.iter().filter(|(_, rs)| !rs.iter().any(|r| r.active())).map(|(s, _)| *s).collect();
        let problems = replicas
            .iter()
            .filter(|r| !r.active())
            .map(|r| format!("shard {} on peer {}: {}", r.shard, r.peer, r.state))
            .collect();
        ReplicaHealth {
            peer,
            shards: by_shard.len(),
            replicas: replicas.len(),
            active_replicas: replicas.iter().filter(|r| r.active()).count(),
            unavailable_shards,
            problems,
            transfers,
        }
    }

    pub fn status(&self) -> ReplicaStatus {
        if !self.unavailable_shards.is_empty() || self.shards == 0 {
            ReplicaStatus::Unavailable
        } else if !self.problems.is_empty() || self.transfers > 0 {
            ReplicaStatus::Degraded
        } else {
            ReplicaStatus::Healthy
        }
    }

    /// One line for `/readyz`'s `reason`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} of {} shard replicas active", self.active_replicas, self.replicas);
        if !self.unavailable_shards.is_empty() {
            let shards: Vec<String> = self.unavailable_shards.iter().map(u32::to_string).collect();
            s.push_str(&format!("; no active replica for shard(s) {}", shards.join(", ")));
        }
        if !self.problems.is_empty() {
            s.push_str(&format!("; {}", self.problems.join("; ")));
        }
        if self.transfers > 0 {
            s.push_str(&format!("; {} shard transfer(s) in progress", self.transfers));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(shard: u32, peer: u64, state: &str) -> ReplicaInfo {
        ReplicaInfo { shard, peer, state: state.into() }
    }

    #[test]
    fn a_dead_copy_degrades_and_a_shard_without_an_active_copy_is_unavailable() {
        let healthy = ReplicaHealth::from_replicas(1, vec![r(0, 1, "Active"), r(0, 2, "Active"), r(1, 2, "Active")], 0);
        assert_eq!(healthy.status(), ReplicaStatus::Healthy);
        assert_eq!(healthy.summary(), "3 of 3 shard replicas active");

        let degraded = ReplicaHealth::from_replicas(1, vec![r(0, 1, "Active"), r(0, 3, "Dead"), r(1, 2, "Active")], 0);
        assert_eq!(degraded.status(), ReplicaStatus::Degraded);
        assert_eq!(degraded.problems, ["shard 0 on peer 3: Dead"]);
        assert!(degraded.summary().starts_with("2 of 3 shard replicas active; shard 0 on peer 3: Dead"));

        let moving = ReplicaHealth::from_replicas(1, vec![r(0, 1, "Active")], 1);
        assert_eq!(moving.status(), ReplicaStatus::Degraded);

        let lost = ReplicaHealth::from_replicas(1, vec![r(0, 1, "Active"), r(1, 3, "Dead"), r(1, 2, "Partial")], 0);
        assert_eq!(lost.status(), ReplicaStatus::Unavailable);
        assert_eq!(lost.unavailable_shards, [1]);
        assert!(lost.summary().contains("no active replica for shard(s) 1"));
    }
}
