//! `berth cost`: what the jobs cost over a time, grouped, from the costs
//! their records keep (each attempt's, priced when it ended by berth-core's
//! price model).

use std::collections::{BTreeMap, BTreeSet};

use berth_aws::cost::CostedJob;
use berth_core::cost::usd;
use serde::Serialize;

use crate::CliError;
use crate::view::iso;

/// What the figures leave out.
pub const ESTIMATE: &str = "an estimate by berth's price model: each attempt's compute (Lambda, \
Fargate, its share of its EC2 instance), priced when it ended; it leaves out data transfer, logs, \
image storage, idle instance time and berth's own functions, which `berth simulate` prices";

/// How `berth cost` groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Definition,
    Route,
    /// The UTC day the attempt ended.
    Day,
    /// The value of the job's tag `KEY` (`(none)` without it).
    Tag(String),
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "definition" => Ok(Self::Definition),
            "route" => Ok(Self::Route),
            "day" => Ok(Self::Day),
            _ => match s.strip_prefix("tag:") {
                Some(key) if !key.is_empty() => Ok(Self::Tag(key.to_owned())),
                _ => Err(format!("`{s}`: group by definition, route, day or tag:KEY")),
            },
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Definition => "definition".into(),
            Self::Route => "route".into(),
            Self::Day => "day".into(),
            Self::Tag(key) => format!("tag:{key}"),
        }
    }
}

/// One group's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    /// Jobs with an attempt in the group.
    pub jobs: usize,
    pub attempts: usize,
    pub usd: f64,
}

/// A definition's spending limit and what it spent of it today.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limit {
    pub definition: String,
    pub daily_limit_usd: f64,
    pub spent_today_usd: f64,
    /// When today (a UTC day) began, and the next begins.
    pub day_started_at: Option<String>,
    pub next_day_at: Option<String>,
}

/// `berth cost`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub since: Option<String>,
    pub until: Option<String>,
    pub by: String,
    pub groups: Vec<Group>,
    pub jobs: usize,
    pub attempts: usize,
    pub total_usd: f64,
    /// The definitions with a spending limit, and today's spend of each.
    pub limits: Vec<Limit>,
    pub note: &'static str,
}

/// Sums the attempts that ended in `[since_ms, until_ms)` by `by`, largest
/// cost first.
pub fn report(jobs: &[CostedJob], since_ms: i64, until_ms: i64, by: &GroupBy) -> Report {
    let mut groups: BTreeMap<String, (BTreeSet<&str>, usize, f64)> = BTreeMap::new();
    let mut all_jobs = BTreeSet::new();
    let (mut attempts, mut total) = (0, 0.0);
    for job in jobs {
        for c in job
            .costs
            .iter()
            .filter(|c| (since_ms..until_ms).contains(&c.at))
        {
            let key = match by {
                GroupBy::Definition => job.definition.clone().unwrap_or_else(|| "-".into()),
                GroupBy::Route => c.cost.route.as_str().to_owned(),
                GroupBy::Day => iso(c.at).map_or_else(|| "-".into(), |t| t[..10].to_owned()),
                GroupBy::Tag(key) => job
                    .tags
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| "(none)".into()),
            };
            let group = groups.entry(key).or_default();
            group.0.insert(&job.job_id);
            group.1 += 1;
            group.2 += c.cost.usd;
            all_jobs.insert(job.job_id.as_str());
            attempts += 1;
            total += c.cost.usd;
        }
    }
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|(key, (jobs, attempts, usd))| Group {
            key,
            jobs: jobs.len(),
            attempts,
            usd,
        })
        .collect();
    groups.sort_by(|a, b| b.usd.total_cmp(&a.usd).then_with(|| a.key.cmp(&b.key)));
    Report {
        since: iso(since_ms),
        until: iso(until_ms),
        by: by.name(),
        groups,
        jobs: all_jobs.len(),
        attempts,
        total_usd: total,
        limits: Vec::new(),
        note: ESTIMATE,
    }
}

/// The report as a table, its total last, and what it leaves out.
pub fn table(r: &Report) -> String {
    let rows = r
        .groups
        .iter()
        .map(|g| {
            vec![
                g.key.clone(),
                g.jobs.to_string(),
                g.attempts.to_string(),
                usd(g.usd),
            ]
        })
        .chain([vec![
            "total".to_owned(),
            r.jobs.to_string(),
            r.attempts.to_string(),
            usd(r.total_usd),
        ]]);
    let header = r.by.to_uppercase();
    let mut out = crate::columns(&[&header, "JOBS", "ATTEMPTS", "COST"], &[1, 2, 3], rows);
    if !r.limits.is_empty() {
        out.push('\n');
        let rows = r.limits.iter().map(|l| {
            vec![
                l.definition.clone(),
                format!("{}/day", usd(l.daily_limit_usd)),
                usd(l.spent_today_usd),
                if l.spent_today_usd >= l.daily_limit_usd {
                    format!(
                        "reached: its jobs wait until {}",
                        l.next_day_at.as_deref().unwrap_or("the next day")
                    )
                } else {
                    format!("{} left", usd(l.daily_limit_usd - l.spent_today_usd))
                },
            ]
        });
        out.push_str(&crate::columns(
            &["DEFINITION", "LIMIT", "SPENT TODAY", ""],
            &[1, 2],
            rows,
        ));
    }
    out.push_str(&format!(
        "from {} to {}: {}\n",
        r.since.as_deref().unwrap_or("-"),
        r.until.as_deref().unwrap_or("-"),
        ESTIMATE
    ));
    out
}

