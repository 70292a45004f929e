//! What `triage calibrate` prints about a fit, for people (the JSON form is the
//! fitted state itself).

use std::fmt::Write;

use crate::fit::arbiter::Arbiter;
use crate::fit::neighbours::OosRule;
use crate::fit::NeighbourModel;

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The neighbours' fit, one figure a line.
pub fn describe_neighbours(collection: &str, m: &NeighbourModel, seconds: f64) -> String {
    let st = &m.stats;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "collection {collection}: calibrated at k={} on {} held-out examples of {} ({seconds:.1} s)",
        m.k, st.held_out, m.collection_examples
    );
    let _ = writeln!(s, "  held-out accuracy: vote      {:.4} (temperature {})", st.vote_accuracy, m.vote_temperature);
    match (&m.head_info, st.head_accuracy) {
        (Some(h), Some(a)) => {
            let _ = writeln!(
                s,
                "  held-out accuracy: head      {a:.4} (logistic, C={}, fitted on {} examples in {:.1} s; cross-fitted)",
                h.c, h.examples, h.seconds
            );
            let _ = writeln!(
                s,
                "  held-out accuracy: mixture   {:.4} (head weight {:.2}, vote temperature {})",
                st.mixed_accuracy, m.head_weight, m.vote_temperature
            );
        }
        _ => {
            let _ = writeln!(s, "  head                        {}", m.head_note.as_deref().unwrap_or("none"));
        }
    }
    let _ = writeln!(s, "  ECE raw probability         {:.4}", st.raw_ece);
    let _ = writeln!(s, "  ECE calibrated (cross-fit)  {:.4}", st.calibrated_ece);
    let _ = writeln!(
        s,
        "  confidence map              {} similarity band(s), {} blocks",
        m.bands.len(),
        m.bands.iter().map(|b| b.map.x.len()).sum::<usize>()
    );
    let flagged = st.in_scope_flag_rate.map(pct).unwrap_or_default();
    match &m.oos {
        OosRule::Examples { min_probability } => {
            let _ = writeln!(
                s,
                "  out of scope                an out-of-scope label leads, or the best in-scope label's probability is below {min_probability:.3}: \
                 {} of {} out-of-scope examples flagged, {flagged} of in-scope ones (held out)",
                st.oos_flag_recall.map(pct).unwrap_or_default(),
                st.oos_examples
            );
        }
        OosRule::Fitted { score } => {
            let _ = writeln!(
                s,
                "  out of scope                an out-of-scope label leads, or the out-of-scope score fitted on the examples is at or above {}: \
                 {} of {} out-of-scope examples flagged, {flagged} of in-scope ones (held out, out of fold)",
                score.threshold.map_or("(none within the budget)".to_string(), |t| format!("{t:.2}")),
                st.oos_flag_recall.map(pct).unwrap_or_default(),
                st.oos_examples
            );
        }
        OosRule::Similarity { min_similarity, quantile } => {
            let _ = writeln!(
                s,
                "  out of scope below          nearest similarity {min_similarity:.3} (quantile {quantile}; flags {flagged} of held-out examples)"
            );
        }
        OosRule::None => {
            let _ = writeln!(s, "  out of scope                off");
        }
    }
    match m.shortcut_confidence {
        Some(t) => {
            let _ = writeln!(
                s,
                "  knn-shortcut at or above    confidence {t:.3} ({} of held-out examples, accuracy {:.4}; target {})",
                st.shortcut_coverage.map(pct).unwrap_or_default(),
                st.shortcut_accuracy.unwrap_or(0.0),
                m.shortcut_target
            );
        }
        None if st.refused.iter().any(|r| r.starts_with("knn-shortcut")) => {
            let _ = writeln!(s, "  knn-shortcut                off (refused, below)");
        }
        None => {
            let _ = writeln!(
                s,
                "  knn-shortcut                off (no confidence level reaches accuracy {} on held-out examples)",
                m.shortcut_target
            );
        }
    }
    if let Some(r) = &m.secondary {
        let _ = writeln!(
            s,
            "  secondary issue at or above {:.3} ({}: {} labeled secondary issues on {} held-out examples{}; {} of them get one)",
            r.threshold,
            r.method,
            r.labeled,
            r.held_out,
            match (r.precision, r.recall) {
                (Some(p), Some(c)) => format!(", precision {p:.3} recall {c:.3}"),
                _ => String::new(),
            },
            pct(r.flag_rate)
        );
    }
    for r in &st.refused {
        let _ = writeln!(s, "  refused                     {r}");
    }
    s
}

/// The arbiter's fit: each witness's held-out accuracy and the combination's.
pub fn describe_arbiter(a: &Arbiter, requests: u64) -> String {
    let st = &a.stats;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "arbiter for model {} at k={}: {} held-out answers ({requests} LLM requests, cached ones included)",
        a.model, a.k, st.answers
    );
    let _ = writeln!(s, "  LLM answers valid           {}", pct(st.valid_rate));
    let _ = writeln!(s, "  held-out accuracy: LLM      {:.4} (its own answers; invalid ones count as wrong)", st.llm_accuracy);
    let _ = writeln!(s, "  held-out accuracy: neighbours {:.4}", st.vote_accuracy);
    match st.arbiter_accuracy {
        Some(x) => {
            let _ = writeln!(s, "  held-out accuracy: arbiter  {x:.4} (cross-fitted: each half decided by a fit on the other)");
        }
        None => {
            let _ = writeln!(s, "  held-out accuracy: arbiter  not measured (a band could not be fitted on half the answers)");
        }
    }
    let _ = writeln!(
        s,
        "  LLM agrees with neighbours  {} (right {}); when they disagree the LLM is right {}, the neighbours {}",
        pct(st.agree_rate),
        st.agree_accuracy.map(pct).unwrap_or_else(|| "-".into()),
        st.disagree_llm_accuracy.map(pct).unwrap_or_else(|| "-".into()),
        st.disagree_vote_accuracy.map(pct).unwrap_or_else(|| "-".into())
    );
    if let Some(e) = st.arbiter_ece {
        let _ = writeln!(s, "  ECE of its confidence       {e:.4} (cross-fitted)");
    }
    let _ = writeln!(
        s,
        "  LLM signal                  {}",
        if a.uses_signal { "used (it varies with the answers)" } else { "not used (it does not vary)" }
    );
    for n in &a.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    let best = st.llm_accuracy.max(st.vote_accuracy);
    if st.arbiter_accuracy.is_some_and(|x| x < best) {
        let _ = writeln!(
            s,
            "  warning: on these answers the arbiter did not beat its better witness ({best:.4}); a larger --llm-sample gives it more to learn from"
        );
    }
    s
}
