//! Dependencies: a job that waits for others to end before it runs.
//!
//! A job names up to [`MAX_DEPENDENCIES`] jobs, each with a condition:
//! `succeeded` (the default, AWS Batch's only one), `failed` (it ended in
//! any state but `SUCCEEDED`, Slurm's `afternotok`) or `ended` (it ended,
//! Slurm's `afterany`). The job is `PENDING` until every condition is met,
//! then it is queued as any job is; once one can no longer be met (a
//! dependency ended otherwise), it ends `FAILED` at once, and so on down
//! the chain.
//!
//! A job is recorded only once every job it names is: its dependencies
//! exist before it does, so no cycle can form among recorded jobs.
//! [`cycle`] finds one among jobs submitted together.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::JobStatus;

/// The most dependencies a job may name (AWS Batch allows 20).
pub const MAX_DEPENDENCIES: usize = 100;

/// What a dependency must do for its dependent to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// It ended `SUCCEEDED`.
    #[default]
    Succeeded,
    /// It ended in any other state.
    Failed,
    /// It ended, in any state.
    Ended,
}

impl Condition {
    pub const ALL: [Condition; 3] = [Condition::Succeeded, Condition::Failed, Condition::Ended];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Succeeded => "succeeded",
            Condition::Failed => "failed",
            Condition::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }

    /// What a dependency in `status` means for this condition.
    pub fn verdict(self, status: JobStatus) -> Verdict {
        if !status.is_final() {
            return Verdict::Waiting;
        }
        let met = match self {
            Condition::Succeeded => status == JobStatus::Succeeded,
            Condition::Failed => status != JobStatus::Succeeded,
            Condition::Ended => true,
        };
        if met { Verdict::Met } else { Verdict::Never }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one condition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    /// The dependency has not ended.
    Waiting,
    /// It ended, and not as the condition needs.
    Never,
}

/// Whom a dependency binds: the whole job, or (AWS Batch's `N_TO_N`) each
/// child of an array to the child with its index in another array of the
/// same size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// The job waits for the whole dependency to end.
    #[default]
    #[serde(rename = "job")]
    Job,
    /// Child i of the array waits for child i of the dependency, an array of
    /// the same size; the array itself does not wait.
    #[serde(rename = "n_to_n", alias = "N_TO_N")]
    NToN,
}

impl Kind {
    pub fn is_job(&self) -> bool {
        *self == Kind::Job
    }
}

/// One dependency: a job and what it must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub job_id: String,
    #[serde(default)]
    pub condition: Condition,
    /// `job` (the default) or `n_to_n`.
    #[serde(default, rename = "type", skip_serializing_if = "Kind::is_job")]
    pub kind: Kind,
}

impl Dependency {
    /// A dependency on the whole of `job_id`.
    pub fn on(job_id: impl Into<String>, condition: Condition) -> Self {
        Dependency {
            job_id: job_id.into(),
            condition,
            kind: Kind::Job,
        }
    }

    /// Child by child on the array `job_id` (`N_TO_N`).
    pub fn each(job_id: impl Into<String>, condition: Condition) -> Self {
        Dependency {
            job_id: job_id.into(),
            condition,
            kind: Kind::NToN,
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.condition) {
            (Kind::Job, Condition::Succeeded) => f.write_str(&self.job_id),
            (Kind::Job, c) => write!(f, "{} ({c})", self.job_id),
            (Kind::NToN, c) => write!(f, "{} (n_to_n, {c})", self.job_id),
        }
    }
}

/// The arrays `dependencies` binds child by child (`N_TO_N`).
pub fn each_of(dependencies: &[Dependency]) -> impl Iterator<Item = &Dependency> {
    dependencies.iter().filter(|d| d.kind == Kind::NToN)
}

/// What becomes of a job waiting on its dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every condition is met: it runs.
    Run,
    /// Some have not ended: these, in the order the job names them.
    Wait(Vec<String>),
    /// One can no longer be met: it ends `FAILED` with this reason.
    Fail(String),
}

