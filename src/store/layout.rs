//! How triage lays out a collection it creates on a Qdrant server or cluster: shards,
//! replicas, write consistency, and the memory settings that matter for large collections
//! (vectors and payloads on disk, int8 scalar quantisation). Applies only when the
//! collection is created; the embedded store has none of these.

use serde::Serialize;

/// Vector compression kept in RAM next to the original vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// Scalar int8: 384 bytes per 384-dim vector instead of 1,536; top results are rescored with the originals
    Int8,
}

/// Settings of a collection created on a Qdrant server (flags of `index` and `import`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, clap::Args)]
pub struct CollectionLayout {
    /// Qdrant server: shards of a new collection, spread over the nodes [default: the server's, one per node]
    #[arg(long)]
    pub shards: Option<u32>,
    /// Qdrant server: copies of each shard, on distinct nodes (2 survives the loss of one node) [default: 1]
    #[arg(long)]
    pub replication_factor: Option<u32>,
    /// Qdrant server: replicas that must apply a write before it is acknowledged (at most --replication-factor) [default: 1]
    #[arg(long)]
    pub write_consistency: Option<u32>,
    /// Qdrant server: keep the original vectors on disk (memory-mapped) instead of in RAM
    #[arg(long)]
    pub on_disk_vectors: bool,
    /// Qdrant server: keep payloads (text, label, fields) on disk instead of in RAM
    #[arg(long)]
    pub on_disk_payload: bool,
    /// Qdrant server: compressed copy of the vectors kept in RAM for search
    #[arg(long, value_enum)]
    pub quantization: Option<Quantization>,
}

impl CollectionLayout {
    /// No setting given: the server's defaults.
    pub fn is_default(&self) -> bool {
        *self == CollectionLayout::default()
    }

    /// Error unless the numbers make a collection Qdrant can create.
    pub fn check(&self) -> Result<(), String> {
        let bad = |m: String| Err(m);
        for (flag, v) in
            [("--shards", self.shards), ("--replication-factor", self.replication_factor), ("--write-consistency", self.write_consistency)]
        {
            if v == Some(0) {
                return bad(format!("{flag} must be at least 1"));
            }
        }
        if let Some(s) = self.shards.filter(|s| *s > 1024) {
            return bad(format!("--shards {s}: at most 1024"));
        }
        let replicas = self.replication_factor.unwrap_or(1);
        if let Some(w) = self.write_consistency.filter(|w| *w > replicas) {
            return bad(format!(
                "--write-consistency {w} exceeds the replication factor {replicas}: no write could ever be acknowledged"
            ));
        }
        Ok(())
    }

    /// The flags given, as on the command line (for messages).
    pub fn flags(&self) -> String {
        let mut f = Vec::new();
        if let Some(s) = self.shards {
            f.push(format!("--shards {s}"));
        }
        if let Some(r) = self.replication_factor {
            f.push(format!("--replication-factor {r}"));
        }
        if let Some(w) = self.write_consistency {
            f.push(format!("--write-consistency {w}"));
        }
        if self.on_disk_vectors {
            f.push("--on-disk-vectors".into());
        }
        if self.on_disk_payload {
            f.push("--on-disk-payload".into());
        }
        if let Some(Quantization::Int8) = self.quantization {
            f.push("--quantization int8".into());
        }
        f.join(" ")
    }

    /// A note for stderr when settings were given for a collection that already existed.
    pub fn unused_note(&self, collection: &str) -> Option<String> {
        (!self.is_default()).then(|| {
            format!(
                "note: collection {collection} already existed: {} apply only when triage creates a collection; its \
                 settings are unchanged",
                self.flags()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_layouts_are_refused_with_the_flag_named() {
        assert!(CollectionLayout::default().check().is_ok());
        let ok = CollectionLayout { shards: Some(6), replication_factor: Some(2), write_consistency: Some(2), ..Default::default() };
        assert!(ok.check().is_ok());
        let zero = CollectionLayout { replication_factor: Some(0), ..Default::default() };
        assert!(zero.check().unwrap_err().contains("--replication-factor must be at least 1"));
        let over = CollectionLayout { write_consistency: Some(2), ..Default::default() };
        assert!(over.check().unwrap_err().contains("exceeds the replication factor 1"));
        let many = CollectionLayout { shards: Some(5000), ..Default::default() };
        assert!(many.check().is_err());
    }

    #[test]
    fn flags_and_notes_name_what_was_given() {
        let l = CollectionLayout {
            shards: Some(3),
            replication_factor: Some(2),
            on_disk_vectors: true,
            quantization: Some(Quantization::Int8),
            ..Default::default()
        };
        assert_eq!(l.flags(), "--shards 3 --replication-factor 2 --on-disk-vectors --quantization int8");
        assert!(l.unused_note("saas").unwrap().contains("collection saas already existed"));
        assert!(CollectionLayout::default().unused_note("saas").is_none());
    }
}
