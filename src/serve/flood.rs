//! The flood guard on example writes: each API key (or `anonymous`) may write at most
//! `--example-writes-per-minute` examples (a token bucket refilled continuously, so a
//! client that stays under the rate is never refused), and a write after which one
//! source holds more than `--max-source-share` of a label's examples is flagged in the
//! response, the log and `/metrics`: one client flipping a category shows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use utoipa::ToSchema;

use crate::example::Example;
use crate::taxonomy::label_key;

/// Labels with fewer examples are not checked for one source's share: a new label's
/// first examples all come from someone.
pub const SHARE_MIN_EXAMPLES: usize = 10;

/// Example-write budgets per key.
#[derive(Default)]
pub struct WriteLimits {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl WriteLimits {
    /// Take `n` examples from `key`'s budget of `per_minute` (0: unlimited) at `now`;
    /// `Err(seconds)` until enough are back (never for a request the budget can never
    /// hold: that asks for more than `per_minute`, and is refused at once with the wait
    /// for a full budget).
    pub fn take(&self, key: &str, n: usize, per_minute: usize, now: Instant) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        let cap = per_minute as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((cap, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * cap / 60.0).min(cap);
        *at = now;
        let want = n as f64;
        if want <= *tokens {
            *tokens -= want;
            return Ok(());
        }
        let missing = want.min(cap) - *tokens;
        Err((missing * 60.0 / cap).ceil().max(1.0) as u64)
    }
}

/// One source holding more than its share of a label's examples after a write.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ShareFlag {
    pub label: String,
    /// The source (`api:<key id>`, see the provenance of the examples).
    pub source: String,
    pub examples_from_source: usize,
    pub examples_of_label: usize,
    pub share: f64,
}

/// The labels among `written` where the examples of `source` are more than `max_share`
/// of `stored` (the collection after the write) with that label.
pub fn share_flags(stored: &[Example], written: &[String], source: &str, max_share: f64) -> Vec<ShareFlag> {
    let mut flags: Vec<ShareFlag> = Vec::new();
    for label in written {
        let k = label_key(label);
        if flags.iter().any(|f| label_key(&f.label) == k) {
            continue;
        }
        let of_label: Vec<&Example> = stored.iter().filter(|e| label_key(&e.label) == k).collect();
        let from = of_label.iter().filter(|e| e.provenance.as_ref().is_some_and(|p| p.source_name() == source)).count();
        let share = from as f64 / of_label.len().max(1) as f64;
        if of_label.len() >= SHARE_MIN_EXAMPLES && share > max_share {
            flags.push(ShareFlag {
                label: label.clone(),
                source: source.to_string(),
                examples_from_source: from,
                examples_of_label: of_label.len(),
                share: (share * 1e4).round() / 1e4,
            });
        }
    }
    flags
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::provenance::{Origin, Provenance};
    use std::time::Duration;

    #[test]
    fn a_key_over_its_budget_waits_and_others_do_not() {
        let l = WriteLimits::default();
        let t0 = Instant::now();
        assert_eq!(l.take("a", 50, 60, t0), Ok(()));
        assert_eq!(l.take("a", 10, 60, t0), Ok(()));
        assert_eq!(l.take("a", 5, 60, t0), Err(5), "one example a second comes back");
        assert_eq!(l.take("b", 60, 60, t0), Ok(()), "budgets are per key");
        assert_eq!(l.take("a", 5, 60, t0 + Duration::from_secs(5)), Ok(()));
        assert_eq!(l.take("a", 500, 60, t0 + Duration::from_secs(5)), Err(60), "more than the budget: wait for all of it");
        assert_eq!(l.take("a", 10_000, 0, t0), Ok(()), "0: unlimited");
    }

    #[test]
    fn one_source_over_its_share_of_a_label_is_flagged() {
        let t = crate::Taxonomy::parse("name = \"t\"\n[[categories]]\nname = \"A\"\n").unwrap();
        let ex = |i: usize, label: &str, key: &str| {
            let mut e = Example::new(format!("e{i}"), "t", label);
            e.provenance = Some(Provenance::new(&Origin::Api(key.into()), None, &t, 0));
            e
        };
        let mut stored: Vec<Example> = (0..6).map(|i| ex(i, "Billing", "key-aaaaaaaa")).collect();
        stored.extend((6..14).map(|i| ex(i, "Billing", "key-flooder")));
        stored.extend((14..17).map(|i| ex(i, "Small", "key-flooder")));
        let flags = share_flags(&stored, &["billing".into(), "Small".into()], "api:key-flooder", 0.5);
        assert_eq!(flags.len(), 1, "Small has too few examples to judge: {flags:?}");
        assert_eq!((flags[0].examples_from_source, flags[0].examples_of_label), (8, 14));
        assert!((flags[0].share - 0.5714).abs() < 1e-9);
        assert!(share_flags(&stored, &["Billing".into()], "api:key-flooder", 0.6).is_empty());
    }
}
