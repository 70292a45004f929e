//! The keys `taxonomy.toml` may hold, one table: a key not listed is an error with
//! the nearest known key ("did you mean"), so a typo (`min_confidense`, `[[urgencies]]`,
//! `descripton`) is not silently ignored. Adding a key to the taxonomy is one entry
//! here (plus its field on the struct).

use toml::Value;

/// Known keys per table: `""` is the top level, `categories` each `[[categories]]`,
/// `categories.subcategories` each `[[categories.subcategories]]`.
const KEYS: &[(&str, &[&str])] = &[
    ("", &["name", "version", "description", "min_confidence", "rules", "categories", "urgency", "out_of_scope_labels", "priority", "derived", "retired"]),
    ("categories", &["name", "description", "subcategories"]),
    ("categories.subcategories", &["name", "description"]),
    ("urgency", &["name", "description"]),
    ("retired", &["name", "description", "retired_at"]),
];

fn known(table: &str) -> &'static [&'static str] {
    KEYS.iter().find(|(t, _)| *t == table).map_or(&[], |(_, k)| k)
}

/// Every unknown key of a parsed taxonomy document, as one message per key
/// (`unknown key "min_confidense" at the top level; did you mean "min_confidence"?`).
pub fn unknown_keys(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(doc, "", "", &mut out);
    out
}

fn walk(v: &Value, table: &str, shown: &str, out: &mut Vec<String>) {
    let Value::Table(t) = v else { return };
    let keys = known(table);
    for (k, child) in t {
        let path = if table.is_empty() { k.clone() } else { format!("{table}.{k}") };
        let here = if shown.is_empty() { "at the top level".to_string() } else { format!("in {shown}") };
        if !keys.contains(&k.as_str()) {
            let mut msg = format!("unknown key {k:?} {here}");
            if let Some(near) = crate::fields::nearest(k, keys.iter().copied()) {
                msg.push_str(&format!("; did you mean {near:?}?"));
            }
            out.push(msg);
            continue;
        }
        if KEYS.iter().any(|(t, _)| *t == path) {
            match child {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        walk(item, &path, &format!("[[{path}]] #{}", i + 1), out);
                    }
                }
                other => walk(other, &path, &format!("[{path}]"), out),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every key the taxonomy struct writes is a known key: a field added to the
    /// struct without its entry in `KEYS` fails here, not in a user's file.
    #[test]
    fn every_field_of_the_struct_is_a_known_key() {
        use crate::taxonomy::{Category, Subcategory, Taxonomy, UrgencyLevel};
        let t = Taxonomy {
            name: "t".into(),
            version: "1".into(),
            description: "d".into(),
            min_confidence: Some(0.7),
            rules: vec!["r".into()],
            categories: vec![Category {
                name: "A".into(),
                description: "a".into(),
                subcategories: vec![Subcategory { name: "s".into(), description: "s".into() }],
            }],
            urgency: vec![UrgencyLevel { name: "High".into(), description: "h".into() }],
            out_of_scope_labels: vec!["oos".into()],
            priority: vec!["A".into()],
            derived: true,
            retired: vec![crate::taxonomy::RetiredLabel { name: "B".into(), description: "b".into(), retired_at: "2026-12-03T00:00:00Z".into() }],
        };
        let doc = Value::try_from(&t).unwrap();
        assert_eq!(unknown_keys(&doc), Vec::<String>::new(), "{doc}");
    }

    #[test]
    fn typos_are_named_with_the_nearest_key() {
        let doc: Value = toml::from_str(
            "name = \"t\"\nmin_confidense = 0.7\n[[categories]]\nname = \"A\"\ndescripton = \"x\"\n\
             [[categories.subcategories]]\nname = \"s\"\nnotes = \"n\"\n[[urgencies]]\nname = \"High\"\n",
        )
        .unwrap();
        let errs = unknown_keys(&doc);
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("\"min_confidense\" at the top level; did you mean \"min_confidence\"?")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("\"descripton\" in [[categories]] #1; did you mean \"description\"?")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("\"urgencies\" at the top level; did you mean \"urgency\"?")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("\"notes\" in [[categories.subcategories]] #1")), "{errs:?}");
    }

    #[test]
    fn a_complete_taxonomy_has_no_unknown_keys() {
        let doc: Value = toml::from_str(
            "name = \"t\"\nversion = \"1\"\ndescription = \"d\"\nmin_confidence = 0.7\nrules = []\nout_of_scope_labels = [\"oos\"]\n\
             [[categories]]\nname = \"A\"\ndescription = \"x\"\n[[categories.subcategories]]\nname = \"s\"\ndescription = \"y\"\n\
             [[urgency]]\nname = \"High\"\ndescription = \"z\"\n",
        )
        .unwrap();
        assert!(unknown_keys(&doc).is_empty());
    }
}
