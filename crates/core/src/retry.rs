//! Retry rules: what a failed attempt of a job does next, by its exit code
//! and reason. A definition (and a job, over it) may carry up to
//! [`MAX_RULES`], each `{on_exit_code, on_reason, action}` with AWS Batch's
//! `evaluateOnExit` grammar: an exit code pattern is digits with an optional
//! trailing `*`; a reason pattern is letters, digits, `.`, `:` and white
//! space, with an optional trailing `*`. A rule matches when every pattern
//! it gives matches; the first rule that matches decides (Batch does not
//! say which wins). With no rule matching, a failure is retried while the
//! job has attempts left, as without rules.
//!
//! Rules judge failures of the job only: a timeout or a cancel is never
//! retried, and an interruption by the infrastructure is re-dispatched
//! without counting, whatever the rules say.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The most rules a definition or a job may carry (AWS Batch takes 5).
pub const MAX_RULES: usize = 10;

/// The longest pattern, in characters (Batch's limit).
pub const PATTERN_MAX_CHARS: usize = 512;

/// What a matching rule does with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Another attempt, while the job has attempts left.
    #[serde(alias = "RETRY")]
    Retry,
    /// The job ends `FAILED` now.
    #[serde(alias = "EXIT")]
    Exit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Exit => "exit",
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRule {
    /// Matched against the exit code in decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exit_code: Option<String>,
    /// Matched against the attempt's reason: the container's reason, else
    /// why its task stopped (`OutOfMemoryError: Container killed due to
    /// memory usage`, `CannotPullContainerError: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_reason: Option<String>,
    pub action: Action,
}

impl fmt::Display for RetryRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut on = Vec::new();
        if let Some(code) = &self.on_exit_code {
            on.push(format!("on_exit_code {code}"));
        }
        if let Some(reason) = &self.on_reason {
            on.push(format!("on_reason {reason:?}"));
        }
        write!(f, "{}: {}", on.join(", "), self.action.as_str())
    }
}

/// Which rule decided an attempt's fate: its place in the list, from 1,
/// and the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided<'a> {
    pub number: usize,
    pub rule: &'a RetryRule,
}

impl fmt::Display for Decided<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retry rule {} ({})", self.number, self.rule)
    }
}

/// The first rule of `rules` that matches a failure with `exit_code` (none
/// when the container never ran or ECS gave none) and `reason`.
pub fn decide<'a>(
    rules: &'a [RetryRule],
    exit_code: Option<i32>,
    reason: &str,
) -> Option<Decided<'a>> {
    let code = exit_code.map(|c| c.to_string());
    rules
        .iter()
        .position(|rule| {
            let code_matches = match (&rule.on_exit_code, &code) {
                (None, _) => true,
                (Some(pattern), Some(code)) => glob(pattern, code),
                (Some(_), None) => false,
            };
            code_matches && rule.on_reason.as_ref().is_none_or(|p| glob(p, reason))
        })
        .map(|i| Decided {
            number: i + 1,
            rule: &rules[i],
        })
}

/// Batch's glob: the text is the pattern exactly, or, for a pattern ending
/// in `*`, starts with what comes before it.
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => text == pattern,
    }
}

/// Checks `rules` against the grammar: at most [`MAX_RULES`], each with a
/// pattern at least, each pattern of the characters it allows. The error
/// names the rule (from 1) and what is wrong.
pub fn validate(rules: &[RetryRule]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!(
            "has {} rules, more than the limit of {MAX_RULES}",
            rules.len()
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let n = i + 1;
        if rule.on_exit_code.is_none() && rule.on_reason.is_none() {
            return Err(format!(
                "rule {n} gives neither `on_exit_code` nor `on_reason`: it would match every failure"
            ));
        }
        if let Some(code) = &rule.on_exit_code {
            pattern(code, |c| c.is_ascii_digit(), "digits")
                .map_err(|why| format!("rule {n}: `on_exit_code` {why}"))?;
        }
        if let Some(reason) = &rule.on_reason {
            pattern(
                reason,
                |c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | ' ' | '\t'),
                "letters, digits, '.', ':' and white space",
            )
            .map_err(|why| format!("rule {n}: `on_reason` {why}"))?;
        }
    }
    Ok(())
}

