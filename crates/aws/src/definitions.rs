//! The job definitions table (partition key `name`): berth's allowlist,
//! changed without redeploying code.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use berth_core::JobDefinition;
use berth_core::definition::Prefixes;
use berth_core::retry::{Action, RetryRule};

use crate::AwsError;

type Item = HashMap<String, AttributeValue>;

/// What a lookup found for one name.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(Box<JobDefinition>),
    /// The item exists but is not a usable definition; the reason says why.
    Malformed(String),
}

#[derive(Debug, Clone)]
pub struct Definitions {
    ddb: Client,
    table: String,
    prefixes: Prefixes,
}

impl Definitions {
    pub fn new(ddb: Client, table: impl Into<String>) -> Self {
        Self {
            ddb,
            table: table.into(),
            prefixes: Prefixes::default(),
        }
    }

    /// The definitions table of the deployment `settings` describe, read
    /// with its prefixes.
    pub fn for_deployment(settings: &crate::Settings, clients: &crate::Clients) -> Self {
        Self::new(clients.dynamodb.clone(), &settings.definitions_table)
            .with_prefixes(settings.prefixes.clone())
    }

    /// Definitions naming task definitions, functions or roles outside
    /// `prefixes` are read as malformed, with the reason.
    pub fn with_prefixes(mut self, prefixes: Prefixes) -> Self {
        self.prefixes = prefixes;
        self
    }

    /// Reads the definitions of `names` (BatchGetItem, 100 a call); a name
    /// missing from the answer is not registered. The read is strongly
    /// consistent: a definition registered a moment ago is found, since a
    /// miss rejects its job for good.
    pub async fn get_many(&self, names: &[&str]) -> Result<HashMap<String, Lookup>, AwsError> {
        let items = crate::batch::batch_get(
            &self.ddb,
            &self.table,
            "name",
            names,
            &[],
            crate::batch::Read::Consistent,
        )
        .await?;
        Ok(items
            .iter()
            .filter_map(|item| match item.get("name") {
                Some(AttributeValue::S(name)) => Some((name.clone(), read(item, &self.prefixes))),
                _ => None,
            })
            .collect())
    }

    /// Every usable definition (the table is small: one item per kind of
    /// job). Malformed items are skipped with a warning.
    pub async fn scan(&self) -> Result<Vec<JobDefinition>, AwsError> {
        let mut pages = self
            .ddb
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Scan", e))?;
            for item in page.items.unwrap_or_default() {
                match read(&item, &self.prefixes) {
                    Lookup::Found(def) => out.push(*def),
                    Lookup::Malformed(why) => {
                        tracing::warn!(problem = why.as_str(), "definition skipped")
                    }
                }
            }
        }
        Ok(out)
    }

    /// Counts a successful run of `seconds` of definition `name`, ended at
    /// `now_ms`: in all its runs (`runs`, `run_seconds`) and in its day's
    /// slot of the last [`RECENT_DAYS`] (what routing expects of its next
    /// jobs when it gives no `expected_seconds`). Each write is atomic and
    /// conditional, and no read comes first: the day's slot is added to
    /// while it holds the day, else taken over for it (a slot a week old),
    /// and a lost race for the take-over adds to the slot the winner
    /// made. A definition deleted meanwhile is not brought back.
    pub async fn record_run(&self, name: &str, seconds: u64, now_ms: i64) -> Result<(), AwsError> {
        let day = now_ms.div_euclid(DAY_MS);
        let slot = RecentSlot::of_day(day);
        for _ in 0..2 {
            if self.add_run(name, seconds, day, &slot, false).await? {
                return Ok(());
            }
            if self.add_run(name, seconds, day, &slot, true).await? {
                return Ok(());
            }
        }
        // Neither holds: the definition is gone (or was put again meanwhile,
        // its runs counted anew).
        Ok(())
    }

    /// One conditional write of a run: added to `slot` while it holds
    /// `day`, or (`take_over`) to a slot that holds an older day or none,
    /// its counts started anew. Whether it was written.
    async fn add_run(
        &self,
        name: &str,
        seconds: u64,
        day: i64,
        slot: &RecentSlot,
        take_over: bool,
    ) -> Result<bool, AwsError> {
        let (update, condition) = if take_over {
            (
                "ADD #runs :one, #seconds :seconds SET #day = :day, #recent_runs = :one, #recent_seconds = :seconds",
                "attribute_exists(#name) AND (attribute_not_exists(#day) OR #day < :day)",
            )
        } else {
            (
                "ADD #runs :one, #seconds :seconds, #recent_runs :one, #recent_seconds :seconds",
                "attribute_exists(#name) AND #day = :day",
            )
        };
        let done = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("name", AttributeValue::S(name.to_owned()))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#runs", RUNS)
            .expression_attribute_names("#seconds", RUN_SECONDS)
            .expression_attribute_names("#day", &slot.day)
            .expression_attribute_names("#recent_runs", &slot.runs)
            .expression_attribute_names("#recent_seconds", &slot.seconds)
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":seconds", AttributeValue::N(seconds.to_string()))
            .expression_attribute_values(":day", AttributeValue::N(day.to_string()))
            .send()
            .await;
        match done {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
        }
    }

    /// Registers or replaces a definition (its runs counted anew).
    pub async fn put(&self, def: &JobDefinition) -> Result<(), AwsError> {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(def)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:PutItem", e))?;
        Ok(())
    }
}

