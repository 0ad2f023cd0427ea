//! How a launch is named: the idempotency token and the `startedBy` that tie
//! an ECS task to its job and launch, and the backoff of a job waiting for
//! capacity.

use serde::{Deserialize, Serialize};

use crate::definition::ResolvedJob;
use crate::limits::ecs;

/// Environment variables berth sets for every job.
pub const ENV_JOB_ID: &str = "BERTH_JOB_ID";
pub const ENV_LAUNCH: &str = "BERTH_LAUNCH";
/// The attempt, from 1: failures of the job before this launch, plus one
/// (an interruption's re-dispatch is the same attempt again).
pub const ENV_ATTEMPT: &str = "BERTH_ATTEMPT";

/// `job` as its launch after `failures` failures of its own runs it: with
/// [`ENV_ATTEMPT`] in its environment.
pub fn at_attempt(job: &ResolvedJob, failures: u32) -> ResolvedJob {
    let mut job = job.clone();
    job.environment
        .insert(ENV_ATTEMPT.into(), failures.saturating_add(1).to_string());
    job
}

/// The payload of an asynchronous invoke of a Lambda task processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaTask {
    pub job: ResolvedJob,
    pub launch: LaunchNumber,
}

/// Variables of the task runtime's own environment that a Lambda-route
/// job's process also gets; nothing else of it (not the function's
/// credentials, `AWS_LAMBDA_RUNTIME_API` or berth's `BERTH_*` settings).
/// `AWS_ENDPOINT_URL` is set only where the runtime talks to a local AWS;
/// a job with a job role needs it to reach the same place.
pub const INHERITED_ENVIRONMENT: [&str; 11] = [
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "LAMBDA_TASK_ROOT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
];

/// Credentials for a job's process: those of its job role.
#[derive(Clone, PartialEq, Eq)]
pub struct JobCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl std::fmt::Debug for JobCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The whole environment of a Lambda-route job's process: the allowed
/// variables of the runtime's own environment (`inherited`), the job's
/// variables, berth's `BERTH_JOB_ID` and `BERTH_LAUNCH`, and the job
/// role's credentials when it has one (they win over a job variable of the
/// same name).
pub fn process_environment(
    job: &ResolvedJob,
    launch: LaunchNumber,
    inherited: impl IntoIterator<Item = (String, String)>,
    credentials: Option<&JobCredentials>,
) -> Vec<(String, String)> {
    let mut env: std::collections::BTreeMap<String, String> = inherited
        .into_iter()
        .filter(|(k, _)| INHERITED_ENVIRONMENT.contains(&k.as_str()))
        .collect();
    env.extend(job_environment(job, launch));
    if let Some(c) = credentials {
        env.insert("AWS_ACCESS_KEY_ID".into(), c.access_key_id.clone());
        env.insert("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key.clone());
        env.insert("AWS_SESSION_TOKEN".into(), c.session_token.clone());
    }
    env.into_iter().collect()
}

/// The STS session name of a job's role session: the job id (a job id is
/// 1 to 64 of letters, digits, `_` and `-`, all allowed in a session name,
/// which must have 2 to 64), padded when it is one character.
pub fn role_session_name(job_id: &str) -> String {
    let mut name: String = job_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c))
        .take(64)
        .collect();
    while name.len() < 2 {
        name.push('_');
    }
    name
}

/// The job's environment with berth's own variables added.
pub fn job_environment(job: &ResolvedJob, launch: LaunchNumber) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = job
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push((ENV_JOB_ID.into(), job.job_id.clone()));
    env.push((ENV_LAUNCH.into(), launch.to_string()));
    env
}

/// The RunTask `overrides` of one launch of a job, as ECS takes them:
/// built here once, sent by berth-aws, and measured by routing against
/// ECS's limit on their size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overrides {
    pub container_overrides: [ContainerOverrides; 1],
    /// The task's size, where the task has one (Fargate, and task
    /// definitions that set one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The job role, as the task's role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverrides {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    pub environment: Vec<NameValue>,
    pub cpu: u32,
    pub memory: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// The overrides of launch `launch` of `job`, with the task's size
