//! The classification options a user sets (k, review threshold, filter), checked by
//! one set of rules wherever they are made: flags (`classify`, `serve`, `pull`,
//! `eval`, `calibrate --llm`), an HTTP request, an evaluation run. Each surface
//! builds its [`ClassifyOptions`] here once; the classifier then trusts them.

use crate::classifier::ClassifyOptions;
use crate::store::PayloadFilter;

/// Largest k the HTTP API and `triage pull` accept (`--k` and per request): a bound
/// on the work one request may ask of a shared server.
pub const SERVE_MAX_K: usize = 100;

/// An option outside its range. Shown as `k must be ...` to HTTP clients and as
/// `--k must be ...` on the command line ([`OptionError::flag_message`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} {}", self.option(), self.requirement())]
pub enum OptionError {
    KTooSmall,
    KAbove(usize),
    MinConfidence,
    Precision,
    BothBars,
    EmptyFilterValue,
    RepeatedFilterField,
}

impl OptionError {
    /// The option's name as a request field: `k`, `min_confidence`, `filter`.
    pub fn option(&self) -> &'static str {
        match self {
            OptionError::KTooSmall | OptionError::KAbove(_) => "k",
            OptionError::MinConfidence => "min_confidence",
            OptionError::Precision | OptionError::BothBars => "auto_route_precision",
            OptionError::EmptyFilterValue | OptionError::RepeatedFilterField => "filter",
        }
    }

    fn requirement(&self) -> String {
        match self {
            OptionError::KTooSmall => "must be at least 1".into(),
            OptionError::KAbove(max) => format!("must be between 1 and {max}"),
            OptionError::MinConfidence => "must be in [0, 1]".into(),
            OptionError::Precision => "must be at least 0.5 and below 1 (e.g. 0.98: at most 2 % of routed tickets wrong)".into(),
            OptionError::BothBars => "and min_confidence are alternatives: give one".into(),
            OptionError::EmptyFilterValue => "values must not be empty".into(),
            OptionError::RepeatedFilterField => "names the same field twice".into(),
        }
    }

    /// The message with the option written as its flag: `--min-confidence must be in [0, 1]`.
    pub fn flag_message(&self) -> String {
        format!("--{} {}", self.option().replace('_', "-"), self.requirement())
    }
}

/// `k` when it is at least 1 and, with a bound, at most `max`.
pub fn check_k(k: usize, max: Option<usize>) -> Result<usize, OptionError> {
    match max {
        Some(max) if !(1..=max).contains(&k) => Err(OptionError::KAbove(max)),
        _ if k == 0 => Err(OptionError::KTooSmall),
        _ => Ok(k),
    }
}

/// A review threshold in [0, 1], or none (the taxonomy's).
pub fn check_min_confidence(m: Option<f32>) -> Result<Option<f32>, OptionError> {
    match m {
        Some(m) if !(0.0..=1.0).contains(&m) => Err(OptionError::MinConfidence),
        m => Ok(m),
    }
}

/// A retrieval filter from field/value pairs: no blank value, no field twice.
/// (Whether the collection can filter on the fields is the collection's to say:
/// `CollectionMeta::check_filter`.)
pub fn check_filter(pairs: impl IntoIterator<Item = (String, String)>) -> Result<PayloadFilter, OptionError> {
    let mut filter = PayloadFilter::new();
    for (field, value) in pairs {
        if value.trim().is_empty() {
            return Err(OptionError::EmptyFilterValue);
        }
        if filter.insert(field, value).is_some() {
            return Err(OptionError::RepeatedFilterField);
        }
    }
    Ok(filter)
}

/// A precision target in [0.5, 1), or none.
pub fn check_precision(p: Option<f64>) -> Result<Option<f64>, OptionError> {
    match p {
        Some(p) if !(0.5..1.0).contains(&p) => Err(OptionError::Precision),
        p => Ok(p),
    }
}

impl ClassifyOptions {
    /// These options routing by a precision target (checked; not with a threshold).
    pub fn with_precision(mut self, p: Option<f64>) -> Result<Self, OptionError> {
        if p.is_some() && self.min_confidence.is_some() {
            return Err(OptionError::BothBars);
        }
        self.auto_route_precision = check_precision(p)?;
        Ok(self)
    }

    /// Options with a checked `k` (bounded by `max_k` when given) and review threshold;
    /// the rest at their defaults.
    pub fn checked(k: usize, min_confidence: Option<f32>, max_k: Option<usize>) -> Result<Self, OptionError> {
        Ok(ClassifyOptions::new(check_k(k, max_k)?, check_min_confidence(min_confidence)?))
    }

    /// These options with a request's own k and review threshold, checked the same way.
    pub fn overridden(&self, k: Option<usize>, min_confidence: Option<f32>) -> Result<Self, OptionError> {
        let mut o = self.clone();
        if let Some(k) = k {
            o.k = check_k(k, Some(SERVE_MAX_K))?;
        }
        if min_confidence.is_some() {
            // A request's own threshold replaces the server's precision target.
            o.min_confidence = check_min_confidence(min_confidence)?;
            o.auto_route_precision = None;
        }
        Ok(o)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_surface_gets_the_same_rules_and_words() {
        assert_eq!(check_k(0, None), Err(OptionError::KTooSmall));
        assert_eq!(check_k(500, None), Ok(500));
        assert_eq!(check_k(101, Some(SERVE_MAX_K)).unwrap_err().to_string(), "k must be between 1 and 100");
        assert_eq!(check_k(0, Some(SERVE_MAX_K)).unwrap_err().flag_message(), "--k must be between 1 and 100");
        let e = check_min_confidence(Some(1.5)).unwrap_err();
        assert_eq!((e.to_string(), e.flag_message()), ("min_confidence must be in [0, 1]".into(), "--min-confidence must be in [0, 1]".into()));
        assert!(check_min_confidence(Some(f32::NAN)).is_err());
        assert_eq!(check_min_confidence(None), Ok(None));
        assert_eq!(check_precision(Some(1.0)).unwrap_err().flag_message().split(' ').next(), Some("--auto-route-precision"));
        assert!(check_precision(Some(0.3)).is_err() && check_precision(Some(f64::NAN)).is_err());
        let both = ClassifyOptions::checked(8, Some(0.9), None).unwrap().with_precision(Some(0.98));
        assert_eq!(both.unwrap_err(), OptionError::BothBars);
        assert_eq!(ClassifyOptions::checked(8, None, None).unwrap().with_precision(Some(0.98)).unwrap().auto_route_precision, Some(0.98));
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(check_filter([pair("tier", "gold"), pair("tier", "silver")]).unwrap_err().flag_message(), "--filter names the same field twice");
        assert_eq!(check_filter([pair("tier", " ")]).unwrap_err().to_string(), "filter values must not be empty");
        assert_eq!(check_filter([pair("tier", "gold")]).unwrap().len(), 1);
    }

    #[test]
    fn a_request_overrides_within_the_server_bound() {
        let base = ClassifyOptions::checked(8, Some(0.9), Some(SERVE_MAX_K)).unwrap();
        let o = base.overridden(Some(3), None).unwrap();
        assert_eq!((o.k, o.min_confidence), (3, Some(0.9)));
        assert_eq!(base.overridden(Some(101), None).unwrap_err(), OptionError::KAbove(100));
        assert_eq!(base.overridden(None, Some(-0.1)).unwrap_err(), OptionError::MinConfidence);
    }
}