/// A definition as a table item.
pub fn item(def: &JobDefinition) -> Item {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: u32| AttributeValue::N(v.to_string());
    let mut item = HashMap::from([
        ("name".to_owned(), s(&def.name)),
        ("task_definition".to_owned(), s(&def.task_definition)),
        ("container".to_owned(), s(&def.container)),
        ("cpu".to_owned(), n(def.cpu)),
        ("memory".to_owned(), n(def.memory)),
        ("gpu".to_owned(), n(def.gpu)),
        ("timeout_seconds".to_owned(), n(def.timeout_seconds)),
        ("max_attempts".to_owned(), n(def.max_attempts)),
        ("fargate".to_owned(), AttributeValue::Bool(def.fargate)),
    ]);
    if let Some(f) = &def.lambda_function {
        item.insert("lambda_function".into(), s(f));
    }
    if let Some(role) = &def.job_role {
        item.insert("job_role".into(), s(role));
    }
    if !def.interruptible {
        item.insert("interruptible".into(), AttributeValue::Bool(false));
    }
    if !def.command_override {
        item.insert("command_override".into(), AttributeValue::Bool(false));
    }
    if let Some(seconds) = def.expected_seconds {
        item.insert("expected_seconds".into(), n(seconds));
    }
    if let Some(cmd) = &def.command {
        item.insert(
            "command".into(),
            AttributeValue::L(cmd.iter().map(|a| s(a)).collect()),
        );
    }
    if let Some(limit) = def.daily_limit_usd {
        item.insert(
            "daily_limit_usd".into(),
            AttributeValue::N(limit.to_string()),
        );
    }
    if !def.retry_rules.is_empty() {
        let rule = |r: &RetryRule| {
            let mut m = HashMap::from([("action".to_owned(), s(r.action.as_str()))]);
            if let Some(code) = &r.on_exit_code {
                m.insert("on_exit_code".into(), s(code));
            }
            if let Some(reason) = &r.on_reason {
                m.insert("on_reason".into(), s(reason));
            }
            AttributeValue::M(m)
        };
        item.insert(
            "retry_rules".into(),
            AttributeValue::L(def.retry_rules.iter().map(rule).collect()),
        );
    }
    if !def.tags.is_empty() {
        item.insert(
            "tags".into(),
            AttributeValue::M(def.tags.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
        );
    }
    item
}

/// A rule of an item's `retry_rules`.
fn retry_rule(v: &AttributeValue) -> Result<RetryRule, String> {
    let m = v.as_m().map_err(|_| "must be a map".to_owned())?;
    let text = |k: &str| match m.get(k) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(_) => Err(format!("`{k}` must be a string")),
    };
    let action = match text("action")?.as_deref() {
        Some("retry" | "RETRY") => Action::Retry,
        Some("exit" | "EXIT") => Action::Exit,
        other => return Err(format!("`action` must be retry or exit, found {other:?}")),
    };
    Ok(RetryRule {
        on_exit_code: text("on_exit_code")?,
        on_reason: text("on_reason")?,
        action,
    })
}

