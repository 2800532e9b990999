//! The run table: a project's runs filtered, sorted by any column, and paged.
//!
//! Sort specs: `created` (the default, newest first), `name`, `param:NAME`,
//! `metric:NAME` (its last value) or `metric:NAME:last|min|max`, each optionally
//! followed by `:asc` or `:desc`. Runs without the sort column, and metric values
//! that are NaN, come last in either direction; ties go by run id. The cursor is opaque
//! and carries the sort column's value of the last row, so a page never repeats or
//! skips a run that did not change between calls.

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