/// (`cpu`, `memory`) when it is set.
pub fn overrides(job: &ResolvedJob, launch: LaunchNumber, task: Option<(u32, u32)>) -> Overrides {
    let environment = job_environment(job, launch)
        .into_iter()
        .map(|(name, value)| NameValue { name, value })
        .collect();
    let resource_requirements = (job.gpu > 0)
        .then(|| Requirement {
            kind: "GPU".into(),
            value: job.gpu.to_string(),
        })
        .into_iter()
        .collect();
    Overrides {
        container_overrides: [ContainerOverrides {
            name: job.container.clone(),
            command: job.command.clone(),
            environment,
            cpu: job.cpu,
            memory: job.memory,
            resource_requirements,
        }],
        cpu: task.map(|(cpu, _)| cpu.to_string()),
        memory: task.map(|(_, memory)| memory.to_string()),
        task_role_arn: job.job_role.clone(),
    }
}

/// A job's launches are numbered from 1; each try to place the job (also one
/// that found no room) takes the next number, so that a retry after "no
/// room" is a new request while a retry of the same launch is not.
pub type LaunchNumber = u32;

/// Where a launch goes, as far as its token is concerned: the same launch
/// number may try EC2, then Fargate Spot, then Fargate, which are different
/// requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    Ec2,
    Fargate,
    FargateSpot,
}

/// RunTask's `clientToken` for one launch of a job: the same job, launch
/// and scope always give the same token (so ECS starts it at most once);
/// anything else gives another. The job id enters through SHA-256, so that
/// no one can make two job ids share a token. At most 64 characters.
pub fn client_token(job_id: &str, launch: LaunchNumber, scope: TokenScope) -> String {
    use sha2::Digest;
    let scope = match scope {
        TokenScope::Ec2 => "e",
        TokenScope::Fargate => "f",
        TokenScope::FargateSpot => "s",
    };
    let digest = sha2::Sha256::digest(job_id.as_bytes());
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("berth-{hash}-{launch}-{scope}");
    debug_assert!(token.len() <= ecs::MAX_CLIENT_TOKEN_CHARS);
    token
}

/// RunTask's `startedBy`: `<job_id>/<launch>` (ECS allows letters, digits,
/// `-`, `_` and `/`, up to 128 characters; a job id is at most 64).
///
/// ECS allows no `:` in `startedBy`: an array child's `<parent>:<index>`
/// is written `<parent>/<index>`.
pub fn started_by(job_id: &str, launch: LaunchNumber) -> String {
    format!("{}/{launch}", job_id.replace(':', "/"))
}

/// The job id and launch number of a task berth started, from its
/// `startedBy`; `None` for any other task.
pub fn parse_started_by(started_by: &str) -> Option<(String, LaunchNumber)> {
    let (job, launch) = started_by.rsplit_once('/')?;
    let launch = launch.parse().ok()?;
    let job_id = match job.rsplit_once('/') {
        Some((parent, index)) => {
            let id = format!("{parent}:{index}");
            crate::array::parent_of(&id)?;
            crate::job::validate_job_id(parent).ok()?;
            id
        }
        None => {
            crate::job::validate_job_id(job).ok()?;
            job.to_owned()
        }
    };
    Some((job_id, launch))
}

/// First wait of a job that found no capacity, in seconds.
pub const CAPACITY_BACKOFF_FIRST_SECONDS: u32 = 30;
/// Longest single wait: 15 minutes, about how long a scale-out takes to
/// bring an instance into the cluster.
pub const CAPACITY_BACKOFF_MAX_SECONDS: u32 = 900;

/// A job still without capacity after this long fails: six hours, so that a
/// day's work that cannot be placed is reported the same day.
pub const MAX_CAPACITY_WAIT_SECONDS: u32 = 6 * 3600;