/// Decides for a job with `dependencies`, each dependency's status as
/// `status_of` reads it (`None`: not recorded). A condition that can never
/// be met decides before any that waits, so a failure cascades at once.
/// `N_TO_N` dependencies bind the children, not the job: they are left to
/// [`crate::array::Children::each`].
pub fn decide(
    dependencies: &[Dependency],
    status_of: impl Fn(&str) -> Option<JobStatus>,
) -> Decision {
    let mut waiting = Vec::new();
    for d in dependencies.iter().filter(|d| d.kind.is_job()) {
        let Some(status) = status_of(&d.job_id) else {
            return Decision::Fail(format!("dependency {} is not recorded", d.job_id));
        };
        match d.condition.verdict(status) {
            Verdict::Met => {}
            Verdict::Waiting => waiting.push(d.job_id.clone()),
            Verdict::Never => {
                return Decision::Fail(match d.condition {
                    Condition::Succeeded => format!("dependency {} ended {status}", d.job_id),
                    c => format!(
                        "dependency {} ended {status}, and the condition was {c}",
                        d.job_id
                    ),
                });
            }
        }
    }
    if waiting.is_empty() {
        Decision::Run
    } else {
        Decision::Wait(waiting)
    }
}

/// The reason a `PENDING` job shows: the jobs it waits for.
pub fn waiting_reason(ids: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut shown = ids
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        shown.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    format!("waiting for {shown}")
}