fn pattern(p: &str, allowed: impl Fn(char) -> bool, what: &str) -> Result<(), String> {
    let chars = p.chars().count();
    if chars == 0 || chars > PATTERN_MAX_CHARS {
        return Err(format!(
            "must be 1 to {PATTERN_MAX_CHARS} characters long, found {chars}"
        ));
    }
    let body = p.strip_suffix('*').unwrap_or(p);
    match body.chars().find(|&c| !allowed(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "may contain only {what}, with a trailing '*', found {c:?} in {:?}",
            crate::job::quote(p)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(code: Option<&str>, reason: Option<&str>, action: Action) -> RetryRule {
        RetryRule {
            on_exit_code: code.map(str::to_owned),
            on_reason: reason.map(str::to_owned),
            action,
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = [
            rule(Some("137"), None, Action::Retry),
            rule(Some("2"), None, Action::Exit),
            rule(None, Some("OutOfMemory*"), Action::Exit),
            rule(Some("1*"), Some("Essential*"), Action::Exit),
            rule(Some("*"), None, Action::Retry),
        ];
        // (exit code, reason, the rule's number)
        let table: [(Option<i32>, &str, Option<usize>); 9] = [
            (Some(137), "OutOfMemoryError: killed", Some(1)),
            (Some(2), "", Some(2)),
            (Some(20), "", Some(5)),
            (None, "OutOfMemoryError: Container killed", Some(3)),
            (None, "CannotPullContainerError", None),
            (Some(13), "Essential container exited", Some(4)),
            (Some(13), "exited", Some(5)),
            (Some(-1), "", Some(5)),
            (Some(1), "Essential", Some(4)),
        ];
        for (code, reason, number) in table {
            assert_eq!(
                decide(&rules, code, reason).map(|d| d.number),
                number,
                "{code:?} {reason:?}"
            );
        }
        let decided = decide(&rules, Some(2), "").unwrap();
        assert_eq!(decided.to_string(), "retry rule 2 (on_exit_code 2: exit)");
        assert_eq!(decide(&[], Some(1), "x"), None);
    }

    #[test]
    fn globs_match_exactly_or_by_prefix() {
        for (pattern, text, matches) in [
            ("137", "137", true),
            ("137", "1370", false),
            ("13*", "137", true),
            ("13*", "13", true),
            ("*", "", true),
            ("Task failed*", "Task failed to start", true),
            ("task failed*", "Task failed", false),
            (
                "Essential container",
                "Essential container in task exited",
                false,
            ),
        ] {
            assert_eq!(glob(pattern, text), matches, "{pattern} {text}");
        }
    }

    #[test]
    fn rules_outside_the_grammar_are_refused_with_the_rule_named() {
        let ok = [
            rule(Some("137"), None, Action::Retry),
            rule(None, Some("Host EC2*"), Action::Exit),
            rule(
                Some("1*"),
                Some("OutOfMemoryError: Container killed"),
                Action::Exit,
            ),
        ];
        assert_eq!(validate(&ok), Ok(()));
        for (rules, why) in [
            (
                vec![rule(None, None, Action::Exit)],
                "rule 1 gives neither `on_exit_code` nor `on_reason`",
            ),
            (
                vec![ok[0].clone(), rule(Some("13x"), None, Action::Exit)],
                "rule 2: `on_exit_code` may contain only digits, with a trailing '*', found 'x'",
            ),
            (
                vec![rule(Some("*1"), None, Action::Exit)],
                "rule 1: `on_exit_code` may contain only digits, with a trailing '*', found '*'",
            ),
            (
                vec![rule(None, Some("a-b"), Action::Exit)],
                "rule 1: `on_reason` may contain only letters, digits, '.', ':' and white space",
            ),
            (
                vec![rule(Some(""), None, Action::Exit)],
                "rule 1: `on_exit_code` must be 1 to 512 characters long, found 0",
            ),
            (
                vec![ok[0].clone(); 11],
                "has 11 rules, more than the limit of 10",
            ),
        ] {
            let err = validate(&rules).unwrap_err();
            assert!(err.starts_with(why), "{err}");
        }
    }

    #[test]
    fn rules_read_as_batch_writes_them() {
        let rules: Vec<RetryRule> = serde_json::from_str(
            r#"[{"on_exit_code":"137","action":"RETRY"},{"on_reason":"Bad*","action":"exit"}]"#,
        )
        .unwrap();
        assert_eq!(rules[0].action, Action::Retry);
        assert_eq!(rules[1].action, Action::Exit);
        assert!(serde_json::from_str::<RetryRule>(r#"{"on_exit":"1","action":"exit"}"#).is_err());
        assert!(serde_json::from_str::<RetryRule>(r#"{"on_exit_code":"1"}"#).is_err());
    }

    proptest! {
        /// A rule of an exit code alone matches exactly that code; `*`
        /// after a prefix of it matches too; the first match is the
        /// lowest-numbered rule that matches.
        #[test]
        fn an_exit_code_rule_matches_its_code(code in 0i32..100_000, cut in 0usize..6, other in 0i32..100_000) {
            let text = code.to_string();
            let prefix = &text[..cut.min(text.len())];
            let rules = [
                rule(Some(&other.to_string()), None, Action::Exit),
                rule(Some(&format!("{prefix}*")), None, Action::Retry),
            ];
            let decided = decide(&rules, Some(code), "").unwrap();
            prop_assert_eq!(decided.number, if other == code { 1 } else { 2 });
            prop_assert!(validate(&rules).is_ok());
        }
    }
}
