//! MLflow's search syntax: filters such as
//! `metrics.acc > 0.9 and params.optimizer = 'adam' and tags.`team name` LIKE 'vis%'`
//! and orderings such as `metrics.acc DESC`.
//!
//! A filter is comparisons joined by `AND` (MLflow has no `OR`). A key is an entity
//! prefix (`metric(s)`, `param(s)`/`parameter(s)`, `tag(s)`, `attribute(s)`/`attr`/
//! `run`, `dataset(s)`; none means attribute) and a name, bare or quoted with backticks
//! or double quotes. Values are numbers, strings in single or double quotes, or a
//! parenthesised list of strings for `IN`. What each search allows per key (which
//! attributes exist, whether a key compares as number or text) is up to its caller.

use std::cmp::Ordering;

use sextant_domain::error::ErrorCode;
use sextant_edge::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub entity: Entity,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    Number(f64),
    Text(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub key: Key,
    pub op: Op,
    pub operand: Operand,
}

/// A value a key has on one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub key: Key,
    pub ascending: bool,
}

pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidFilter, message)
}

/// The longest filter text accepted. Real filters are a few comparisons; the bound
/// keeps the cost of evaluating one against every run in a project (LIKE is linear in
/// its pattern's length per character of value) small and predictable.
pub const MAX_FILTER_BYTES: usize = 4096;

/// Parses a filter; an empty one keeps everything.
pub fn parse(filter: &str) -> ApiResult<Vec<Clause>> {
    if filter.len() > MAX_FILTER_BYTES {
        return Err(invalid(format!(
            "a filter holds at most {MAX_FILTER_BYTES} bytes; this one holds {}",
            filter.len()
        )));
    }
    let mut scanner = Scanner::new(filter);
    let mut clauses = Vec::new();
    if scanner.at_end() {
        return Ok(clauses);
    }
    loop {
        clauses.push(scanner.clause()?);
        if scanner.at_end() {
            return Ok(clauses);
        }
        match scanner.word().to_ascii_uppercase().as_str() {
            "AND" => {}
            "OR" => return Err(invalid("MLflow filters join comparisons with AND only")),
            other => {
                return Err(invalid(format!(
                    "expected AND between comparisons, found {other:?}"
                )));
            }
        }
    }
}

/// Parses one `order_by` entry: a key, then `ASC` (the default) or `DESC`.
pub fn parse_order(text: &str) -> ApiResult<OrderBy> {
    let mut scanner = Scanner::new(text);
    let key = scanner.key()?;
    let ascending = match scanner.word().to_ascii_uppercase().as_str() {
        "" | "ASC" => true,
        "DESC" => false,
        other => {
            return Err(invalid(format!(
                "order_by ends in ASC or DESC, not {other:?}"
            )));
        }
    };
    if !scanner.at_end() {
        return Err(invalid(format!("unexpected text in order_by {text:?}")));
    }
    Ok(OrderBy { key, ascending })
}

impl Clause {
    /// Whether a row whose key has `field` (or lacks it) passes. A comparison of a
    /// number with text, or one a kind of value does not support, never passes.
    pub fn matches(&self, field: Option<&Field>) -> bool {
        match (self.op, field) {
            (Op::IsNull, field) => field.is_none(),
            (Op::IsNotNull, field) => field.is_some(),
            (_, None) => false,
            (op, Some(Field::Number(value))) => {
                let Operand::Number(operand) = self.operand else {
                    return false;
                };
                match op {
                    Op::Eq => *value == operand,
                    Op::Ne => *value != operand,
                    Op::Lt => *value < operand,
                    Op::Le => *value <= operand,
                    Op::Gt => *value > operand,
                    Op::Ge => *value >= operand,
                    _ => false,
                }
            }
            (op, Some(Field::Text(value))) => match (&self.operand, op) {
                (Operand::Text(operand), Op::Eq) => value == operand,
                (Operand::Text(operand), Op::Ne) => value != operand,
                (Operand::Text(operand), Op::Lt) => value < operand,
                (Operand::Text(operand), Op::Le) => value <= operand,
                (Operand::Text(operand), Op::Gt) => value > operand,
                (Operand::Text(operand), Op::Ge) => value >= operand,
                (Operand::Text(pattern), Op::Like) => like(value, pattern, false),
                (Operand::Text(pattern), Op::ILike) => like(value, pattern, true),
                (Operand::List(list), Op::In) => list.contains(value),
                (Operand::List(list), Op::NotIn) => !list.contains(value),
                _ => false,
            },
        }
    }