/// A time as `berth cost` takes it: a span back from `now_ms` (`7d`,
/// `12h`, `30m`), a date (`2026-12-01`, its start in UTC) or an RFC 3339
/// time.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, CliError> {
    let bad = || {
        CliError::Input(format!(
            "`{s}`: give a span back from now (7d, 12h, 30m), a date (2026-12-01) or a time (2026-12-01T09:00:00Z)"
        ))
    };
    let s = s.trim();
    if let Some((number, unit)) = s
        .char_indices()
        .last()
        .map(|(i, unit)| (&s[..i], unit))
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        let n: i64 = number.parse().map_err(|_| bad())?;
        let unit_ms = match unit {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' => 60_000,
            _ => return Err(bad()),
        };
        return n
            .checked_mul(unit_ms)
            .map(|back| now_ms.saturating_sub(back))
            .ok_or_else(bad);
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let date: jiff::civil::Date = s.parse().map_err(|_| bad())?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_aws::cost::RecordedCost;
    use berth_core::Route;
    use berth_core::cost::AttemptCost;

    const DAY: i64 = 86_400_000;
    /// 2026-12-01T00:00:00Z.
    const DEC_1: i64 = 1_796_083_200_000;

    fn job(
        id: &str,
        definition: &str,
        team: Option<&str>,
        costs: &[(i64, Route, f64)],
    ) -> CostedJob {
        CostedJob {
            job_id: id.into(),
            definition: Some(definition.into()),
            tags: team
                .map(|t| [("team".to_owned(), t.to_owned())].into())
                .unwrap_or_default(),
            costs: costs
                .iter()
                .enumerate()
                .map(|(i, (at, route, usd))| RecordedCost {
                    launch: i as u32 + 1,
                    cost: AttemptCost {
                        usd: *usd,
                        route: *route,
                        basis: String::new(),
                    },
                    at: *at,
                })
                .collect(),
        }
    }

    #[test]
    fn attempts_are_summed_by_group_within_the_time_asked() {
        let jobs = [
            // Interrupted on EC2, run again on Fargate Spot: both paid.
            job(
                "a",
                "render",
                Some("vfx"),
                &[
                    (DEC_1 + 10, Route::Ec2, 0.5),
                    (DEC_1 + 20, Route::FargateSpot, 0.25),
                ],
            ),
            job(
                "b",
                "render",
                None,
                &[(DEC_1 + DAY + 5, Route::Lambda, 0.125)],
            ),
            job(
                "c",
                "etl",
                Some("data"),
                &[(DEC_1 + 2 * DAY, Route::Fargate, 1.0)],
            ),
            // Before the time asked: left out.
            job(
                "d",
                "etl",
                Some("data"),
                &[(DEC_1 - 1, Route::Fargate, 8.0)],
            ),
        ];
        let until = DEC_1 + 3 * DAY;
        let by_tag = report(&jobs, DEC_1, until, &GroupBy::Tag("team".into()));
        let figures: Vec<(&str, usize, usize, f64)> = by_tag
            .groups
            .iter()
            .map(|g| (g.key.as_str(), g.jobs, g.attempts, g.usd))
            .collect();
        assert_eq!(
            figures,
            [
                ("data", 1, 1, 1.0),
                ("vfx", 1, 2, 0.75),
                ("(none)", 1, 1, 0.125)
            ]
        );
        assert_eq!(
            (by_tag.jobs, by_tag.attempts, by_tag.total_usd),
            (3, 4, 1.875)
        );
        // Every grouping sums to the same total.
        for by in [GroupBy::Definition, GroupBy::Route, GroupBy::Day] {
            let r = report(&jobs, DEC_1, until, &by);
            let sum: f64 = r.groups.iter().map(|g| g.usd).sum();
            assert_eq!((sum, r.total_usd), (1.875, 1.875), "{by:?}");
        }
        let by_day = report(&jobs, DEC_1, until, &GroupBy::Day);
        let days: Vec<&str> = by_day.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(days, ["2026-12-03", "2026-12-01", "2026-12-02"]);
        let text = table(&by_tag);
        assert!(text.starts_with("TAG:TEAM"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "data         1         1    $1.00", "{text}");
        assert_eq!(lines[4], "total        3         4    $1.88", "{text}");
        assert!(text.contains("leaves out data transfer"), "{text}");
    }

    #[test]
    fn times_are_spans_dates_or_instants() {
        let now = DEC_1 + DAY;
        assert_eq!(parse_time("7d", now).unwrap(), now - 7 * DAY);
        assert_eq!(parse_time("12h", now).unwrap(), now - DAY / 2);
        assert_eq!(parse_time("30m", now).unwrap(), now - 1_800_000);
        assert_eq!(parse_time("2026-12-01", now).unwrap(), DEC_1);
        assert_eq!(
            parse_time("2026-12-01T06:00:00Z", now).unwrap(),
            DEC_1 + DAY / 4
        );
        for bad in ["", "d", "7w", "yesterday", "2026-13-01"] {
            let e = parse_time(bad, now).unwrap_err().to_string();
            assert!(e.contains("give a span back from now"), "{bad}: {e}");
        }
        assert_eq!(GroupBy::parse("tag:team"), Ok(GroupBy::Tag("team".into())));
        assert!(GroupBy::parse("tag:").unwrap_err().contains("tag:KEY"));
        assert!(GroupBy::parse("owner").is_err());
    }
}
