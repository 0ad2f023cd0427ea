//! The v1 job message: the SQS body a user sends, parsed and validated into a
//! [`JobRequest`], with one specific [`MessageError`] per broken rule.
//!
//! Fields are read by hand from the JSON object rather than through serde's
//! derive so that every rejection names its field, its rule and what was
//! found, in words a user can act on.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::limits::message as lim;

/// Where a job asks to run. `Auto` lets berth choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Processor {
    #[default]
    Auto,
    Lambda,
    Ec2,
    Fargate,
}

impl Processor {
    pub const ALL: [Processor; 4] = [Self::Auto, Self::Lambda, Self::Ec2, Self::Fargate];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Lambda => "lambda",
            Self::Ec2 => "ec2",
            Self::Fargate => "fargate",
        }
    }
}

impl fmt::Display for Processor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid job message. Optional fields left out stay `None` until the job is
/// resolved against its definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    pub job_id: String,
    pub definition: String,
    pub command: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub gpu: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub processor: Processor,
    pub max_attempts: Option<u32>,
    /// Put on its ECS tasks and kept on its record, over its definition's
    /// (see [`crate::tags`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Its own retry rules, in place of its definition's (see
    /// [`crate::retry`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_rules: Option<Vec<crate::retry::RetryRule>>,
    /// The jobs it waits for (see [`crate::dependency`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<crate::dependency::Dependency>,
    /// It is an array of this many children (see [`crate::array`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<crate::array::ArraySpec>,
}

/// The fields of a v1 job message, in the order the contract lists them.
pub const FIELDS: [&str; 14] = [
    "job_id",
    "definition",
    "command",
    "environment",
    "cpu",
    "memory",
    "gpu",
    "timeout_seconds",
    "processor",
    "max_attempts",
    "tags",
    "retry_rules",
    "depends_on",
    "array",
];

/// Why a job message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message body is {size} bytes, more than the limit of {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("message body is not JSON: {detail}")]
    NotJson { detail: String },
    #[error("message body must be a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("unknown field `{field}` (the fields are: {})", FIELDS.join(", "))]
    UnknownField { field: String },
    #[error("`{field}`: {problem}")]
    Field { field: String, problem: Problem },
}

impl MessageError {
    /// A short stable code for metrics and tests, e.g. `cpu.range`.
    pub fn code(&self) -> String {
        match self {
            Self::BodyTooLarge { .. } => "body.size".into(),
            Self::NotJson { .. } => "body.json".into(),
            Self::NotAnObject { .. } => "body.type".into(),
            Self::UnknownField { .. } => "body.unknown_field".into(),
            Self::Field { field, problem } => {
                // Environment variables are named `environment.NAME`: keep the
                // code independent of the name.
                let field = field.split('.').next().unwrap_or(field);
                format!("{field}.{}", problem.code())
            }
        }
    }

    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::UnknownField { field } | Self::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    fn invalid(field: impl Into<String>, problem: Problem) -> Self {
        Self::Field {
            field: field.into(),
            problem,
        }
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is required")]
    Missing,
    #[error("must be {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("must be between {min} and {max}, found {found}")]
    OutOfRange { min: u64, max: u64, found: String },
    #[error("must be {min} to {max} characters long, found {found}")]
    Length {
        min: usize,
        max: usize,
        found: usize,
    },
    #[error("may contain only {allowed}, found {found:?}")]
    Characters {
        allowed: &'static str,
        found: String,
    },
    #[error("must not be empty")]
    Empty,
    #[error("appears more than once; the message is ambiguous")]
    Duplicate,
    #[error("has {found} entries, more than the limit of {limit}")]
    TooMany { found: usize, limit: usize },
    #[error("is {found} bytes, more than the limit of {limit}")]
    TooLarge { found: usize, limit: usize },
    #[error("is reserved: names starting with {prefix} are set by berth")]
    Reserved { prefix: &'static str },
    #[error("is reserved: tag keys starting with {prefix} (in any case) are {owner}'s")]
    ReservedTag {
        prefix: &'static str,
        owner: &'static str,
    },
    #[error("must be one of {allowed}, found {found:?}")]
    NotOneOf {
        allowed: &'static str,
        found: String,
    },
    #[error("contains a NUL character, which no process argument or environment variable can hold")]
    Nul,
    #[error("{0}")]
    Invalid(String),
}

impl Problem {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::WrongType { .. } => "type",
            Self::OutOfRange { .. } => "range",
            Self::Length { .. } => "length",
            Self::Characters { .. } => "characters",
            Self::Empty => "empty",
            Self::Duplicate => "duplicate",
            Self::TooMany { .. } => "count",
            Self::TooLarge { .. } => "size",
            Self::Reserved { .. } | Self::ReservedTag { .. } => "reserved",
            Self::NotOneOf { .. } => "value",
            Self::Nul => "nul",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Parses the JSON `body` in one pass, noting the first key that appears
/// twice in one object, as a path (`definition`, `environment.NAME`). Of a
/// repeated key the last value is kept, as `serde_json` does. Linear in the
/// body's size: the keys above a value are a stack, and a path is written
/// out only for a repeated key.
fn parse_noting_duplicates(body: &str) -> serde_json::Result<(Value, Option<String>)> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

    struct Walk<'a> {
        duplicate: &'a mut Option<String>,
        keys: &'a mut Vec<String>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = Value;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut object = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if object.contains_key(&key) && self.duplicate.is_none() {
                    let mut path = self.keys.clone();
                    path.push(key.clone());
                    *self.duplicate = Some(path.join("."));
                }
                self.keys.push(key);
                let value = map.next_value_seed(Walk {
                    duplicate: &mut *self.duplicate,
                    keys: &mut *self.keys,
                });
                let key = self.keys.pop().unwrap_or_default();
                object.insert(key, value?);
            }
            Ok(Value::Object(object))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Walk {
                duplicate: &mut *self.duplicate,
                keys: &mut *self.keys,
            })? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    }

    let mut duplicate = None;
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(body);
    let value = Walk {
        duplicate: &mut duplicate,
        keys: &mut keys,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, duplicate.map(|path| quote(&path))))
}

