//! One writer at a time of a collection's meta (taxonomy, fit) in this process: every
//! read-modify-write of it (a label joining or leaving the taxonomy, a fit stored) holds
//! [`meta_lock`] from its read to its write, so none overwrites another's change with
//! what it read before it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

/// Hold while reading, changing and writing `collection`'s meta.
pub async fn meta_lock(collection: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = {
        let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(collection.to_string()).or_default().clone()
    };
    lock.lock_owned().await
}
