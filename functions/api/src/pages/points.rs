//! The points the pages' interactive charts draw (`static/charts.js`): several lines
//! at once, each a numeric series of a run, downsampled to what the chart has pixels
//! for (every bucket's extremes kept, as `GET /v1/runs/{run}/series/{name}?max_points=`
//! answers), a step range of them when a chart zooms in, or only the points after the
//! last step a live chart shows.
//!
//! Read with the page's session (`GET /points`, any run of the member's team) or a
//! share's token (`GET /r/{token}/points`, the shared run's series and nothing else);
//! the JSON API's bearer tokens are not taken here, as on every page.
//!
//! Each line is named `RUN:AFTER:SERIES`: the run's id, the last step the chart already
//! has (empty for none) and the series' name, which may hold `:` and `/`. Run ids and
//! steps hold no `:`, so the first two split it.
//!
//! The answer is JSON made for the chart, compact because a workspace reads hundreds of
//! lines: a value that is exactly a 32-bit float (what most training code logs) is
//! written in float32's shortest form, a whole number as an integer, others in full; non-finite values are the
//! strings `NaN`, `Infinity`, `-Infinity` as in the API; wall-clock times, asked for
//! with `time=true`, are milliseconds after the line's first point (`t0`, Unix seconds).
//!
//! A series in millionths of a step (`StepUnit::Micro`, Neptune's fractional steps)
//! answers its steps as stored and says so (`step_unit`); the chart draws them divided.
//! `from` and `to` are whole steps as drawn: for such a series they cover every point
//! from the start of step `from` to the end of step `to`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::floats::JsonF64;
use sextant_domain::ids::RunId;
use sextant_domain::runs::summary::{SeriesKind, StepUnit};
use sextant_domain::runs::{self, RunRecord, Status};
use sextant_domain::series::{MAX_DOWNSAMPLED_POINTS, StepRange};
use sextant_domain::tenancy::Tenant;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::ClientAddr;
use sextant_edge::state::AppState;

use super::security::SignedIn;
use crate::runs::{Shape, numeric_points};
use crate::shares::keep_private;

/// Lines one request reads at most: a workspace chart draws one a run, up to
/// `workspace::MAX_RUNS` of them.
pub const MAX_LINES: usize = 100;
/// Points one request answers at most, over all its lines (lines × `max_points`): its
/// JSON stays well under the 6 MB a Lambda function may answer.
pub const MAX_POINTS_IN_ALL: usize = 200_000;
/// Points a line is downsampled to when the chart does not say.
const DEFAULT_POINTS: usize = 1_000;
/// Series read at once.
const READS_AT_ONCE: usize = 8;

/// One line a chart asks for.
#[derive(Debug, Clone, PartialEq)]
struct LineSpec {
    run: RunId,
    after: Option<i64>,
    series: String,
}

/// What a chart asks for: its lines and how to read them.
#[derive(Debug, PartialEq)]
struct PointsQuery {
    lines: Vec<LineSpec>,
    from: Option<i64>,
    to: Option<i64>,
    max_points: usize,
    time: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, message)
}

impl PointsQuery {
    fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let mut query = Self {
            lines: Vec::new(),
            from: None,
            to: None,
            max_points: DEFAULT_POINTS,
            time: false,
        };
        let step = |key: &str, value: &str| {
            value
                .parse::<i64>()
                .map_err(|_| invalid(format!("{key} is a step (a whole number)")))
        };
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "line" => query.lines.push(LineSpec::parse(&value)?),
                "from" => query.from = Some(step("from", &value)?),
                "to" => query.to = Some(step("to", &value)?),
                "max_points" => {
                    query.max_points = value
                        .parse()
                        .ok()
                        .filter(|max| (2..=MAX_DOWNSAMPLED_POINTS).contains(max))
                        .ok_or_else(|| {
                            ApiError::new(
                                ErrorCode::InvalidMaxPoints,
                                format!("max_points is 2 to {MAX_DOWNSAMPLED_POINTS}"),
                            )
                        })?
                }
                "time" => query.time = value == "true",
                other => return Err(invalid(format!("unknown parameter {other:?}"))),
            }
        }
        if query.lines.is_empty() || query.lines.len() > MAX_LINES {
            return Err(invalid(format!("ask for 1 to {MAX_LINES} lines")));
        }
        if query.lines.len() * query.max_points > MAX_POINTS_IN_ALL {
            return Err(ApiError::new(
                ErrorCode::InvalidMaxPoints,
                format!("ask for at most {MAX_POINTS_IN_ALL} points in all (lines × max_points)"),
            ));
        }
        Ok(query)
    }
}

