//! A job record's history: how each attempt ended, as the item keeps it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use berth_core::Route;

use super::{AttemptEnd, n, s};

/// A history entry as the item holds it.
pub(super) fn history_value(end: &AttemptEnd) -> AttributeValue {
    let mut m = HashMap::from([
        ("launch".to_owned(), n(end.launch)),
        ("outcome".to_owned(), s(&end.outcome)),
        ("at".to_owned(), n(end.at)),
    ]);
    let optional = [
        ("route", end.route.map(|r| s(r.as_str()))),
        ("id", end.id.as_deref().map(s)),
        ("reason", end.reason.as_deref().map(s)),
        ("exit_code", end.exit_code.map(n)),
    ];
    m.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
    );
    AttributeValue::M(m)
}

/// A history entry read from the item.
pub(super) fn history_entry(v: &AttributeValue) -> Option<AttemptEnd> {
    let m = v.as_m().ok()?;
    let text = |k: &str| m.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    Some(AttemptEnd {
        launch: num("launch").and_then(|v| u32::try_from(v).ok())?,
        route: text("route").and_then(|r| Route::parse(&r)),
        id: text("id"),
        outcome: text("outcome")?,
        reason: text("reason"),
        exit_code: num("exit_code").and_then(|v| i32::try_from(v).ok()),
        at: num("at").unwrap_or(0),
    })
}
