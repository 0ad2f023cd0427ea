//! A job's tags: what berth puts on the job's ECS task (for Cost Explorer and
//! whatever else reads AWS tags) and keeps on its record. AWS's tag rules, as
//! ECS applies them to a task: a key of 1 to 128 characters and a value of at
//! most 256, of letters, digits, spaces and `_ . : / = + - @`; no key starting
//! with `aws:`; at most 50 tags on a task, of which berth sets its own three
//! (`berth:job-id`, `berth:launch`, `berth:definition`), so a job has at most
//! [`MAX_TAGS`] and no key of its own may start with `berth:`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::job::{MessageError, Problem, quote, wrong_type};

/// Tags berth sets on each task itself.
pub const BERTH_TAGS: usize = 3;
/// A job's own tags, its definition's included: ECS's 50 a task, less
/// berth's.
pub const MAX_TAGS: usize = 50 - BERTH_TAGS;
pub const KEY_MAX_CHARS: usize = 128;
pub const VALUE_MAX_CHARS: usize = 256;

/// The prefixes no key of a job may start with (in any case), and whose
/// they are.
pub const RESERVED_PREFIXES: [(&str, &str); 2] = [("aws:", "AWS"), ("berth:", "berth")];

const TAG_CHARS: &str = "letters, digits, spaces and _ . : / = + - @";

/// Checks one tag; the problem, and whether it is the key's or the value's.
pub fn check(key: &str, value: &str) -> Result<(), (Part, Problem)> {
    let keys = key.chars().count();
    if !(1..=KEY_MAX_CHARS).contains(&keys) {
        return Err((
            Part::Key,
            Problem::Length {
                min: 1,
                max: KEY_MAX_CHARS,
                found: keys,
            },
        ));
    }
    let lower = key.to_lowercase();
    if let Some((prefix, owner)) = RESERVED_PREFIXES
        .into_iter()
        .find(|(p, _)| lower.starts_with(p))
    {
        return Err((Part::Key, Problem::ReservedTag { prefix, owner }));
    }
    let values = value.chars().count();
    if values > VALUE_MAX_CHARS {
        return Err((
            Part::Value,
            Problem::Length {
                min: 0,
                max: VALUE_MAX_CHARS,
                found: values,
            },
        ));
    }
    for (part, text) in [(Part::Key, key), (Part::Value, value)] {
        if let Some(c) = text.chars().find(|c| !allowed(*c)) {
            return Err((
                part,
                Problem::Characters {
                    allowed: TAG_CHARS,
                    found: c.to_string(),
                },
            ));
        }
    }
    Ok(())
}

/// Which part of a tag a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

/// The first thing wrong with a set of tags: too many (no tag named), or
/// one tag's key or value.
pub fn problem(tags: &BTreeMap<String, String>) -> Option<(Option<(&str, Part)>, Problem)> {
    if tags.len() > MAX_TAGS {
        return Some((
            None,
            Problem::TooMany {
                found: tags.len(),
                limit: MAX_TAGS,
            },
        ));
    }
    tags.iter().find_map(|(key, value)| {
        check(key, value)
            .err()
            .map(|(part, problem)| (Some((key.as_str(), part)), problem))
    })
}

/// Checks a set of tags as a job message's `field`: the error names the
/// field, or `field.KEY` for a value.
pub fn check_all(tags: &BTreeMap<String, String>, field: &str) -> Result<(), MessageError> {
    match problem(tags) {
        None => Ok(()),
        Some((tag, problem)) => Err(MessageError::Field {
            field: match tag {
                Some((key, Part::Value)) => format!("{field}.{}", quote(key)),
                _ => field.to_owned(),
            },
            problem,
        }),
    }
}

/// A job message's `tags`: an object of strings, each tag as AWS allows.
pub fn from_json(v: Value) -> Result<BTreeMap<String, String>, MessageError> {
    let Value::Object(entries) = v else {
        return Err(MessageError::Field {
            field: "tags".into(),
            problem: wrong_type("an object of strings", &v),
        });
    };
    let mut tags = BTreeMap::new();
    for (key, value) in entries {
        let Value::String(value) = value else {
            return Err(MessageError::Field {
                field: format!("tags.{}", quote(&key)),
                problem: wrong_type("a string", &value),
            });
        };
        tags.insert(key, value);
    }
    check_all(&tags, "tags")?;
    Ok(tags)
}

/// A job's tags: its definition's, and its own over them.
pub fn merged(
    definition: &BTreeMap<String, String>,
    job: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = definition.clone();
    all.extend(job.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tags_follow_aws_rules() {
        assert_eq!(
            check_all(
                &tags(&[("team", "vision"), ("cost-centre", "4/2 @eu:west=+_.")]),
                "tags"
            ),
            Ok(())
        );
        assert!(check("é 1", "").is_ok(), "Unicode letters, an empty value");
        let k128 = "k".repeat(128);
        assert!(check(&k128, &"v".repeat(256)).is_ok());
        assert!(matches!(
            check(&format!("{k128}k"), "v"),
            Err((Part::Key, Problem::Length { found: 129, .. }))
        ));
        assert!(matches!(
            check("", "v"),
            Err((Part::Key, Problem::Length { found: 0, .. }))
        ));
        assert!(matches!(
            check("k", &"v".repeat(257)),
            Err((Part::Value, Problem::Length { found: 257, .. }))
        ));
        for reserved in ["aws:cost", "AWS:x", "berth:job-id", "Berth:team"] {
            assert!(
                matches!(
                    check(reserved, "v"),
                    Err((Part::Key, Problem::ReservedTag { .. }))
                ),
                "{reserved}"
            );
        }
        assert!(matches!(
            check("team", "a;b"),
            Err((Part::Value, Problem::Characters { found, .. })) if found == ";"
        ));
        let many: BTreeMap<String, String> = (0..=MAX_TAGS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        let e = check_all(&many, "tags").unwrap_err();
        assert_eq!(e.code(), "tags.count");
        assert_eq!(
            e.to_string(),
            "`tags`: has 48 entries, more than the limit of 47"
        );
    }

    #[test]
    fn a_jobs_own_tags_win_over_its_definitions() {
        let def = tags(&[("team", "vision"), ("tier", "batch")]);
        let job = tags(&[("team", "render")]);
        assert_eq!(
            merged(&def, &job),
            tags(&[("team", "render"), ("tier", "batch")])
        );
    }

    #[test]
    fn a_message_s_tags_are_an_object_of_strings() {
        use serde_json::json;
        assert_eq!(
            from_json(json!({"team": "vision"})).unwrap(),
            tags(&[("team", "vision")])
        );
        let e = from_json(json!({"team": 1})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`tags.team`: must be a string, found a number 1"
        );
        let e = from_json(json!(["team=vision"])).unwrap_err();
        assert_eq!(e.code(), "tags.type");
        let e = from_json(json!({"aws:createdBy": "me"})).unwrap_err();
        assert_eq!(e.code(), "tags.reserved");
        assert_eq!(
            e.to_string(),
            "`tags`: is reserved: tag keys starting with aws: (in any case) are AWS's"
        );
    }
}