/// How long an ECS task may take from its launch to RUNNING (placement,
/// provisioning, image pull) on top of the job's timeout, which counts from
/// RUNNING.
pub const ECS_START_ALLOWANCE_SECONDS: u32 = 1800;

/// How long a Lambda-route job's invocation may wait in Lambda's queue of
/// asynchronous invocations before it runs: Lambda's longest (and default)
/// maximum event age, six hours.
pub const LAMBDA_START_ALLOWANCE_SECONDS: u32 = 6 * 3600;

/// How often the Lambda task runtime says it is still running a job.
pub const LAMBDA_HEARTBEAT_SECONDS: u32 = 60;

/// A Lambda-route job not heard of for this long is taken for dead with its
/// sandbox (out of memory, a crash): three missed heartbeats.
pub const LAMBDA_SILENCE_SECONDS: u32 = 3 * LAMBDA_HEARTBEAT_SECONDS;

/// The deadline (epoch seconds) of a job launched on `route` at `now`
/// (epoch seconds) that has not started yet: its start allowance, then its
/// timeout. Once it runs, its deadline is its start plus its timeout.
pub fn start_deadline(route: crate::Route, timeout_seconds: u32, now: i64) -> i64 {
    let allowance = match route {
        crate::Route::Lambda => LAMBDA_START_ALLOWANCE_SECONDS,
        crate::Route::Ec2 | crate::Route::Fargate | crate::Route::FargateSpot => {
            ECS_START_ALLOWANCE_SECONDS
        }
    };
    now + i64::from(allowance) + i64::from(timeout_seconds)
}

/// How long a job waits before its `waits`-th retry for capacity (0 for the
/// first): doubling from 30 s up to 15 minutes.
pub fn capacity_backoff_seconds(waits: u32) -> u32 {
    CAPACITY_BACKOFF_FIRST_SECONDS
        .saturating_mul(1u32.checked_shl(waits.min(16)).unwrap_or(u32::MAX))
        .min(CAPACITY_BACKOFF_MAX_SECONDS)
}

/// How long a message waits before another try after a retryable error
/// (throttling, 5xx, a launch in progress elsewhere), by how many times it
/// was received: doubling from 10 s up to 5 minutes.
pub fn retry_backoff_seconds(receive_count: u32) -> u32 {
    10u32
        .saturating_mul(
            1u32.checked_shl(receive_count.saturating_sub(1).min(16))
                .unwrap_or(u32::MAX),
        )
        .min(300)
}

/// The first throttled try's delay, in seconds, before its spread.
pub const THROTTLE_BACKOFF_FIRST_SECONDS: u32 = 4;
/// The longest delay after a throttled call: short enough that a job
/// throttled in a burst's last moments launches soon after the limit
/// frees, long enough that jobs cycling through a burst cost few receives.
pub const THROTTLE_BACKOFF_MAX_SECONDS: u32 = 40;

/// How long a message waits after its launch (RunTask, an Invoke) or a
/// write of its record was throttled, by how many times it was received
/// and a `draw` in [0, 1) that is its own: half the doubling base (4 s up
/// to 40 s) and a share of the other half that the draw picks ("equal
/// jitter"). Jobs throttled together come back spread over the half, so
/// their retries meet the limit a few at a time instead of all at once.
pub fn throttle_backoff_seconds(receive_count: u32, draw: f64) -> u32 {
    let base = THROTTLE_BACKOFF_FIRST_SECONDS
        .saturating_mul(
            1u32.checked_shl(receive_count.saturating_sub(1).min(16))
                .unwrap_or(u32::MAX),
        )
        .min(THROTTLE_BACKOFF_MAX_SECONDS);
    let half = base / 2;
    // The draw's share of the half, rounded down: at most `half`.
    let spread = (f64::from(base - half) * draw.clamp(0.0, 1.0)).floor();
    half + (spread as u32).min(base - half)
}

