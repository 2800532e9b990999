//! The run table: a project's runs filtered, sorted by any column, and paged.
//!
//! Sort specs: `created` (the default, newest first), `name`, `param:NAME`,
//! `metric:NAME` (its last value) or `metric:NAME:last|min|max`, each optionally
//! followed by `:asc` or `:desc`. Runs without the sort column, and metric values
//! that are NaN, come last in either direction; ties go by run id. The cursor is opaque
//! and carries the sort column's value of the last row, so a page never repeats or
//! skips a run that did not change between calls.
//!
//! Param conditions (`ParamCondition`) are `NAME OP VALUE` with OP one of `=`, `!=`,
//! `<`, `<=`, `>`, `>=`: `lr<=0.001`, `optimizer=adam`, `amp=true`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::summary::Stat;
use super::{ParamValue, RunRecord, Status};
use super::{Result, RunError};
use crate::ids::RunId;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

#[derive(Debug, Clone, PartialEq)]
enum Column {
    Created,
    Name,
    Param(String),
    Metric(String, Stat),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    column: Column,
    descending: bool,
    spec: String,
}

impl Default for Sort {
    fn default() -> Self {
        Self {
            column: Column::Created,
            descending: true,
            spec: "created:desc".into(),
        }
    }
}

impl Sort {
    pub fn parse(spec: &str) -> Result<Self> {
        let invalid = || RunError::InvalidSort;
        let (rest, descending) = match spec.rsplit_once(':') {
            Some((rest, "asc")) => (rest, false),
            Some((rest, "desc")) => (rest, true),
            _ => (spec, !matches!(spec, "name")),
        };
        let column = if rest == "created" {
            Column::Created
        } else if rest == "name" {
            Column::Name
        } else if let Some(name) = rest.strip_prefix("param:") {
            Column::Param(name.to_owned())
        } else if let Some(metric) = rest.strip_prefix("metric:") {
            let (name, stat) = match metric.rsplit_once(':') {
                Some((name, "last")) => (name, Stat::Last),
                Some((name, "min")) => (name, Stat::Min),
                Some((name, "max")) => (name, Stat::Max),
                _ => (metric, Stat::Last),
            };
            Column::Metric(name.to_owned(), stat)
        } else {
            return Err(invalid());
        };
        if matches!(&column, Column::Param(n) | Column::Metric(n, _) if n.is_empty()) {
            return Err(invalid());
        }
        Ok(Self {
            column,
            descending,
            spec: spec.to_owned(),
        })
    }

    fn value(&self, run: &RunRecord) -> Option<SortValue> {
        match &self.column {
            Column::Created => Some(SortValue::Time(run.created_at.unix_timestamp_nanos())),
            Column::Name => Some(SortValue::Text(run.name.clone())),
            Column::Param(name) => run.params.get(name).cloned().map(SortValue::Param),
            Column::Metric(name, stat) => run
                .series
                .get(name)
                .and_then(|summary| summary.stat(*stat))
                .filter(|value| !value.is_nan())
                .map(SortValue::Number),
        }
    }

    /// Orders rows: present values by direction, then missing ones; ties by run id.
    fn order(&self, a: &Row, b: &Row) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let by_value = match (&a.value, &b.value) {
            (Some(x), Some(y)) => {
                let ordering = x.cmp(y);
                if self.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_value.then(a.id.cmp(&b.id))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SortValue {
    Time(i128),
    Text(String),
    Param(ParamValue),
    Number(#[serde(with = "crate::floats::plain")] f64),
}

impl SortValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (SortValue::Time(a), SortValue::Time(b)) => a.cmp(b),
            (SortValue::Text(a), SortValue::Text(b)) => a.cmp(b),
            (SortValue::Param(a), SortValue::Param(b)) => a.sort_cmp(b),
            (SortValue::Number(a), SortValue::Number(b)) => a.total_cmp(b),
            // One column gives one kind of value; a cursor of another sort was refused.
            _ => std::cmp::Ordering::Equal,
        }
    }
}

#[derive(Debug)]
struct Row {
    value: Option<SortValue>,
    id: RunId,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    sort: String,
    value: Option<SortValue>,
    id: RunId,
}

impl Cursor {
    fn encode(&self) -> String {
        crate::cursor::encode(self)
    }