/// The most bytes of a value a rejection quotes back: what the sender sent
/// may be as large as the body, and the reason is kept in the job's record.
pub const QUOTE_MAX_BYTES: usize = 64;

/// `text` as a rejection quotes it: at most [`QUOTE_MAX_BYTES`], cut on a
/// character boundary, with `…` where it was cut.
pub fn quote(text: &str) -> String {
    let cut = crate::text::cut(text, QUOTE_MAX_BYTES);
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut.to_owned()
    }
}

const ID_CHARS: &str = "letters, digits, '_' and '-'";
const ENV_NAME_CHARS: &str =
    "letters, digits and '_', not starting with a digit ([A-Za-z_][A-Za-z0-9_]*)";

/// Parses and validates a job message body. `message_id` (the SQS message id)
/// becomes the job id when the body has none.
pub fn parse(body: &str, message_id: &str) -> Result<JobRequest, MessageError> {
    parse_as(body, message_id, false)
}

/// [`parse`] of a message berth itself sent: a re-queued attempt or an
/// array's child, whose job id may be a child's, `<parent>:<index>`.
pub fn parse_internal(body: &str, message_id: &str) -> Result<JobRequest, MessageError> {
    parse_as(body, message_id, true)
}

fn parse_as(body: &str, message_id: &str, child_ids: bool) -> Result<JobRequest, MessageError> {
    if body.len() > lim::MAX_BODY_BYTES {
        return Err(MessageError::BodyTooLarge {
            size: body.len(),
            limit: lim::MAX_BODY_BYTES,
        });
    }
    let (value, duplicate) = parse_noting_duplicates(body).map_err(|e| MessageError::NotJson {
        detail: e.to_string(),
    })?;
    let Value::Object(mut obj) = value else {
        return Err(MessageError::NotAnObject {
            found: json_type(&value),
        });
    };
    if let Some(field) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(MessageError::UnknownField {
            field: quote(field),
        });
    }
    // JSON parsers disagree on a repeated key (this one keeps the last):
    // such a message could run as something its sender did not mean.
    if let Some(path) = duplicate {
        return Err(MessageError::invalid(path, Problem::Duplicate));
    }

    let job_id = match take(&mut obj, "job_id") {
        Some(v) => string(v, "job_id")?,
        None => message_id.to_owned(),
    };
    match crate::array::parent_of(&job_id) {
        Some((parent, _)) if child_ids => validate_job_id(parent),
        _ => validate_job_id(&job_id),
    }
    .map_err(|p| MessageError::invalid("job_id", p))?;

    let definition = match take(&mut obj, "definition") {
        Some(v) => string(v, "definition")?,
        None => return Err(MessageError::invalid("definition", Problem::Missing)),
    };
    validate_definition_name(&definition).map_err(|p| MessageError::invalid("definition", p))?;

    let command = take(&mut obj, "command").map(command).transpose()?;
    let environment = take(&mut obj, "environment")
        .map(environment)
        .transpose()?
        .unwrap_or_default();

    let cpu = take(&mut obj, "cpu")
        .map(|v| integer(v, "cpu", lim::CPU_MIN, lim::CPU_MAX))
        .transpose()?;
    let memory = take(&mut obj, "memory")
        .map(|v| integer(v, "memory", lim::MEMORY_MIN, lim::MEMORY_MAX))
        .transpose()?;
    let gpu = take(&mut obj, "gpu")
        .map(|v| integer(v, "gpu", 0, lim::GPU_MAX))
        .transpose()?;
    let timeout_seconds = take(&mut obj, "timeout_seconds")
        .map(|v| integer(v, "timeout_seconds", lim::TIMEOUT_MIN, lim::TIMEOUT_MAX))
        .transpose()?;
    let processor = take(&mut obj, "processor")
        .map(processor)
        .transpose()?
        .unwrap_or_default();
    let max_attempts = take(&mut obj, "max_attempts")
        .map(|v| {
            integer(
                v,
                "max_attempts",
                lim::MAX_ATTEMPTS_MIN,
                lim::MAX_ATTEMPTS_MAX,
            )
        })
        .transpose()?;
    let tags = take(&mut obj, "tags")
        .map(crate::tags::from_json)
        .transpose()?
        .unwrap_or_default();
    let retry_rules = take(&mut obj, "retry_rules").map(retry_rules).transpose()?;
    let depends_on = take(&mut obj, "depends_on")
        .map(|v| depends_on(v, &job_id))
        .transpose()?
        .unwrap_or_default();
    let array = take(&mut obj, "array").map(array).transpose()?;
    if let Some(each) = crate::dependency::each_of(&depends_on).next() {
        let why = match array {
            None => Some("binds an array's children: the job needs `array`"),
            Some(a) if a.sequential.is_some() => {
                Some("binds children one to one; a `sequential` array cannot have it")
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(MessageError::invalid(
                "depends_on",
                Problem::Invalid(format!("`{}` is `n_to_n`, which {why}", each.job_id)),
            ));
        }
    }

    Ok(JobRequest {
        job_id,
        definition,
        command,
        environment,
        cpu,
        memory,
        gpu,
        timeout_seconds,
        processor,
        max_attempts,
        tags,
        retry_rules,
        depends_on,
        array,
    })
}