/// Checks a job's `dependencies`: at most [`MAX_DEPENDENCIES`], each a job
/// id (or an array child's, `ID:INDEX`) named once, none the job itself.
pub fn validate(job_id: &str, dependencies: &[Dependency]) -> Result<(), String> {
    if dependencies.len() > MAX_DEPENDENCIES {
        return Err(format!(
            "has {} entries, more than the limit of {MAX_DEPENDENCIES}",
            dependencies.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for d in dependencies {
        validate_reference(&d.job_id)
            .map_err(|why| format!("`{}`: {why}", crate::job::quote(&d.job_id)))?;
        if d.job_id == job_id {
            return Err(format!("`{job_id}` is the job itself"));
        }
        if d.kind == Kind::NToN && crate::array::parent_of(&d.job_id).is_some() {
            return Err(format!(
                "`{}` is an array's child; `n_to_n` names an array",
                d.job_id
            ));
        }
        if !seen.insert(d.job_id.as_str()) {
            return Err(format!("`{}` is named more than once", d.job_id));
        }
    }
    Ok(())
}

/// A job id, or an array child's id `PARENT:INDEX`.
pub fn validate_reference(id: &str) -> Result<(), String> {
    let (parent, index) = match id.rsplit_once(':') {
        Some((parent, index)) => (parent, Some(index)),
        None => (id, None),
    };
    crate::job::validate_job_id(parent).map_err(|p| p.to_string())?;
    match index {
        Some(i) if i.is_empty() || !i.bytes().all(|b| b.is_ascii_digit()) || i.len() > 5 => Err(
            format!("an array child's index must be 0 to 99999, found {i:?}"),
        ),
        _ => Ok(()),
    }
}

/// A cycle among jobs submitted together, each with the ids it depends on
/// (`edges`; ids outside it are taken for recorded jobs, which depend on
/// none of these): the ids around it, the first one repeated at the end.
pub fn cycle(edges: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = edges.keys().map(|k| (k.as_str(), Mark::New)).collect();
    for start in edges.keys() {
        if mark[start.as_str()] != Mark::New {
            continue;
        }
        // Depth first, without recursion: (node, next edge to follow).
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        mark.insert(start.as_str(), Mark::OnPath);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let out = &edges[node];
            if *next == out.len() {
                mark.insert(node, Mark::Done);
                path.pop();
                continue;
            }
            let to = out[*next].as_str();
            *next += 1;
            match mark.get(to) {
                Some(Mark::New) => {
                    mark.insert(to, Mark::OnPath);
                    path.push((to, 0));
                }
                Some(Mark::OnPath) => {
                    let from = path.iter().position(|(n, _)| *n == to).unwrap_or(0);
                    let mut ids: Vec<String> =
                        path[from..].iter().map(|(n, _)| (*n).to_owned()).collect();
                    ids.push(to.to_owned());
                    return Some(ids);
                }
                Some(Mark::Done) | None => {}
            }
        }
    }
    None
}

/// The ids of `edges` in an order where each comes after every id it
/// depends on; `Err` with a cycle when there is none.
pub fn order(edges: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, Vec<String>> {
    if let Some(c) = cycle(edges) {
        return Err(c);
    }
    let mut placed = BTreeSet::new();
    let mut out = Vec::new();
    fn place<'a>(
        id: &'a str,
        edges: &'a BTreeMap<String, Vec<String>>,
        placed: &mut BTreeSet<&'a str>,
        out: &mut Vec<String>,
    ) {
        if !placed.insert(id) {
            return;
        }
        for dep in edges.get(id).into_iter().flatten() {
            if edges.contains_key(dep) {
                place(dep, edges, placed, out);
            }
        }
        out.push(id.to_owned());
    }
    for id in edges.keys() {
        place(id, edges, &mut placed, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;
    use proptest::prelude::*;

    fn dep(id: &str, condition: Condition) -> Dependency {
        Dependency::on(id, condition)
    }

    #[test]
    fn each_condition_by_each_status() {
        use Verdict::*;
        // (status, succeeded, failed, ended)
        let table = [
            (Pending, Waiting, Waiting, Waiting),
            (Accepted, Waiting, Waiting, Waiting),
            (Running, Waiting, Waiting, Waiting),
            (Succeeded, Met, Never, Met),
            (Failed, Never, Met, Met),
            (TimedOut, Never, Met, Met),
            (Cancelled, Never, Met, Met),
            (Rejected, Never, Met, Met),
        ];
        for (status, s, f, e) in table {
            assert_eq!(Condition::Succeeded.verdict(status), s, "{status}");
            assert_eq!(Condition::Failed.verdict(status), f, "{status}");
            assert_eq!(Condition::Ended.verdict(status), e, "{status}");
        }
    }

    #[test]
    fn a_job_runs_waits_or_fails_by_its_dependencies() {
        let statuses = BTreeMap::from([
            ("a", Succeeded),
            ("b", Failed),
            ("c", Running),
            ("d", Pending),
        ]);
        let of = |id: &str| statuses.get(id).copied();
        let cases = [
            (vec![dep("a", Condition::Succeeded)], Decision::Run),
            (
                vec![dep("a", Condition::Ended), dep("b", Condition::Failed)],
                Decision::Run,
            ),
            (
                vec![dep("c", Condition::Succeeded), dep("d", Condition::Ended)],
                Decision::Wait(vec!["c".into(), "d".into()]),
            ),
            (
                vec![
                    dep("c", Condition::Succeeded),
                    dep("b", Condition::Succeeded),
                ],
                Decision::Fail("dependency b ended FAILED".into()),
            ),
            (
                vec![dep("a", Condition::Failed)],
                Decision::Fail("dependency a ended SUCCEEDED, and the condition was failed".into()),
            ),
            (
                vec![dep("x", Condition::Ended)],
                Decision::Fail("dependency x is not recorded".into()),
            ),
            (vec![], Decision::Run),
            // N_TO_N binds the children: the array itself does not wait.
            (
                vec![Dependency::each("c", Condition::Succeeded)],
                Decision::Run,
            ),
            (
                vec![
                    Dependency::each("b", Condition::Succeeded),
                    dep("c", Condition::Ended),
                ],
                Decision::Wait(vec!["c".into()]),
            ),
        ];
        for (deps, want) in cases {
            assert_eq!(decide(&deps, of), want, "{deps:?}");
        }
        assert_eq!(
            waiting_reason(&(0..7).map(|i| format!("j{i}")).collect::<Vec<_>>()),
            "waiting for j0, j1, j2, j3, j4 and 2 more"
        );
    }

    #[test]
    fn dependencies_are_checked() {
        let ok = [
            dep("a", Condition::Succeeded),
            dep("arr:12", Condition::Ended),
        ];
        assert_eq!(validate("j", &ok), Ok(()));
        let many: Vec<_> = (0..101)
            .map(|i| dep(&format!("d{i}"), Condition::Ended))
            .collect();
        for (deps, why) in [
            (vec![dep("j", Condition::Ended)], "`j` is the job itself"),
            (
                vec![dep("a", Condition::Ended), dep("a", Condition::Failed)],
                "`a` is named more than once",
            ),
            (
                vec![dep("a b", Condition::Ended)],
                "`a b`: may contain only",
            ),
            (
                vec![dep("a:x", Condition::Ended)],
                "index must be 0 to 99999",
            ),
            (
                vec![dep("a:", Condition::Ended)],
                "index must be 0 to 99999",
            ),
            (many, "has 101 entries, more than the limit of 100"),
            (
                vec![Dependency::each("arr:3", Condition::Succeeded)],
                "`arr:3` is an array's child; `n_to_n` names an array",
            ),
        ] {
            let e = validate("j", &deps).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn cycles_are_found_and_orders_put_dependencies_first() {
        let g = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect()
        };
        let dag = g(&[("c", &["a", "b"]), ("b", &["a", "recorded"]), ("a", &[])]);
        assert_eq!(cycle(&dag), None);
        assert_eq!(order(&dag).unwrap(), vec!["a", "b", "c"]);
        let looped = g(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        assert_eq!(cycle(&looped).unwrap(), vec!["a", "b", "c", "a"]);
        assert!(order(&looped).is_err());
        assert_eq!(cycle(&g(&[("s", &["s"])])).unwrap(), vec!["s", "s"]);
    }

    #[test]
    fn a_dependency_reads_its_type_in_batch_spelling_too() {
        for body in [
            r#"{"job_id":"a","type":"n_to_n"}"#,
            r#"{"job_id":"a","type":"N_TO_N"}"#,
        ] {
            let d: Dependency = serde_json::from_str(body).unwrap();
            assert_eq!(d, Dependency::each("a", Condition::Succeeded));
        }
        let whole: Dependency = serde_json::from_str(r#"{"job_id":"a"}"#).unwrap();
        assert_eq!(whole.kind, Kind::Job);
        assert_eq!(
            serde_json::to_string(&whole).unwrap(),
            r#"{"job_id":"a","condition":"succeeded"}"#,
            "a whole-job dependency is stored as before"
        );
        assert!(
            serde_json::from_str::<Dependency>(r#"{"job_id":"a","type":"sequential"}"#).is_err()
        );
        assert_eq!(
            Dependency::each("a", Condition::Ended).to_string(),
            "a (n_to_n, ended)"
        );
    }

    proptest! {
        /// In a graph whose edges go only to lower numbers there is no
        /// cycle, and the order puts every dependency first; one edge back
        /// up from the lowest to the highest of a chain makes a cycle.
        #[test]
        fn a_dag_orders_and_a_back_edge_cycles(n in 2usize..30, edges in proptest::collection::vec((0usize..30, 0usize..30), 0..80)) {
            let mut g: BTreeMap<String, Vec<String>> = (0..n).map(|i| (format!("j{i:02}"), Vec::new())).collect();
            for (a, b) in edges {
                let (a, b) = (a % n, b % n);
                if a > b {
                    g.get_mut(&format!("j{a:02}")).unwrap().push(format!("j{b:02}"));
                }
            }
            let order = order(&g).unwrap();
            let at: BTreeMap<&String, usize> = order.iter().enumerate().map(|(i, id)| (id, i)).collect();
            for (id, deps) in &g {
                for d in deps {
                    prop_assert!(at[d] < at[id]);
                }
            }
            // A chain n-1 -> ... -> 0, closed by 0 -> n-1.
            for i in 1..n {
                g.get_mut(&format!("j{i:02}")).unwrap().push(format!("j{:02}", i - 1));
            }
            g.get_mut("j00").unwrap().push(format!("j{:02}", n - 1));
            let c = cycle(&g).unwrap();
            prop_assert_eq!(c.first(), c.last());
            prop_assert!(c.len() >= 2);
        }
    }
}