    fn decode(text: &str, sort: &Sort) -> Result<Self> {
        let cursor: Cursor = crate::cursor::decode(text)?;
        if cursor.sort != sort.spec {
            return Err(RunError::CursorOfAnotherSort);
        }
        Ok(cursor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One condition on a param: `NAME OP VALUE`, split at the first `=`, `!`, `<` or `>`
/// (so a name holding one of those cannot be filtered on), name and value trimmed.
///
/// The value is typed as a param is: an integer or finite float is a number, `true` or
/// `false` (any case) a boolean, anything else text. A number compares by value with
/// numeric params and a boolean with boolean params; otherwise `=` compares the param's
/// text (as `ParamValue::to_text` prints it) with the value as written, so a param sent
/// as the string `"64"` still matches `batch=64`. `<`, `<=`, `>` and `>=` take a number
/// and keep only runs whose param is a number.
///
/// A run without the param passes `!=` and nothing else: `!=` is exactly the runs `=`
/// leaves out, so `optimizer!=adam` keeps the runs that set no optimizer (they did not
/// use adam either), and a condition and its negation always split the table in two.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamCondition {
    name: String,
    op: Op,
    value: ParamValue,
    /// The value as written, for `=` against a param of another kind.
    text: String,
}

impl ParamCondition {
    pub fn parse(condition: &str) -> Result<Self> {
        let invalid = |why: &str| {
            let shown: String = condition.chars().take(100).collect();
            RunError::InvalidFilter(format!("param condition {shown:?}: {why}"))
        };
        let at = condition
            .find(['=', '!', '<', '>'])
            .ok_or_else(|| invalid("expected NAME, then =, !=, <, <=, > or >=, then a value"))?;
        let (name, rest) = condition.split_at(at);
        let (op, text) = [
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find_map(|(token, op)| rest.strip_prefix(token).map(|text| (op, text)))
        .ok_or_else(|| invalid("the operator is one of =, !=, <, <=, > and >="))?;
        let (name, text) = (name.trim(), text.trim());
        if name.is_empty() {
            return Err(invalid("the param's name is missing"));
        }
        if text.is_empty() {
            return Err(invalid("the value is missing"));
        }
        let value = if text.eq_ignore_ascii_case("true") {
            ParamValue::Bool(true)
        } else if text.eq_ignore_ascii_case("false") {
            ParamValue::Bool(false)
        } else if let Ok(int) = text.parse::<i64>() {
            ParamValue::Int(int)
        } else {
            match text.parse::<f64>() {
                Ok(float) if float.is_finite() => ParamValue::Float(float),
                _ => ParamValue::String(text.to_owned()),
            }
        };
        if !matches!(op, Op::Eq | Op::Ne) && !is_number(&value) {
            return Err(invalid("<, <=, > and >= compare numbers"));
        }
        Ok(Self {
            name: name.to_owned(),
            op,
            value,
            text: text.to_owned(),
        })
    }

    /// Conditions in one text, as the JSON API takes them: separated by `;`, where `\;`
    /// is a `;` inside a condition and `\\` a backslash; empty ones are skipped.
    pub fn parse_list(list: &str) -> Result<Vec<Self>> {
        let mut conditions = Vec::new();
        let mut current = String::new();
        let mut chars = list.chars();
        let mut end = |current: &mut String| -> Result<()> {
            if !current.trim().is_empty() {
                conditions.push(Self::parse(current)?);
            }
            current.clear();
            Ok(())
        };
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped @ ('\\' | ';')) => current.push(escaped),
                    _ => {
                        return Err(RunError::InvalidFilter(
                            "in a list of param conditions a backslash escapes only `;` or \
                             a backslash"
                                .into(),
                        ));
                    }
                },
                ';' => end(&mut current)?,
                c => current.push(c),
            }
        }
        end(&mut current)?;
        Ok(conditions)
    }

    /// One condition written for `parse_list`.
    pub fn escape(condition: &str) -> String {
        condition.replace('\\', "\\\\").replace(';', "\\;")
    }

    fn keeps(&self, run: &RunRecord) -> bool {
        let Some(param) = run.params.get(&self.name) else {
            return self.op == Op::Ne;
        };
        let same_kind = (is_number(param) && is_number(&self.value))
            || matches!(
                (param, &self.value),
                (ParamValue::Bool(_), ParamValue::Bool(_))
            );
        let equal = || {
            if same_kind {
                param.sort_cmp(&self.value).is_eq()
            } else {
                param.to_text() == self.text
            }
        };
        let ordering = || param.sort_cmp(&self.value);
        match self.op {
            Op::Eq => equal(),
            Op::Ne => !equal(),
            Op::Lt => same_kind && ordering().is_lt(),
            Op::Le => same_kind && ordering().is_le(),
            Op::Gt => same_kind && ordering().is_gt(),
            Op::Ge => same_kind && ordering().is_ge(),
        }
    }
}