/// `array`: `{"size": N, "max_running": K}`.
fn array(v: Value) -> Result<crate::array::ArraySpec, MessageError> {
    let field = "array";
    if !v.is_object() {
        return Err(MessageError::invalid(
            field,
            Problem::WrongType {
                expected: "an object {size, max_running}",
                found: json_type(&v).into(),
            },
        ));
    }
    let spec: crate::array::ArraySpec = serde_json::from_value(v)
        .map_err(|e| MessageError::invalid(field, Problem::Invalid(quote(&e.to_string()))))?;
    spec.validate()
        .map_err(|p| MessageError::invalid(field, p))?;
    Ok(spec)
}

/// `depends_on`: job ids (each `succeeded`), or `{"job_id", "condition"}`
/// objects, checked by [`crate::dependency::validate`].
fn depends_on(v: Value, job_id: &str) -> Result<Vec<crate::dependency::Dependency>, MessageError> {
    use crate::dependency::{Condition, Dependency};
    let field = "depends_on";
    let Value::Array(items) = v else {
        return Err(MessageError::invalid(
            field,
            Problem::WrongType {
                expected: "an array of job ids or {job_id, condition} objects",
                found: json_type(&v).into(),
            },
        ));
    };
    let deps = items
        .into_iter()
        .map(|item| match item {
            Value::String(job_id) => Ok(Dependency::on(job_id, Condition::Succeeded)),
            other => serde_json::from_value(other)
                .map_err(|e| MessageError::invalid(field, Problem::Invalid(quote(&e.to_string())))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    crate::dependency::validate(job_id, &deps)
        .map_err(|why| MessageError::invalid(field, Problem::Invalid(why)))?;
    Ok(deps)
}

/// `retry_rules`: a list of [`crate::retry::RetryRule`] in the grammar
/// [`crate::retry::validate`] checks.
fn retry_rules(v: Value) -> Result<Vec<crate::retry::RetryRule>, MessageError> {
    let field = "retry_rules";
    if !v.is_array() {
        return Err(MessageError::invalid(
            field,
            Problem::WrongType {
                expected: "an array of rules",
                found: json_type(&v).into(),
            },
        ));
    }
    let rules: Vec<crate::retry::RetryRule> = serde_json::from_value(v)
        .map_err(|e| MessageError::invalid(field, Problem::Invalid(quote(&e.to_string()))))?;
    crate::retry::validate(&rules)
        .map_err(|why| MessageError::invalid(field, Problem::Invalid(why)))?;
    Ok(rules)
}

/// Checks a job id: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn validate_job_id(id: &str) -> Result<(), Problem> {
    validate_name(id, lim::JOB_ID_MAX_CHARS)
}

/// Checks a job definition's name: 1 to 128 of `[A-Za-z0-9_-]`.
pub fn validate_definition_name(name: &str) -> Result<(), Problem> {
    validate_name(name, lim::DEFINITION_MAX_CHARS)
}

/// Job ids and definition names: 1 to `max` of `[A-Za-z0-9_-]`.
fn validate_name(s: &str, max: usize) -> Result<(), Problem> {
    let chars = s.chars().count();
    if chars == 0 || chars > max {
        return Err(Problem::Length {
            min: 1,
            max,
            found: chars,
        });
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Problem::Characters {
            allowed: ID_CHARS,
            found: quote(s),
        });
    }
    Ok(())
}

fn take(obj: &mut Map<String, Value>, field: &str) -> Option<Value> {
    // An explicit `null` reads as "not given": JSON writers often emit it
    // for unset optional fields.
    obj.remove(field).filter(|v| !v.is_null())
}

fn string(v: Value, field: &str) -> Result<String, MessageError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(MessageError::invalid(field, wrong_type("a string", &other))),
    }
}