impl LineSpec {
    fn parse(text: &str) -> ApiResult<Self> {
        let mut parts = text.splitn(3, ':');
        let (Some(run), Some(after), Some(series)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("a line is RUN:AFTER:SERIES"));
        };
        let after = match after {
            "" => None,
            step => Some(
                step.parse()
                    .map_err(|_| invalid("a line's AFTER is a step or empty"))?,
            ),
        };
        Ok(Self {
            run: runs::parse_id(run).map_err(Error::from)?,
            after,
            series: series.to_owned(),
        })
    }
}

/// One line as the chart draws it.
#[derive(Debug, Serialize)]
struct LinePoints {
    run: String,
    series: String,
    /// The run's status now, so a live chart knows when to stop asking.
    status: Status,
    /// When the run started (Unix seconds), for the x-axis "time since start".
    started: f64,
    /// What `steps` count: `micro` for millionths of a step.
    step_unit: StepUnit,
    steps: Vec<i64>,
    values: ChartValues,
    #[serde(skip_serializing_if = "Option::is_none")]
    t0: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    times: Option<Vec<i64>>,
    downsampled: bool,
}

#[derive(Debug, Serialize)]
struct PointsAnswer {
    lines: Vec<LinePoints>,
}

/// Below 2^53 every whole f64 is an i64 and back, and JavaScript reads it exactly.
const INTEGERS_EXACT: f64 = 9_007_199_254_740_992.0;

/// Values written as short as they can be without changing them: see the module's doc.
#[derive(Debug)]
struct ChartValues(Vec<f64>);

impl Serialize for ChartValues {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for &value in &self.0 {
            let narrow = value as f32;
            if value.fract() == 0.0 && value.abs() < INTEGERS_EXACT {
                seq.serialize_element(&(value as i64))?;
            } else if value.is_finite() && f64::from(narrow) == value {
                seq.serialize_element(&narrow)?;
            } else {
                seq.serialize_element(&JsonF64(value))?;
            }
        }
        seq.end()
    }
}

/// Reads every line of `query` from runs that `allowed` lets through (by id), each run
/// loaded once; a run that is not there, or not allowed, is a 404 for the whole read.
async fn read_lines(
    state: &AppState,
    tenant: &Tenant,
    query: &PointsQuery,
    known: Option<&RunRecord>,
) -> ApiResult<PointsAnswer> {
    let mut records: HashMap<RunId, RunRecord> = HashMap::new();
    for line in &query.lines {
        if records.contains_key(&line.run) {
            continue;
        }
        let record = match known {
            Some(known) if known.id == line.run => known.clone(),
            Some(_) => return Err(Error::not_found("run").into()),
            None => {
                runs::load(&state.store, tenant, line.run)
                    .await
                    .map_err(Error::from)?
                    .record
            }
        };
        records.insert(line.run, record);
    }
    let reads: Vec<_> = query
        .lines
        .iter()
        .map(|line| read_line(state, tenant, query, line, &records[&line.run]))
        .collect();
    let lines = futures::stream::iter(reads)
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(PointsAnswer { lines })
}