fn is_number(value: &ParamValue) -> bool {
    matches!(value, ParamValue::Int(_) | ParamValue::Float(_))
}

/// Which runs a table shows.
#[derive(Debug, Default)]
pub struct Filter {
    pub tag: Option<String>,
    pub statuses: Vec<Status>,
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    pub created_after: Option<OffsetDateTime>,
    pub created_before: Option<OffsetDateTime>,
    /// The runs in the trash instead of the others.
    pub trashed: bool,
    /// Every one must hold.
    pub params: Vec<ParamCondition>,
}

impl Filter {
    fn keeps(&self, run: &RunRecord, status: Status) -> bool {
        run.trashed_at.is_some() == self.trashed
            && self.tag.as_ref().is_none_or(|tag| run.tags.contains(tag))
            && (self.statuses.is_empty() || self.statuses.contains(&status))
            && self
                .name
                .as_ref()
                .is_none_or(|needle| run.name.to_lowercase().contains(needle))
            && self.created_after.is_none_or(|t| run.created_at >= t)
            && self.created_before.is_none_or(|t| run.created_at < t)
            && self.params.iter().all(|condition| condition.keeps(run))
    }
}

#[derive(Debug)]
pub struct Page {
    /// Indices into the runs given, in table order.
    pub rows: Vec<usize>,
    pub next_cursor: Option<String>,
    /// Runs that pass the filter, on all pages.
    pub total: usize,
    /// Indices of the runs that pass the filter, on all pages, in the order given.
    pub kept: Vec<usize>,
}

