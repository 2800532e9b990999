//! Floats in JSON. Training produces NaN and ±Infinity (a diverged loss, an overflowing
//! gradient norm) and JSON has no numbers for them, so they travel as the strings
//! `"NaN"`, `"Infinity"` and `"-Infinity"` (what JavaScript's `String(x)` and Python's
//! `float(s)` agree on). Finite values are plain JSON numbers, written in the shortest
//! form that parses back to the same bits.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// One float that may be non-finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsonF64(pub f64);

impl utoipa::PartialSchema for JsonF64 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["NaN", "Infinity", "-Infinity"])),
            )
            .description(Some("A number, or NaN and ±Infinity spelled as strings."))
            .into()
    }
}

impl utoipa::ToSchema for JsonF64 {}

impl Serialize for JsonF64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        if value.is_finite() {
            serializer.serialize_f64(value)
        } else if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if value > 0.0 {
            serializer.serialize_str("Infinity")
        } else {
            serializer.serialize_str("-Infinity")
        }
    }
}

impl<'de> Deserialize<'de> for JsonF64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FloatVisitor).map(JsonF64)
    }
}

struct FloatVisitor;

impl Visitor<'_> for FloatVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(r#"a number, "NaN", "Infinity" or "-Infinity""#)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

/// A slice of floats serialized as a JSON array, without copying it.
#[derive(Debug, Clone, Copy)]
pub struct JsonF64s<'a>(pub &'a [f64]);

impl Serialize for JsonF64s<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for &value in self.0 {
            seq.serialize_element(&JsonF64(value))?;
        }
        seq.end()
    }
}

/// For `#[serde(with = "crate::floats::option")]` on `Option<f64>` fields.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        value.map(JsonF64).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<f64>, D::Error> {
        Ok(Option::<JsonF64>::deserialize(deserializer)?.map(|v| v.0))
    }
}

/// For `#[serde(with = "crate::floats::plain")]` on `f64` fields.
pub mod plain {
    use super::*;

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        JsonF64(*value).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(JsonF64::deserialize(deserializer)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_travel_as_strings_and_come_back() {
        let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.1, 1e308];
        let json = serde_json::to_string(&JsonF64s(&values)).expect("serializes");
        assert_eq!(json, r#"["NaN","Infinity","-Infinity",-0.0,0.1,1e+308]"#);
        let back: Vec<JsonF64> = serde_json::from_str(&json).expect("parses");
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&back.iter().map(|v| v.0).collect::<Vec<_>>()),
            bits(&values)
        );
    }

    #[test]
    fn other_strings_are_refused() {
        assert!(serde_json::from_str::<JsonF64>(r#""nan""#).is_err());
        assert!(serde_json::from_str::<JsonF64>(r#""1.5""#).is_err());
        assert!(serde_json::from_str::<JsonF64>("true").is_err());
    }
}