fn integer(v: Value, field: &str, min: u64, max: u64) -> Result<u32, MessageError> {
    let out_of_range = |found: String| Problem::OutOfRange { min, max, found };
    let n = match &v {
        Value::Number(n) => n,
        other => {
            return Err(MessageError::invalid(
                field,
                wrong_type("an integer", other),
            ));
        }
    };
    let found = n.to_string();
    let value = if let Some(u) = n.as_u64() {
        u
    } else if n.is_i64() {
        return Err(MessageError::invalid(field, out_of_range(found)));
    } else {
        return Err(MessageError::invalid(field, wrong_type("an integer", &v)));
    };
    if value < min || value > max {
        return Err(MessageError::invalid(field, out_of_range(found)));
    }
    // Every maximum in `limits::message` fits a u32.
    u32::try_from(value).map_err(|_| MessageError::invalid(field, out_of_range(found)))
}

fn command(v: Value) -> Result<Vec<String>, MessageError> {
    let Value::Array(items) = v else {
        return Err(MessageError::invalid(
            "command",
            wrong_type("an array of strings", &v),
        ));
    };
    if items.is_empty() {
        return Err(MessageError::invalid("command", Problem::Empty));
    }
    if items.len() > lim::COMMAND_MAX_ARGS {
        return Err(MessageError::invalid(
            "command",
            Problem::TooMany {
                found: items.len(),
                limit: lim::COMMAND_MAX_ARGS,
            },
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if s.contains('\0') => {
                Err(MessageError::invalid(format!("command[{i}]"), Problem::Nul))
            }
            Value::String(s) => Ok(s),
            other => Err(MessageError::invalid(
                format!("command[{i}]"),
                wrong_type("a string", &other),
            )),
        })
        .collect()
}

fn environment(v: Value) -> Result<BTreeMap<String, String>, MessageError> {
    let Value::Object(vars) = v else {
        return Err(MessageError::invalid(
            "environment",
            wrong_type("an object of strings", &v),
        ));
    };
    if vars.len() > lim::ENVIRONMENT_MAX_VARS {
        return Err(MessageError::invalid(
            "environment",
            Problem::TooMany {
                found: vars.len(),
                limit: lim::ENVIRONMENT_MAX_VARS,
            },
        ));
    }
    let mut size = 0;
    let mut out = BTreeMap::new();
    for (name, value) in vars {
        let field = format!("environment.{}", quote(&name));
        if !is_env_name(&name) {
            return Err(MessageError::invalid(
                "environment",
                Problem::Characters {
                    allowed: ENV_NAME_CHARS,
                    found: quote(&name),
                },
            ));
        }
        if name.starts_with(lim::RESERVED_ENV_PREFIX) {
            return Err(MessageError::invalid(
                field,
                Problem::Reserved {
                    prefix: lim::RESERVED_ENV_PREFIX,
                },
            ));
        }
        let Value::String(value) = value else {
            return Err(MessageError::invalid(field, wrong_type("a string", &value)));
        };
        if value.contains('\0') {
            return Err(MessageError::invalid(field, Problem::Nul));
        }
        size += name.len() + value.len();
        out.insert(name, value);
    }
    if size > lim::ENVIRONMENT_MAX_BYTES {
        return Err(MessageError::invalid(
            "environment",
            Problem::TooLarge {
                found: size,
                limit: lim::ENVIRONMENT_MAX_BYTES,
            },
        ));
    }
    Ok(out)
}

fn processor(v: Value) -> Result<Processor, MessageError> {
    const ALLOWED: &str = "auto, lambda, ec2, fargate";
    let s = string(v, "processor")?;
    Processor::ALL
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or(MessageError::invalid(
            "processor",
            Problem::NotOneOf {
                allowed: ALLOWED,
                found: quote(&s),
            },
        ))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn wrong_type(expected: &'static str, found: &Value) -> Problem {
    let mut shown = found.to_string();
    if shown.len() > 40 {
        shown = format!("{}…", crate::text::cut(&shown, 40));
    }
    Problem::WrongType {
        expected,
        found: format!("{} {shown}", json_type(found)),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