/// One page of the table over `runs`, their statuses read as of `now`.
pub fn page(
    runs: &[RunRecord],
    filter: &Filter,
    sort: &Sort,
    limit: usize,
    cursor: Option<&str>,
    status_of: impl Fn(&RunRecord) -> Status,
) -> Result<Page> {
    let cursor = cursor.map(|text| Cursor::decode(text, sort)).transpose()?;
    let mut rows: Vec<(Row, usize)> = runs
        .iter()
        .enumerate()
        .filter(|(_, run)| filter.keeps(run, status_of(run)))
        .map(|(index, run)| {
            (
                Row {
                    value: sort.value(run),
                    id: run.id,
                },
                index,
            )
        })
        .collect();
    let total = rows.len();
    let kept = rows.iter().map(|&(_, index)| index).collect();
    let start_after = cursor.map(|c| Row {
        value: c.value,
        id: c.id,
    });
    if let Some(after) = &start_after {
        rows.retain(|(row, _)| sort.order(row, after).is_gt());
    }
    let limit = limit.min(rows.len());
    // Only the page needs ordering: select it, then sort those few.
    if limit < rows.len() {
        rows.select_nth_unstable_by(limit, |(a, _), (b, _)| sort.order(a, b));
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    rows.sort_unstable_by(|(a, _), (b, _)| sort.order(a, b));
    let next_cursor = match rows.last() {
        Some((last, _)) if more => Some(
            Cursor {
                sort: sort.spec.clone(),
                value: last.value.clone(),
                id: last.id,
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(Page {
        rows: rows.into_iter().map(|(_, index)| index).collect(),
        next_cursor,
        total,
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ProjectId, UserId};

    fn run_with(params: serde_json::Value) -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "id": RunId::generate(),
            "project_id": ProjectId::generate(),
            "number": 1,
            "name": "run",
            "owner": UserId::generate(),
            "status": "running",
            "created_at": "2026-12-04T12:00:00Z",
            "heartbeat_at": "2026-12-04T12:00:00Z",
            "params": params,
        }))
        .expect("a run record")
    }

    fn keeps(condition: &str, run: &RunRecord) -> bool {
        ParamCondition::parse(condition)
            .unwrap_or_else(|err| panic!("{condition}: {err}"))
            .keeps(run)
    }

    #[test]
    fn each_operator_compares_numbers_by_value() {
        let run = run_with(serde_json::json!({"lr": 0.001, "batch_size": 64}));
        for (condition, kept) in [
            ("lr=0.001", true),
            ("lr=1e-3", true),
            ("lr!=0.001", false),
            ("lr!=0.01", true),
            ("lr<0.01", true),
            ("lr<0.001", false),
            ("lr<=0.001", true),
            ("lr>0.0001", true),
            ("lr>0.001", false),
            ("lr>=0.001", true),
            ("batch_size>=64", true),
            ("batch_size>64", false),
            ("batch_size=64.0", true),
            ("batch_size < 100", true),
            (" batch_size<=63.5 ", false),
        ] {
            assert_eq!(keeps(condition, &run), kept, "{condition}");
        }
    }

    #[test]
    fn text_and_booleans_compare_by_equality_and_a_value_matches_a_param_of_another_kind_by_its_text()
     {
        let run = run_with(serde_json::json!({
            "optimizer": "adam", "amp": true, "batch": "64", "dims": "[1,2]", "path": "a;b=c"
        }));
        for (condition, kept) in [
            ("optimizer=adam", true),
            ("optimizer=Adam", false),
            ("optimizer!=sgd", true),
            ("optimizer!=adam", false),
            ("amp=true", true),
            ("amp=TRUE", true),
            ("amp=false", false),
            ("amp!=false", true),
            // A number against text: equal when the text is the number as written.
            ("batch=64", true),
            ("batch=64.0", false),
            ("batch>=1", false),
            ("optimizer=1", false),
            ("amp=1", false),
            ("dims=[1,2]", true),
            ("path=a;b=c", true),
        ] {
            assert_eq!(keeps(condition, &run), kept, "{condition}");
        }
    }

    #[test]
    fn a_run_without_the_param_passes_only_not_equal() {
        let run = run_with(serde_json::json!({"lr": 0.1}));
        for (condition, kept) in [
            ("momentum=0.9", false),
            ("momentum!=0.9", true),
            ("momentum<1", false),
            ("momentum<=1", false),
            ("momentum>0", false),
            ("momentum>=0", false),
            ("optimizer=adam", false),
            ("optimizer!=adam", true),
        ] {
            assert_eq!(keeps(condition, &run), kept, "{condition}");
        }
    }

    #[test]
    fn names_keep_slashes_and_every_condition_of_a_filter_must_hold() {
        let run = run_with(serde_json::json!({"optimizer/lr": 0.1, "optimizer/name": "sgd"}));
        assert!(keeps("optimizer/lr>0.05", &run));
        let filter = |list: &str| Filter {
            params: ParamCondition::parse_list(list).expect("valid"),
            ..Filter::default()
        };
        assert!(filter("optimizer/lr>0.05;optimizer/name=sgd").keeps(&run, Status::Running));
        assert!(!filter("optimizer/lr>0.05;optimizer/name=adam").keeps(&run, Status::Running));
    }

    #[test]
    fn malformed_conditions_are_refused_as_invalid_filters() {
        for bad in [
            "lr", "=0.1", "lr=", "lr=  ", "lr!0.1", "lr<adam", "lr>=true", "lr>nan", "lr<=inf",
        ] {
            let err = ParamCondition::parse(bad).expect_err(bad);
            assert!(matches!(err, RunError::InvalidFilter(_)), "{bad}: {err:?}");
            assert_eq!(
                crate::error::Coded::code(&err),
                crate::error::ErrorCode::InvalidFilter
            );
        }
    }

    #[test]
    fn a_list_of_conditions_splits_at_semicolons_and_escapes_round_trip() {
        let conditions = ParamCondition::parse_list("lr<0.1; optimizer=adam;;").expect("valid");
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1].name, "optimizer");
        let odd = ["path=a;b\\c", "note!=x\\;y"];
        let joined = odd
            .iter()
            .map(|c| ParamCondition::escape(c))
            .collect::<Vec<_>>()
            .join(";");
        let parsed = ParamCondition::parse_list(&joined).expect("valid");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].text, "a;b\\c");
        assert_eq!(parsed[1].text, "x\\;y");
        assert_eq!(ParamCondition::parse_list("").expect("valid"), vec![]);
        for bad in ["lr<0.1;nonsense", "path=a\\b", "path=a\\"] {
            let err = ParamCondition::parse_list(bad).expect_err(bad);
            assert!(matches!(err, RunError::InvalidFilter(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn sort_specs_parse_with_optional_stat_and_direction() {
        let metric = Sort::parse("metric:val/acc:max:desc").expect("valid");
        assert_eq!(metric.column, Column::Metric("val/acc".into(), Stat::Max));
        assert!(metric.descending);
        let last = Sort::parse("metric:loss:asc").expect("valid");
        assert_eq!(last.column, Column::Metric("loss".into(), Stat::Last));
        assert!(!last.descending);
        assert_eq!(
            Sort::parse("param:optimizer/lr").expect("valid").column,
            Column::Param("optimizer/lr".into())
        );
        assert!(Sort::parse("created").expect("valid").descending);
        assert!(Sort::parse("bogus").is_err());
        assert!(Sort::parse("metric:").is_err());
    }
}
