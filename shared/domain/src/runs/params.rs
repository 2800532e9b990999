//! Run parameters: typed values under flat `a/b/c` names.
//!
//! Limits (a 400 `invalid_params` names the one broken):
//! - a name is 1 to 250 bytes without control characters; nested objects flatten into
//!   names joined by `/`, so `{"optimizer": {"lr": 0.1}}` is `optimizer/lr`;
//! - a value is a boolean, an integer (64-bit), a finite float or a string of at most
//!   6,000 bytes; an array is kept as its compact JSON text; `null` leaves the name
//!   unset (and in a PATCH removes it);
//! - a run has at most 1,000 parameters taking at most 64 KiB in all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Result, RunError};

pub const MAX_NAME_BYTES: usize = 250;
pub const MAX_STRING_BYTES: usize = 6_000;
pub const MAX_PARAMS: usize = 1_000;
pub const MAX_TOTAL_BYTES: usize = 64 * 1024;

/// A parameter's value: a boolean, a 64-bit integer, a finite float or a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

impl ParamValue {
    /// Orders values for sorting runs: numbers by value (integers and floats together),
    /// then booleans, then strings.
    pub fn sort_cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn rank(value: &ParamValue) -> u8 {
            match value {
                ParamValue::Int(_) | ParamValue::Float(_) => 0,
                ParamValue::Bool(_) => 1,
                ParamValue::String(_) => 2,
            }
        }
        match (self, other) {
            (ParamValue::Bool(a), ParamValue::Bool(b)) => a.cmp(b),
            (ParamValue::String(a), ParamValue::String(b)) => a.cmp(b),
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => rank(a).cmp(&rank(b)),
            },
        }
    }

    /// The value as text, the way MLflow holds every parameter: numbers and booleans as
    /// Python prints them (`0.001`, `1e-05`, `True`), since MLflow's clients are Python.
    pub fn to_text(&self) -> String {
        match self {
            ParamValue::Bool(true) => "True".into(),
            ParamValue::Bool(false) => "False".into(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) => python_float_repr(*f),
            ParamValue::String(s) => s.clone(),
        }
    }

    /// A parameter sent as text (MLflow's only kind): a number or boolean when the text
    /// is exactly how that value prints, so `lr` sorts by value in the run table and
    /// reads back as the same text; any other text stays text.
    pub fn from_text(text: &str) -> Self {
        let typed = match text {
            "True" => Some(ParamValue::Bool(true)),
            "False" => Some(ParamValue::Bool(false)),
            _ => text.parse::<i64>().map(ParamValue::Int).ok().or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(ParamValue::Float)
            }),
        };
        typed
            .filter(|value| value.to_text() == text)
            .unwrap_or_else(|| ParamValue::String(text.to_owned()))
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Int(i) => Some(*i as f64),
            ParamValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            ParamValue::String(s) => s.len() + 2,
            _ => 8,
        }
    }
}

fn invalid(message: String) -> RunError {
    RunError::InvalidParams(message)
}

/// Flattens a JSON object of parameters. `None` entries are names set to `null`.
pub fn flatten(
    object: &serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, Option<ParamValue>>> {
    let mut flat = BTreeMap::new();
    flatten_into(&mut flat, "", object)?;
    Ok(flat)
}

fn flatten_into(
    flat: &mut BTreeMap<String, Option<ParamValue>>,
    prefix: &str,
    object: &serde_json::Map<String, Value>,
) -> Result<()> {
    for (key, value) in object {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}/{key}")
        };
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
            return Err(invalid(format!(
                "parameter names are 1 to {MAX_NAME_BYTES} bytes without control characters: {:?}",
                truncate(&name)
            )));
        }
        let param = match value {
            Value::Object(inner) => {
                flatten_into(flat, &name, inner)?;
                continue;
            }
            Value::Null => None,
            Value::Bool(b) => Some(ParamValue::Bool(*b)),
            Value::Number(number) => Some(match number.as_i64() {
                Some(i) => ParamValue::Int(i),
                None => ParamValue::Float(
                    number
                        .as_f64()
                        .ok_or_else(|| invalid(format!("parameter {name:?} is out of range")))?,
                ),
            }),
            Value::String(s) => Some(ParamValue::String(s.clone())),
            Value::Array(_) => Some(ParamValue::String(value.to_string())),
        };
        if let Some(ParamValue::String(s)) = &param
            && s.len() > MAX_STRING_BYTES
        {
            return Err(invalid(format!(
                "parameter {name:?} is longer than {MAX_STRING_BYTES} bytes"
            )));
        }
        if flat.insert(name.clone(), param).is_some() {
            return Err(invalid(format!("parameter {name:?} is given twice")));
        }
    }
    Ok(())
}