/// The attributes the table keeps of a definition's successful runs.
pub const RUNS: &str = "runs";
pub const RUN_SECONDS: &str = "run_seconds";

/// How many days of runs are recent: what routing expects of a
/// definition's next jobs is the mean of its runs of the last week (the
/// day of the week included), else of all its runs.
pub const RECENT_DAYS: i64 = 7;

const DAY_MS: i64 = 86_400_000;

/// One day's slot of a definition's recent runs: `recent_day_K` (the day,
/// in days since 1970, UTC), `recent_runs_K` and `recent_seconds_K`, for K
/// the day modulo [`RECENT_DAYS`].
struct RecentSlot {
    day: String,
    runs: String,
    seconds: String,
}

impl RecentSlot {
    fn of_day(day: i64) -> Self {
        Self::at(day.rem_euclid(RECENT_DAYS))
    }

    fn at(k: i64) -> Self {
        Self {
            day: format!("recent_day_{k}"),
            runs: format!("recent_runs_{k}"),
            seconds: format!("recent_seconds_{k}"),
        }
    }

    fn all() -> impl Iterator<Item = Self> {
        (0..RECENT_DAYS).map(Self::at)
    }

    /// Whether `attribute` is one of a slot's: a prefix and one digit
    /// below [`RECENT_DAYS`].
    fn names(attribute: &str) -> bool {
        ["recent_day_", "recent_runs_", "recent_seconds_"]
            .iter()
            .filter_map(|prefix| attribute.strip_prefix(prefix))
            .any(|k| matches!(k.as_bytes(), [d] if d.is_ascii_digit() && i64::from(d - b'0') < RECENT_DAYS))
    }
}

/// The attributes of a definitions-table item.
const ATTRIBUTES: [&str; 20] = [
    "name",
    "task_definition",
    "container",
    "lambda_function",
    "command",
    "cpu",
    "memory",
    "gpu",
    "timeout_seconds",
    "max_attempts",
    "fargate",
    "job_role",
    "interruptible",
    "command_override",
    "expected_seconds",
    "tags",
    "daily_limit_usd",
    "retry_rules",
    RUNS,
    RUN_SECONDS,
];

/// Reads a definitions-table item, with the rules `berth definitions put`
/// applies: no unknown attribute, every value within its limits, every
/// name within `prefixes`.
pub fn read(item: &Item, prefixes: &Prefixes) -> Lookup {
    read_at(item, prefixes, crate::store::now_ms())
}

/// [`read`] at `now_ms`: the runs it gives routing are those of the last
/// [`RECENT_DAYS`] before it where there are any, else all of them.
pub fn read_at(item: &Item, prefixes: &Prefixes, now_ms: i64) -> Lookup {
    let name = item
        .get("name")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    match parse(item, &name, now_ms) {
        Ok(def) => match def.validate().and_then(|()| def.check_prefixes(prefixes)) {
            Ok(()) => Lookup::Found(Box::new(def)),
            Err(e) => Lookup::Malformed(e.to_string()),
        },
        Err(why) => Lookup::Malformed(format!("job definition `{name}`: {why}")),
    }
}

