//! Identifiers. Each kind has its own prefix, so an id pasted in the wrong place is
//! refused instead of silently looked up, and a parsed id is always well-formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} id")]
pub struct InvalidId {
    pub kind: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(Ulid::generate())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.to_string().to_ascii_lowercase())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.strip_prefix(concat!($prefix, "_"))
                    .filter(|ulid| ulid.len() == 26)
                    .and_then(|ulid| Ulid::from_string(&ulid.to_ascii_uppercase()).ok())
                    .map(Self)
                    .ok_or(InvalidId { kind: $kind })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9a-hjkmnp-tv-z]{26}$")))
                    .examples([concat!($prefix, "_01jd7m3q4v5x6y7z8a9b0c1d2e")])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A team: the unit of tenancy and billing.
    TenantId, "ten", "tenant"
);
id_type!(UserId, "usr", "user");
id_type!(
    /// The public half of an API key; the secret half is never stored.
    ApiKeyId, "key", "API key"
);
id_type!(InviteId, "inv", "invite");
id_type!(ProjectId, "prj", "project");
id_type!(RunId, "run", "run");
id_type!(
    /// A shared run URL; the token that opens it is never stored.
    ShareId, "shr", "share"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = TenantId::generate();
        let text = id.to_string();
        assert!(text.starts_with("ten_"));
        assert_eq!(text.parse::<TenantId>(), Ok(id));
    }

    #[test]
    fn an_id_of_another_kind_is_refused() {
        let user = UserId::generate().to_string();
        assert_eq!(user.parse::<TenantId>(), Err(InvalidId { kind: "tenant" }));
        assert!("ten_".parse::<TenantId>().is_err());
        assert!("ten_../../etc".parse::<TenantId>().is_err());
    }
}