/// A draw in [0, 1) of its own for a message's `receive`-th receive: the
/// same key and receive give the same draw (a retry is reproducible from
/// the logs), different messages give draws spread evenly (FNV-1a, then
/// SplitMix64's finaliser).
pub fn draw_for(key: &str, receive: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(receive.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    // The top 53 bits, as a fraction.
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What a delivery of a job that is already recorded does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Nothing: another message holds the job id (the first one stands),
    /// or the job is past taking a launch.
    Duplicate,
    /// Another delivery is launching it right now: come back later.
    InProgress,
    /// A launch was claimed and never recorded, and may have happened: look
    /// for its task, and with none found make the launch again under its
    /// own number, whose RunTask client token ECS answers with the task it
    /// started, if a listing lagged it (ECS; a Lambda invoke leaves nothing
    /// to find).
    FindTask,
    /// Claim the next launch and make it.
    Claim,
}

/// The record of a job, as a delivery of it reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub status: crate::JobStatus,
    /// Whether the delivery may launch the job: the job's own message, or
    /// a re-queued attempt (not another message with the same job id).
    pub own_message: bool,
    /// When the record's launch was claimed (epoch ms), if it is claimed.
    pub claimed_at: Option<i64>,
}

/// Decides what a delivery of a recorded job does, at `now` (epoch ms),
/// with a claim protecting a launch in progress for `lease_ms`; `on_ecs`
/// when the job's plan launches an ECS task.
pub fn resume(recorded: &Recorded, now: i64, lease_ms: i64, on_ecs: bool) -> Resume {
    use crate::JobStatus::{Accepted, WaitingForCapacity};
    if !recorded.own_message || !matches!(recorded.status, Accepted | WaitingForCapacity) {
        return Resume::Duplicate;
    }
    // `ACCEPTED` with a claim: a launch was claimed and may be under way
    // (or may have happened and not been recorded). Without one: the last
    // launch ended and the next is free to claim.
    let claim = match (recorded.status, recorded.claimed_at) {
        (Accepted, Some(at)) => at,
        _ => return Resume::Claim,
    };
    if now.saturating_sub(claim) < lease_ms {
        Resume::InProgress
    } else if on_ecs {
        Resume::FindTask
    } else {
        Resume::Claim
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn resolved(job_role: Option<&str>) -> ResolvedJob {
        let job = crate::job::parse(
            r#"{"definition":"d","job_id":"job-1","environment":{"MODE":"fast","AWS_SECRET_ACCESS_KEY":"the job's own"}}"#,
            "m-1",
        )
        .unwrap();
        let def = crate::JobDefinition {
            daily_limit_usd: None,
            retry_rules: Vec::new(),
            name: "d".into(),
            task_definition: "d:1".into(),
            container: "main".into(),
            lambda_function: Some("f".into()),
            command: None,
            cpu: 256,
            memory: 512,
            gpu: 0,
            timeout_seconds: 60,
            max_attempts: 1,
            fargate: false,
            job_role: job_role.map(str::to_owned),
            interruptible: true,
            command_override: true,
            expected_seconds: None,
            runs: Default::default(),
            tags: Default::default(),
        };
        crate::resolve(&job, Some(&def)).unwrap()
    }

    #[test]
    fn a_process_gets_only_the_allowed_variables_the_job_and_its_role() {
        let inherited = [
            ("PATH", "/usr/bin"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "berth-key"),
            ("AWS_SECRET_ACCESS_KEY", "berth-secret"),
            ("AWS_SESSION_TOKEN", "berth-token"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("BERTH_JOBS_TABLE", "jobs"),
            ("_HANDLER", "bootstrap"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let job = resolved(None);
        let env: BTreeMap<String, String> = process_environment(&job, 3, inherited.clone(), None)
            .into_iter()
            .collect();
        let expected = BTreeMap::from(
            [
                ("PATH", "/usr/bin"),
                ("AWS_REGION", "eu-west-1"),
                ("MODE", "fast"),
                ("AWS_SECRET_ACCESS_KEY", "the job's own"),
                ("BERTH_JOB_ID", "job-1"),
                ("BERTH_LAUNCH", "3"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        assert_eq!(env, expected);

        let role = JobCredentials {
            access_key_id: "ASIAROLE".into(),
            secret_access_key: "role-secret".into(),
            session_token: "role-token".into(),
        };
        let env: BTreeMap<String, String> = process_environment(&job, 3, inherited, Some(&role))
            .into_iter()
            .collect();
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "ASIAROLE");
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "role-secret", "the role wins");
        assert_eq!(env["AWS_SESSION_TOKEN"], "role-token");
        assert!(
            !format!("{role:?}").contains("role-secret"),
            "no secret in logs"
        );
    }

    #[test]
    fn a_session_is_named_after_the_job() {
        assert_eq!(role_session_name("job-1"), "job-1");
        assert_eq!(role_session_name("x"), "x_");
        assert_eq!(role_session_name(&"a".repeat(64)).len(), 64);
    }

    #[test]
    fn the_job_role_is_the_tasks_role() {
        let role = "arn:aws:iam::123456789012:role/berth-dev_job-etl";
        let o = overrides(&resolved(Some(role)), 1, None);
        assert_eq!(o.task_role_arn.as_deref(), Some(role));
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["taskRoleArn"], role);
        let none = serde_json::to_value(overrides(&resolved(None), 1, None)).unwrap();
        assert!(none.get("taskRoleArn").is_none());
    }

    #[test]
    fn a_token_is_a_cryptographic_hash_of_the_job_id() {
        // SHA-256("job-1"), by Python's hashlib: job ids made to collide on a
        // weak hash must not share a launch's token (ECS would answer one
        // job's RunTask with the other's task).
        let sha256 = "026ab639c21df8aa80e5789370a9db1b8b524b776fd8a0c2ba71efb377ecc7d9";
        assert_eq!(
            client_token("job-1", 1, TokenScope::Ec2),
            format!("berth-{}-1-e", &sha256[..32])
        );
    }

    #[test]
    fn tokens_are_stable_short_and_distinct() {
        let t = client_token("job-1", 1, TokenScope::Ec2);
        assert_eq!(t, client_token("job-1", 1, TokenScope::Ec2));
        assert!(t.len() <= 64, "{t}");
        let long = "x".repeat(64);
        assert!(client_token(&long, u32::MAX, TokenScope::Fargate).len() <= 64);
        let others = [
            client_token("job-2", 1, TokenScope::Ec2),
            client_token("job-1", 2, TokenScope::Ec2),
            client_token("job-1", 1, TokenScope::Fargate),
        ];
        assert!(others.iter().all(|o| *o != t), "{others:?}");
    }

    #[test]
    fn started_by_round_trips() {
        let s = started_by("job_1-A", 3);
        assert_eq!(s, "job_1-A/3");
        assert!(s.len() <= ecs::MAX_STARTED_BY_CHARS);
        assert_eq!(parse_started_by(&s), Some(("job_1-A".into(), 3)));
        assert_eq!(
            parse_started_by("ecs-svc/1234"),
            Some(("ecs-svc".into(), 1234))
        );
        assert_eq!(parse_started_by("someone else"), None);
        assert_eq!(parse_started_by("job/x"), None);
        assert_eq!(parse_started_by("/3"), None);
        // An array's child: no `:` in what ECS takes.
        let child = started_by("frames:9999", 2);
        assert_eq!(child, "frames/9999/2");
        assert!(
            child
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
        );
        assert_eq!(parse_started_by(&child), Some(("frames:9999".into(), 2)));
        assert_eq!(parse_started_by("frames/x/2"), None);
        assert_eq!(parse_started_by("a b/1/2"), None);
    }

    #[test]
    fn a_recorded_job_is_resumed_by_its_record() {
        use crate::JobStatus::*;
        let lease = 60_000;
        let at = |status, own_message, claimed_at| Recorded {
            status,
            own_message,
            claimed_at,
        };
        let cases = [
            // Another message with the same job id, whatever the record.
            (at(Accepted, false, None), 0, true, Resume::Duplicate),
            // Past taking a launch.
            (at(Dispatched, true, None), 0, true, Resume::Duplicate),
            (at(Running, true, Some(0)), 0, true, Resume::Duplicate),
            (at(Succeeded, true, None), 0, true, Resume::Duplicate),
            // The last launch ended, or found no room: the next is free.
            (at(Accepted, true, None), 0, true, Resume::Claim),
            (
                at(WaitingForCapacity, true, Some(0)),
                0,
                true,
                Resume::Claim,
            ),
            // Claimed within the lease: in progress elsewhere.
            (
                at(Accepted, true, Some(1_000)),
                60_999,
                true,
                Resume::InProgress,
            ),
            // Claimed and the lease is over: find the task first on ECS.
            (
                at(Accepted, true, Some(1_000)),
                61_000,
                true,
                Resume::FindTask,
            ),
            (
                at(Accepted, true, Some(1_000)),
                61_000,
                false,
                Resume::Claim,
            ),
        ];
        for (recorded, now, on_ecs, want) in cases {
            assert_eq!(
                resume(&recorded, now, lease, on_ecs),
                want,
                "{recorded:?} at {now}"
            );
        }
    }

    #[test]
    fn retry_backoff_doubles_to_five_minutes() {
        let waits: Vec<u32> = (1..=7).map(retry_backoff_seconds).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(retry_backoff_seconds(0), 10);
        assert_eq!(retry_backoff_seconds(u32::MAX), 300);
    }

    #[test]
    fn a_throttled_retry_waits_half_its_base_and_a_drawn_share_of_the_rest() {
        // The bounds: the draw's ends.
        let low: Vec<u32> = (1..=6).map(|n| throttle_backoff_seconds(n, 0.0)).collect();
        let high: Vec<u32> = (1..=6)
            .map(|n| throttle_backoff_seconds(n, 0.999_999))
            .collect();
        assert_eq!(low, [2, 4, 8, 16, 20, 20]);
        assert_eq!(high, [3, 7, 15, 31, 39, 39]);
        assert_eq!(
            throttle_backoff_seconds(0, 1.0),
            4,
            "a draw of 1 is the base"
        );
        assert_eq!(throttle_backoff_seconds(u32::MAX, 2.0), 40, "clamped");
        assert_eq!(throttle_backoff_seconds(u32::MAX, f64::NAN), 20);
    }

    #[test]
    fn draws_are_the_messages_own_and_spread_evenly() {
        assert_eq!(draw_for("m-1", 3), draw_for("m-1", 3));
        assert_ne!(draw_for("m-1", 3), draw_for("m-1", 4));
        assert_ne!(draw_for("m-1", 3), draw_for("m-2", 3));
        // 10,000 messages throttled together: each tenth of [0, 1) takes
        // close to a tenth of them, so their retries come back evenly.
        let mut deciles = [0u32; 10];
        for i in 0..10_000 {
            let d = draw_for(&format!("5f0c-{i}"), 1);
            assert!((0.0..1.0).contains(&d), "{d}");
            deciles[(d * 10.0) as usize] += 1;
        }
        for (k, n) in deciles.iter().enumerate() {
            assert!((900..=1100).contains(n), "decile {k}: {n} of 10,000");
        }
        // And the delays they give cover the spread, not a few points.
        let delays: std::collections::BTreeSet<u32> = (0..1_000)
            .map(|i| throttle_backoff_seconds(5, draw_for(&format!("m-{i}"), 5)))
            .collect();
        assert_eq!(delays, (20..=39).collect());
    }

    #[test]
    fn capacity_backoff_doubles_to_fifteen_minutes() {
        let waits: Vec<u32> = (0..7).map(capacity_backoff_seconds).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(capacity_backoff_seconds(u32::MAX), 900);
    }
}