fn parse(item: &Item, name: &str, now_ms: i64) -> Result<JobDefinition, String> {
    let mut unknown: Vec<&str> = item
        .keys()
        .map(String::as_str)
        .filter(|k| !ATTRIBUTES.contains(k) && !RecentSlot::names(k))
        .collect();
    unknown.sort_unstable();
    if let Some(first) = unknown.first() {
        return Err(format!("unknown field `{first}`"));
    }
    let text = |k: &str| -> Result<Option<String>, String> {
        match item.get(k) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    };
    let required_text = |k: &str| {
        text(k)?
            .filter(|v| !v.is_empty())
            .ok_or(format!("`{k}` is required"))
    };
    let number = |k: &str| -> Result<Option<u32>, String> {
        match item.get(k) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("`{k}` must be a whole number, found {v}")),
            Some(_) => Err(format!("`{k}` must be a number")),
        }
    };
    let required_number = |k: &str| number(k)?.ok_or(format!("`{k}` is required"));
    let command = match item.get("command") {
        None | Some(AttributeValue::Null(_)) => None,
        Some(AttributeValue::L(args)) => Some(
            args.iter()
                .map(|a| {
                    a.as_s()
                        .cloned()
                        .map_err(|_| "`command` must be a list of strings".to_owned())
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("`command` must be a list of strings".into()),
    };
    let flag = |k: &str, default: bool| match item.get(k) {
        None | Some(AttributeValue::Null(_)) => Ok(default),
        Some(AttributeValue::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("`{k}` must be a boolean")),
    };
    let count = |k: &str| -> Result<u64, String> {
        match item.get(k) {
            None | Some(AttributeValue::Null(_)) => Ok(0),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| format!("`{k}` must be a whole number, found {v}")),
            Some(_) => Err(format!("`{k}` must be a number")),
        }
    };
    let tags = match item.get("tags") {
        None | Some(AttributeValue::Null(_)) => Default::default(),
        Some(AttributeValue::M(tags)) => tags
            .iter()
            .map(|(k, v)| {
                v.as_s()
                    .map(|v| (k.clone(), v.clone()))
                    .map_err(|_| format!("`tags.{k}` must be a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`tags` must be a map of strings".into()),
    };
    let today = now_ms.div_euclid(DAY_MS);
    let mut recent = berth_core::routing::Runs::default();
    for slot in RecentSlot::all() {
        let day = count(&slot.day)?;
        if i64::try_from(day).is_ok_and(|day| day <= today && today - day < RECENT_DAYS) {
            recent.count += count(&slot.runs)?;
            recent.seconds += count(&slot.seconds)?;
        }
    }
    let runs = if recent.count > 0 {
        recent
    } else {
        berth_core::routing::Runs {
            count: count(RUNS)?,
            seconds: count(RUN_SECONDS)?,
        }
    };
    let daily_limit_usd = match item.get("daily_limit_usd") {
        None | Some(AttributeValue::Null(_)) => None,
        Some(AttributeValue::N(v)) => Some(
            v.parse::<f64>()
                .map_err(|_| format!("`daily_limit_usd` must be a number, found {v}"))?,
        ),
        Some(_) => return Err("`daily_limit_usd` must be a number".into()),
    };
    let retry_rules = match item.get("retry_rules") {
        None | Some(AttributeValue::Null(_)) => Vec::new(),
        Some(AttributeValue::L(rules)) => rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                retry_rule(rule).map_err(|why| format!("`retry_rules` rule {}: {why}", i + 1))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`retry_rules` must be a list".into()),
    };
    Ok(JobDefinition {
        retry_rules,
        daily_limit_usd,
        name: name.to_owned(),
        task_definition: required_text("task_definition")?,
        container: required_text("container")?,
        lambda_function: text("lambda_function")?.filter(|v| !v.is_empty()),
        command,
        cpu: required_number("cpu")?,
        memory: required_number("memory")?,
        gpu: number("gpu")?.unwrap_or(0),
        timeout_seconds: required_number("timeout_seconds")?,
        max_attempts: required_number("max_attempts")?,
        fargate: flag("fargate", false)?,
        job_role: text("job_role")?.filter(|v| !v.is_empty()),
        interruptible: flag("interruptible", true)?,
        command_override: flag("command_override", true)?,
        expected_seconds: number("expected_seconds")?,
        runs,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> JobDefinition {
        JobDefinition {
            daily_limit_usd: None,
            retry_rules: Vec::new(),
            name: "render".into(),
            task_definition: "render:1".into(),
            container: "main".into(),
            lambda_function: Some("render-fn".into()),
            command: Some(vec!["run".into()]),
            cpu: 1024,
            memory: 2048,
            gpu: 0,
            timeout_seconds: 60,
            max_attempts: 2,
            fargate: true,
            job_role: None,
            interruptible: true,
            command_override: true,
            expected_seconds: None,
            runs: Default::default(),
            tags: Default::default(),
        }
    }

    #[test]
    fn items_round_trip() {
        assert_eq!(
            read(&item(&def()), &Prefixes::default()),
            Lookup::Found(Box::new(def()))
        );
        let bare = JobDefinition {
            lambda_function: None,
            command: None,
            ..def()
        };
        assert_eq!(
            read(&item(&bare), &Prefixes::default()),
            Lookup::Found(Box::new(bare))
        );
        let with_role = JobDefinition {
            job_role: Some("arn:aws:iam::123456789012:role/berth-dev_job-r".into()),
            ..def()
        };
        assert_eq!(
            read(&item(&with_role), &Prefixes::default()),
            Lookup::Found(Box::new(with_role))
        );
        let limited = JobDefinition {
            daily_limit_usd: Some(0.05),
            ..def()
        };
        assert_eq!(
            item(&limited).get("daily_limit_usd"),
            Some(&AttributeValue::N("0.05".into()))
        );
        assert_eq!(
            read(&item(&limited), &Prefixes::default()),
            Lookup::Found(Box::new(limited))
        );
        let unlimited = JobDefinition {
            daily_limit_usd: Some(0.0),
            ..def()
        };
        let Lookup::Malformed(why) = read(&item(&unlimited), &Prefixes::default()) else {
            panic!("a limit of $0 was read");
        };
        assert!(
            why.contains("`daily_limit_usd` must be a number of USD above 0"),
            "{why}"
        );
        let tagged = JobDefinition {
            tags: [("team".to_string(), "vision".to_string())].into(),
            ..def()
        };
        assert_eq!(
            item(&tagged).get("tags"),
            Some(&AttributeValue::M(
                [("team".to_string(), AttributeValue::S("vision".into()))].into()
            ))
        );
        assert_eq!(
            read(&item(&tagged), &Prefixes::default()),
            Lookup::Found(Box::new(tagged))
        );
        let own_command = JobDefinition {
            command_override: false,
            ..def()
        };
        assert_eq!(
            read(&item(&own_command), &Prefixes::default()),
            Lookup::Found(Box::new(own_command))
        );
        let steady = JobDefinition {
            interruptible: false,
            expected_seconds: Some(30),
            ..def()
        };
        let mut i = item(&steady);
        assert_eq!(i.get("interruptible"), Some(&AttributeValue::Bool(false)));
        assert!(
            !item(&def()).contains_key("interruptible"),
            "the default is left out"
        );
        // The runs the table counts are read with it, and give the
        // expected run of a definition that names none.
        i.insert(RUNS.into(), AttributeValue::N("4".into()));
        i.insert(RUN_SECONDS.into(), AttributeValue::N("90".into()));
        let Lookup::Found(read_back) = read(&i, &Prefixes::default()) else {
            panic!("{i:?}");
        };
        assert_eq!(
            read_back.runs,
            berth_core::routing::Runs {
                count: 4,
                seconds: 90
            }
        );
        assert!(!read_back.interruptible);
        assert_eq!(read_back.expected_seconds, Some(30));
    }

    /// Routing expects of a definition the mean of its runs of the last
    /// week, where it has any; else of all its runs.
    #[test]
    fn the_expected_run_is_the_last_weeks_mean() {
        let n = |v: u64| AttributeValue::N(v.to_string());
        let today = 20_000;
        let now = today * DAY_MS + 5_000;
        let mut i = item(&def());
        i.insert(RUNS.into(), n(100));
        i.insert(RUN_SECONDS.into(), n(60_000));
        // Two days of this week, and a slot left from the week before.
        for (day, runs, seconds) in [(today, 3, 30), (today - 6, 1, 10), (today - 8, 50, 50_000)] {
            let slot = RecentSlot::of_day(day);
            i.insert(slot.day, n(day as u64));
            i.insert(slot.runs, n(runs));
            i.insert(slot.seconds, n(seconds));
        }
        let Lookup::Found(d) = read_at(&i, &Prefixes::default(), now) else {
            panic!("{i:?}");
        };
        assert_eq!(
            d.runs,
            berth_core::routing::Runs {
                count: 4,
                seconds: 40
            }
        );
        assert_eq!(d.runs.mean_seconds(), Some(10));
        // A week on, none of them is recent: all the runs.
        let Lookup::Found(d) = read_at(&i, &Prefixes::default(), now + 7 * DAY_MS) else {
            panic!("{i:?}");
        };
        assert_eq!(d.runs.mean_seconds(), Some(600));
        // A slot's attributes are known; another name like them is not.
        i.insert("recent_runs_7".into(), n(1));
        assert!(matches!(
            read_at(&i, &Prefixes::default(), now),
            Lookup::Malformed(why) if why.contains("unknown field `recent_runs_7`")
        ));
    }

    /// The driver reads a definition with the rules `berth definitions put`
    /// applies: an item written some other way cannot slip past them.
    #[test]
    fn unknown_attributes_and_names_outside_the_prefixes_are_refused() {
        let mut i = item(&def());
        i.insert("fargte".into(), AttributeValue::Bool(false));
        assert_eq!(
            read(&i, &Prefixes::default()),
            Lookup::Malformed("job definition `render`: unknown field `fargte`".into())
        );
        let prefixes = Prefixes {
            task_definition: "berth-prod_".into(),
            ..Prefixes::default()
        };
        let Lookup::Malformed(why) = read(&item(&def()), &prefixes) else {
            panic!("a task definition outside the prefix was read as usable");
        };
        assert!(why.contains("outside `berth-prod_*`"), "{why}");
    }

    #[test]
    fn malformed_items_say_what_is_wrong() {
        let mut i = item(&def());
        i.remove("cpu");
        assert_eq!(
            read(&i, &Prefixes::default()),
            Lookup::Malformed("job definition `render`: `cpu` is required".into())
        );
        let mut i = item(&def());
        i.insert("memory".into(), AttributeValue::S("2048".into()));
        assert_eq!(
            read(&i, &Prefixes::default()),
            Lookup::Malformed("job definition `render`: `memory` must be a number".into())
        );
        let mut i = item(&def());
        i.insert("max_attempts".into(), AttributeValue::N("0".into()));
        assert_eq!(
            read(&i, &Prefixes::default()),
            Lookup::Malformed(
                "job definition `render`: `max_attempts` must be between 1 and 10, found 0".into()
            )
        );
    }

    /// A definition registered a moment ago must be found: a miss rejects
    /// the job for good, so the read is strongly consistent.
    #[tokio::test]
    async fn definitions_are_read_consistently() {
        use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
        use aws_smithy_mocks::{mock, mock_client};
        let consistent = mock!(Client::batch_get_item)
            .match_requests(|r| {
                r.request_items()
                    .and_then(|items| items.get("defs"))
                    .and_then(|keys| keys.consistent_read())
                    == Some(true)
            })
            .then_output(|| {
                BatchGetItemOutput::builder()
                    .responses("defs", vec![item(&def())])
                    .build()
            });
        let definitions = Definitions::new(mock_client!(aws_sdk_dynamodb, [&consistent]), "defs");
        let found = definitions.get_many(&["render"]).await.unwrap();
        assert_eq!(found.get("render"), Some(&Lookup::Found(Box::new(def()))));
        assert_eq!(consistent.num_calls(), 1);
    }
}
