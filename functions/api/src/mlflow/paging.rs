//! Paging and view types of MLflow's searches.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sextant_domain::error::ErrorCode;
use sextant_edge::error::{ApiError, ApiResult};

use super::filter::{self, Field, OrderBy};

pub const MAX_RUNS_PER_PAGE: usize = 50_000;
pub const MAX_EXPERIMENTS_PER_PAGE: usize = 50_000;
const DEFAULT_PAGE: usize = 1_000;

/// Which of the active and the deleted (trashed) entities a search returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    pub fn parse(text: &str) -> ApiResult<Self> {
        serde_json::from_value(text.into()).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidViewType,
                "view type is ACTIVE_ONLY, DELETED_ONLY or ALL",
            )
        })
    }

    pub fn keeps(self, trashed: bool) -> bool {
        match self {
            ViewType::ActiveOnly => !trashed,
            ViewType::DeletedOnly => trashed,
            ViewType::All => true,
        }
    }
}

pub fn parse_int(text: &str) -> ApiResult<i64> {
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("{text:?} is not an integer"),
        )
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct Token {
    offset: usize,
}

/// One page of rows already in order, and the token of the next page if there is one.
/// Tokens hold an offset, as MLflow's own do: a row added meanwhile may shift a page.
pub fn page<T>(
    mut rows: Vec<T>,
    max_results: Option<i64>,
    token: Option<&str>,
    most: usize,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let limit = match max_results {
        None => DEFAULT_PAGE.min(most),
        Some(n) if n >= 1 && n as u64 <= most as u64 => n as usize,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidMaxResults,
                format!("max_results is 1 to {most}"),
            ));
        }
    };
    let offset = match token.filter(|token| !token.is_empty()) {
        None => 0,
        Some(token) => {
            URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Token>(&bytes).ok())
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::InvalidPageToken, "the page token is invalid")
                })?
                .offset
        }
    };
    let end = offset.saturating_add(limit);
    let next = (end < rows.len()).then(|| {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Token { offset: end }).unwrap_or_default())
    });
    rows.truncate(end);
    let page = rows.split_off(offset.min(rows.len()));
    Ok((page, next))
}

/// Which page of a search a client asked for, and the most a page may hold.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    pub max_results: Option<i64>,
    pub token: Option<&'a str>,
    pub most: usize,
}

/// A search's answer: `rows` (each with its values of the `order_by` keys) sorted by
/// those keys and then by `fallback`, one page of them rendered under `field`, and the
/// next page's token if there is more.
pub fn ordered_page<T>(
    mut rows: Vec<(Vec<Option<Field>>, T)>,
    orders: &[OrderBy],
    fallback: impl Fn(&T, &T) -> Ordering,
    request: PageRequest<'_>,
    field: &str,
    render: impl Fn(&T) -> Value,
) -> ApiResult<Value> {
    rows.sort_by(|(a_values, a), (b_values, b)| {
        orders
            .iter()
            .zip(a_values.iter().zip(b_values))
            .map(|(order, (x, y))| filter::compare(x.as_ref(), y.as_ref(), order.ascending))
            .find(|ordering| ordering.is_ne())
            .unwrap_or_else(|| fallback(a, b))
    });
    let (rows, next) = page(rows, request.max_results, request.token, request.most)?;
    let rendered: Vec<Value> = rows.iter().map(|(_, row)| render(row)).collect();
    let mut answer = json!({ field: rendered });
    if let Some(next) = next {
        answer["next_page_token"] = next.into();
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let rows: Vec<u32> = (0..25).collect();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = page(rows.clone(), Some(10), token.as_deref(), 100).expect("page");
            seen.extend(page);
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, rows);
    }

    #[test]
    fn bad_sizes_and_tokens_are_refused() {
        assert!(page(vec![1], Some(0), None, 10).is_err());
        assert!(page(vec![1], Some(11), None, 10).is_err());
        assert!(page(vec![1], None, Some("garbage!"), 10).is_err());
    }
}