    /// Refuses comparisons that cannot apply to a key compared as numbers (`numeric`)
    /// or as text, so a mistyped filter is an error rather than an empty result.
    pub fn check_kind(&self, numeric: bool) -> ApiResult<()> {
        let fits = match (&self.operand, self.op) {
            (Operand::None, _) => true,
            (Operand::Number(_), op) => numeric && !matches!(op, Op::Like | Op::ILike),
            (Operand::Text(_), _) => !numeric,
            (Operand::List(_), _) => !numeric,
        };
        if fits {
            Ok(())
        } else if numeric {
            Err(invalid(format!(
                "{} compares as a number, with =, !=, <, <=, > or >=",
                self.key.name
            )))
        } else {
            Err(invalid(format!(
                "{} compares as text: give the value in quotes",
                self.key.name
            )))
        }
    }
}

/// Orders two rows' values of a key: numbers below text, and a row without the key
/// after every row with it, whichever the direction.
pub fn compare(a: Option<&Field>, b: Option<&Field>, ascending: bool) -> Ordering {
    let directed = |ordering: Ordering| {
        if ascending {
            ordering
        } else {
            ordering.reverse()
        }
    };
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(Field::Number(x)), Some(Field::Number(y))) => directed(x.total_cmp(y)),
        (Some(Field::Text(x)), Some(Field::Text(y))) => directed(x.cmp(y)),
        (Some(Field::Number(_)), Some(Field::Text(_))) => directed(Ordering::Less),
        (Some(Field::Text(_)), Some(Field::Number(_))) => directed(Ordering::Greater),
    }
}