/// Applies flattened updates (a `None` removes the name) and checks the result's limits.
pub fn apply(
    params: &mut BTreeMap<String, ParamValue>,
    updates: BTreeMap<String, Option<ParamValue>>,
) -> Result<()> {
    for (name, value) in updates {
        match value {
            Some(value) => params.insert(name, value),
            None => params.remove(&name),
        };
    }
    if params.len() > MAX_PARAMS {
        return Err(invalid(format!(
            "a run has at most {MAX_PARAMS} parameters"
        )));
    }
    let total: usize = params
        .iter()
        .map(|(name, value)| name.len() + value.encoded_len())
        .sum();
    if total > MAX_TOTAL_BYTES {
        return Err(invalid(format!(
            "a run's parameters take at most {MAX_TOTAL_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Python's `repr` of a float: the shortest digits that read back as the same value,
/// positional from 1e-4 up to 1e16 (always with a fraction, `3.0`), scientific with a
/// signed two-digit exponent outside that (`1e-05`, `1.5e+16`).
fn python_float_repr(value: f64) -> String {
    // Rust's `{:e}` gives the same shortest digits: `-1.5e-5`, `3e0`.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes an integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits = mantissa.replace('.', "");
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        if point <= 0 {
            format!(
                "{sign}0.{}{digits}",
                "0".repeat(point.unsigned_abs() as usize)
            )
        } else if point as usize >= digits.len() {
            format!(
                "{sign}{digits}{}.0",
                "0".repeat(point as usize - digits.len())
            )
        } else {
            let (whole, fraction) = digits.split_at(point as usize);
            format!("{sign}{whole}.{fraction}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{first}{fraction}e{exponent_sign}{:02}",
            exponent.unsigned_abs()
        )
    }
}

fn truncate(name: &str) -> String {
    name.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::{Coded, ErrorCode};

    fn flat(value: Value) -> Result<BTreeMap<String, Option<ParamValue>>> {
        flatten(value.as_object().expect("an object"))
    }

    #[test]
    fn nested_objects_flatten_into_slash_separated_names_with_their_types() {
        let params = flat(json!({
            "optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999]},
            "epochs": 10, "amp": true, "seed": null
        }))
        .expect("valid");
        assert_eq!(
            params["optimizer/name"],
            Some(ParamValue::String("adam".into()))
        );
        assert_eq!(params["optimizer/lr"], Some(ParamValue::Float(0.001)));
        assert_eq!(
            params["optimizer/betas"],
            Some(ParamValue::String("[0.9,0.999]".into()))
        );
        assert_eq!(params["epochs"], Some(ParamValue::Int(10)));
        assert_eq!(params["amp"], Some(ParamValue::Bool(true)));
        assert_eq!(params["seed"], None);
    }

    #[test]
    fn a_name_given_both_flat_and_nested_is_refused() {
        assert!(flat(json!({"a/b": 1, "a": {"b": 2}})).is_err());
    }

    #[test]
    fn limits_are_enforced_with_clear_errors() {
        let long_name = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            flat(json!({long_name: 1})).unwrap_err().code(),
            ErrorCode::InvalidParams
        );
        assert!(flat(json!({"s": "y".repeat(MAX_STRING_BYTES + 1)})).is_err());
        assert!(flat(json!({"": 1})).is_err());
        let mut params = BTreeMap::new();
        let many = (0..=MAX_PARAMS)
            .map(|i| (format!("p{i}"), Some(ParamValue::Int(1))))
            .collect();
        assert!(apply(&mut params, many).is_err());
    }

    #[test]
    fn floats_print_as_python_repr_does() {
        let cases = [
            (0.001, "0.001"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (3e-4, "0.0003"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (123456789012345.0, "123456789012345.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (0.1 + 0.2, "0.30000000000000004"),
            (12.5, "12.5"),
        ];
        for (value, text) in cases {
            assert_eq!(python_float_repr(value), text, "{value:e}");
        }
    }

    #[test]
    fn text_parameters_become_typed_only_when_they_print_back_the_same() {
        assert_eq!(ParamValue::from_text("32"), ParamValue::Int(32));
        assert_eq!(ParamValue::from_text("1e-05"), ParamValue::Float(1e-5));
        assert_eq!(ParamValue::from_text("0.001"), ParamValue::Float(0.001));
        assert_eq!(ParamValue::from_text("True"), ParamValue::Bool(true));
        for kept in [
            "007", "+5", "1e-5", "0.0010", "true", "nan", "inf", "adam", "", " 1",
        ] {
            assert_eq!(
                ParamValue::from_text(kept),
                ParamValue::String(kept.into()),
                "{kept:?}"
            );
        }
        for text in ["-3", "2.5", "1e+16", "False", "[1, 2]"] {
            assert_eq!(ParamValue::from_text(text).to_text(), text);
        }
    }

    #[test]
    fn numbers_sort_by_value_across_integer_and_float() {
        let mut values = [
            ParamValue::String("b".into()),
            ParamValue::Float(2.5),
            ParamValue::Int(3),
            ParamValue::Bool(false),
            ParamValue::Int(-1),
        ];
        values.sort_by(ParamValue::sort_cmp);
        assert_eq!(
            values,
            [
                ParamValue::Int(-1),
                ParamValue::Float(2.5),
                ParamValue::Int(3),
                ParamValue::Bool(false),
                ParamValue::String("b".into()),
            ]
        );
    }
}