/// One line of `query`, of the run `record`.
async fn read_line(
    state: &AppState,
    tenant: &Tenant,
    query: &PointsQuery,
    line: &LineSpec,
    record: &RunRecord,
) -> ApiResult<LinePoints> {
    let step_unit = match record.series.get(&line.series) {
        Some(summary) if summary.kind == SeriesKind::Numeric => summary.step_unit,
        _ => return Err(Error::not_found("series").into()),
    };
    let range = StepRange {
        from: query.from.map(|from| step_unit.first_of(from)),
        to: query.to.map(|to| step_unit.last_of(to)),
        after: line.after,
    };
    // A live chart's tail is nearly always short; it is downsampled too, so a run
    // logging thousands of steps a second does not flood the page.
    let read = numeric_points(
        state,
        tenant,
        record,
        &line.series,
        range,
        Shape::Downsampled {
            max_points: query.max_points,
        },
    )
    .await?;
    let points = read.points;
    let t0 = points.timestamps.first().copied().filter(|_| query.time);
    Ok(LinePoints {
        run: line.run.to_string(),
        series: line.series.clone(),
        status: record.status_at(state.now(), state.settings.heartbeat_timeout),
        started: record.created_at.unix_timestamp_nanos() as f64 / 1e9,
        step_unit,
        steps: points.steps,
        values: ChartValues(points.values),
        times: t0.map(|t0| millis_after(t0, &points.timestamps)),
        t0,
        downsampled: read.downsampled,
    })
}

fn millis_after(t0: f64, timestamps: &[f64]) -> Vec<i64> {
    timestamps
        .iter()
        .map(|t| ((t - t0) * 1000.0).round() as i64)
        .collect()
}

/// `GET /points?line=RUN:AFTER:SERIES&...`: lines of the member's team's runs.
pub async fn team(SignedIn(page, user): SignedIn, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let query = PointsQuery::parse(raw.as_deref())?;
    let answer = read_lines(&page.state, &user.caller.tenant, &query, None).await?;
    Ok(Json(answer).into_response())
}

/// `GET /r/{token}/points?...`: lines of the shared run only.
pub async fn shared(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let answer = async {
        let query = PointsQuery::parse(raw.as_deref())?;
        let shared = crate::shares::open(&state, &token, client).await?;
        read_lines(&state, &shared.tenant, &query, Some(&shared.run)).await
    }
    .await;
    keep_private(match answer {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => err.into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_splits_at_its_first_two_colons_so_series_names_keep_theirs() {
        let run = RunId::generate();
        let line = LineSpec::parse(&format!("{run}:41:eval/top:1")).expect("a line");
        assert_eq!(
            line,
            LineSpec {
                run,
                after: Some(41),
                series: "eval/top:1".into()
            }
        );
        let line = LineSpec::parse(&format!("{run}::train/loss")).expect("a line");
        assert_eq!(line.after, None);
        assert!(LineSpec::parse("train/loss").is_err());
        assert!(LineSpec::parse(&format!("{run}:x:loss")).is_err());
        assert!(LineSpec::parse("nope::loss").is_err());
    }

    #[test]
    fn a_query_needs_lines_and_sane_bounds() {
        let run = RunId::generate();
        assert!(PointsQuery::parse(None).is_err());
        let ok = PointsQuery::parse(Some(&format!(
            "line={run}::a&line={run}:7:b&from=3&to=9&max_points=300&time=true"
        )))
        .expect("a query");
        assert_eq!(
            (ok.from, ok.to, ok.max_points, ok.time),
            (Some(3), Some(9), 300, true)
        );
        assert_eq!(ok.lines.len(), 2);
        let at_the_bound = format!("line={run}::a&line={run}::b&max_points=100000");
        assert!(PointsQuery::parse(Some(&at_the_bound)).is_ok());
        for bad in [
            format!("line={run}::a&max_points=1"),
            format!("line={run}::a&from=x"),
            format!("line={run}::a&colour=red"),
            format!("line={run}::a&line={run}::b&line={run}::c&max_points=100000"),
            (0..=MAX_LINES)
                .map(|_| format!("line={run}::a"))
                .collect::<Vec<_>>()
                .join("&"),
        ] {
            assert!(PointsQuery::parse(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn float32_values_are_written_short_and_others_in_full() {
        let values = ChartValues(vec![
            f64::from(0.1f32),
            0.1,
            f64::NAN,
            f64::NEG_INFINITY,
            3.0,
        ]);
        assert_eq!(
            serde_json::to_string(&values).unwrap(),
            r#"[0.1,0.1,"NaN","-Infinity",3]"#
        );
        let third = ChartValues(vec![1.0 / 3.0]);
        assert_eq!(
            serde_json::to_string(&third).unwrap(),
            "[0.3333333333333333]"
        );
    }
}