/// SQL's LIKE: `%` matches any run of characters, `_` any one. One pass over the
/// value with two rows of the pattern's length, so the time is linear in the value
/// for a pattern of bounded length (filters are at most `MAX_FILTER_BYTES`) and no
/// pattern can make it backtrack.
fn like(value: &str, pattern: &str, ignore_case: bool) -> bool {
    let fold = |text: &str| -> Vec<char> {
        if ignore_case {
            text.to_lowercase().chars().collect()
        } else {
            text.chars().collect()
        }
    };
    let (value, pattern) = (fold(value), fold(pattern));
    // matched[j]: whether the value so far matches the first j pattern characters.
    let mut matched = vec![false; pattern.len() + 1];
    let mut next = vec![false; pattern.len() + 1];
    matched[0] = true;
    for j in 1..=pattern.len() {
        matched[j] = matched[j - 1] && pattern[j - 1] == '%';
    }
    for c in value {
        next[0] = false;
        for j in 1..=pattern.len() {
            next[j] = match pattern[j - 1] {
                '%' => next[j - 1] || matched[j],
                '_' => matched[j - 1],
                p => matched[j - 1] && p == c,
            };
        }
        std::mem::swap(&mut matched, &mut next);
    }
    matched[pattern.len()]
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn at_end(&mut self) -> bool {
        self.skip_space();
        self.rest().is_empty()
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.rest().chars().next()
    }

    /// A run of letters (a keyword); empty if none.
    fn word(&mut self) -> &'a str {
        self.skip_space();
        let rest = self.rest();
        let len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    /// A bare name: up to whitespace, a quote, an operator or a parenthesis.
    fn bare(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest
            .find(|c: char| c.is_whitespace() || "=!<>(),'\"`".contains(c))
            .unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    /// Text between quotes; a doubled quote inside stands for one.
    fn quoted(&mut self, quote: char) -> ApiResult<String> {
        self.at += quote.len_utf8();
        let mut text = String::new();
        let mut chars = self.rest().char_indices().peekable();
        while let Some((offset, c)) = chars.next() {
            if c == quote {
                if chars.peek().is_some_and(|&(_, next)| next == quote) {
                    chars.next();
                    text.push(quote);
                    continue;
                }
                self.at += offset + c.len_utf8();
                return Ok(text);
            }
            text.push(c);
        }
        Err(invalid(format!("a quote {quote} is never closed")))
    }

    fn key(&mut self) -> ApiResult<Key> {
        self.skip_space();
        let start = self.at;
        let prefix = self
            .rest()
            .find(|c: char| c == '.' || c.is_whitespace() || "=!<>(),'\"`".contains(c))
            .filter(|&end| self.rest()[end..].starts_with('.'))
            .map(|end| self.rest()[..end].to_ascii_lowercase());
        let entity = match prefix.as_deref() {
            Some("metric" | "metrics") => Some(Entity::Metric),
            Some("param" | "params" | "parameter" | "parameters") => Some(Entity::Param),
            Some("tag" | "tags") => Some(Entity::Tag),
            Some("attribute" | "attributes" | "attr" | "run") => Some(Entity::Attribute),
            Some("dataset" | "datasets") => Some(Entity::Dataset),
            _ => None,
        };
        if let (Some(_), Some(prefix)) = (entity, &prefix) {
            self.at += prefix.len() + 1;
        }
        let name = match self.rest().chars().next() {
            Some(quote @ ('`' | '"')) => self.quoted(quote)?,
            _ => self.bare().to_owned(),
        };
        if name.is_empty() {
            return Err(invalid(format!(
                "expected a key such as metrics.acc at {:?}",
                &self.text[start..]
            )));
        }
        Ok(Key {
            entity: entity.unwrap_or(Entity::Attribute),
            name,
        })
    }

    fn op(&mut self) -> ApiResult<Op> {
        self.skip_space();
        let rest = self.rest();
        for (symbol, op) in [
            ("!=", Op::Ne),
            ("<>", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if rest.starts_with(symbol) {
                self.at += symbol.len();
                return Ok(op);
            }
        }
        let word = self.word().to_ascii_uppercase();
        Ok(match word.as_str() {
            "LIKE" => Op::Like,
            "ILIKE" => Op::ILike,
            "IN" => Op::In,
            "NOT" if self.word().eq_ignore_ascii_case("IN") => Op::NotIn,
            "IS" => match self.word().to_ascii_uppercase().as_str() {
                "NULL" => Op::IsNull,
                "NOT" if self.word().eq_ignore_ascii_case("NULL") => Op::IsNotNull,
                _ => return Err(invalid("IS is followed by NULL or NOT NULL")),
            },
            _ => {
                return Err(invalid(format!(
                    "expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL) at {rest:?}"
                )));
            }
        })
    }

    fn value(&mut self) -> ApiResult<Operand> {
        match self.peek() {
            Some(quote @ ('\'' | '"')) => Ok(Operand::Text(self.quoted(quote)?)),
            Some('(') => {
                self.at += 1;
                let mut list = Vec::new();
                loop {
                    match self.peek() {
                        Some(quote @ ('\'' | '"')) => list.push(self.quoted(quote)?),
                        _ => return Err(invalid("IN takes a list of quoted strings")),
                    }
                    match self.peek() {
                        Some(',') => self.at += 1,
                        Some(')') => {
                            self.at += 1;
                            return Ok(Operand::List(list));
                        }
                        _ => return Err(invalid("a list is closed with )")),
                    }
                }
            }
            _ => {
                let text = self.bare();
                text.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .map(Operand::Number)
                    .ok_or_else(|| {
                        invalid(format!(
                            "expected a number or a quoted string, found {text:?}"
                        ))
                    })
            }
        }
    }

    fn clause(&mut self) -> ApiResult<Clause> {
        let key = self.key()?;
        let op = self.op()?;
        let operand = match op {
            Op::IsNull | Op::IsNotNull => Operand::None,
            _ => self.value()?,
        };
        let fits = match op {
            Op::In | Op::NotIn => matches!(operand, Operand::List(_)),
            Op::IsNull | Op::IsNotNull => true,
            _ => !matches!(operand, Operand::List(_)),
        };
        if !fits {
            return Err(invalid(
                "IN and NOT IN take a list; other comparisons one value",
            ));
        }
        Ok(Clause { key, op, operand })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(entity: Entity, name: &str) -> Key {
        Key {
            entity,
            name: name.into(),
        }
    }

    #[test]
    fn a_filter_of_every_kind_of_key_parses() {
        let clauses = parse(
            "metrics.acc > 0.9 and params.optimizer = 'adam' AND tags.`team name` LIKE 'vis%' \
             and attributes.status != \"FAILED\" and run_name ILIKE '%Base%' \
             and attribute.run_id IN ('a', 'b') and tags.note IS NOT NULL \
             and metrics.\"val loss\" <= -1e-3",
        )
        .expect("valid");
        let keys: Vec<_> = clauses.iter().map(|c| (c.key.clone(), c.op)).collect();
        assert_eq!(
            keys,
            [
                (key(Entity::Metric, "acc"), Op::Gt),
                (key(Entity::Param, "optimizer"), Op::Eq),
                (key(Entity::Tag, "team name"), Op::Like),
                (key(Entity::Attribute, "status"), Op::Ne),
                (key(Entity::Attribute, "run_name"), Op::ILike),
                (key(Entity::Attribute, "run_id"), Op::In),
                (key(Entity::Tag, "note"), Op::IsNotNull),
                (key(Entity::Metric, "val loss"), Op::Le),
            ]
        );
        assert_eq!(clauses[0].operand, Operand::Number(0.9));
        assert_eq!(
            clauses[5].operand,
            Operand::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(clauses[7].operand, Operand::Number(-1e-3));
    }

    #[test]
    fn keys_with_slashes_and_quotes_inside_values_parse() {
        let clauses = parse("metrics.train/loss < 1 and params.name = 'it''s'").expect("valid");
        assert_eq!(clauses[0].key, key(Entity::Metric, "train/loss"));
        assert_eq!(clauses[1].operand, Operand::Text("it's".into()));
    }

    #[test]
    fn malformed_filters_are_refused_with_a_message() {
        for bad in [
            "metrics.acc",
            "metrics.acc > ",
            "metrics.acc > 1 or metrics.acc < 0",
            "params.x = 'open",
            "metrics.acc ~ 1",
            "params.x IN 'a'",
            "tags.x = ('a')",
            "metrics.acc > 1 metrics.loss < 2",
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.code(), ErrorCode::InvalidFilter, "{bad}");
        }
        assert!(parse("  ").expect("empty").is_empty());
    }

    #[test]
    fn comparisons_match_as_sql_would() {
        let clause = |text: &str| parse(text).expect("valid").remove(0);
        let number = Field::Number(0.95);
        assert!(clause("metrics.acc > 0.9").matches(Some(&number)));
        assert!(!clause("metrics.acc > 0.9").matches(None));
        assert!(clause("metrics.acc IS NULL").matches(None));
        let text = Field::Text("ResNet-50".into());
        assert!(clause("tags.m LIKE 'Res%'").matches(Some(&text)));
        assert!(!clause("tags.m LIKE 'res%'").matches(Some(&text)));
        assert!(clause("tags.m ILIKE 'res%-5_'").matches(Some(&text)));
        assert!(clause("tags.m NOT IN ('a', 'b')").matches(Some(&text)));
        assert!(!clause("tags.m = 'ResNet'").matches(Some(&text)));
        assert!(!clause("tags.m = 1").matches(Some(&text)));
    }

    #[test]
    fn order_by_takes_a_key_and_a_direction() {
        assert_eq!(
            parse_order("metrics.`val acc` DESC").expect("valid"),
            OrderBy {
                key: key(Entity::Metric, "val acc"),
                ascending: false
            }
        );
        assert!(parse_order("start_time").expect("valid").ascending);
        assert!(parse_order("start_time sideways").is_err());
    }

    #[test]
    fn rows_without_the_key_sort_last_both_ways() {
        let one = Field::Number(1.0);
        assert_eq!(compare(None, Some(&one), true), Ordering::Greater);
        assert_eq!(compare(None, Some(&one), false), Ordering::Greater);
    }
}
