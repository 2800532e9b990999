//! What every function's OpenAPI document shares: the error envelope, the credentials,
//! and the finishing pass that gives each operation the error answers the edge can
//! give it.
//!
//! Each handler declares its route once, in `#[utoipa::path]`, and the router is built
//! from those declarations (`utoipa_axum::routes!`), so a route cannot exist without
//! its entry in the document.
//!
//! Roles are the scopes of the `bearer` requirement: `read` for any member of the team,
//! `write` for members and admins, `admin` for admins only. The isolation sweep
//! (tests/tests/isolation.rs) walks the document and holds every operation to them.
//!
//! Two extensions say what else a credential may do, and the sweep holds them too:
//! `x-sextant-plane: "data"` marks the data plane, where access and job tokens are
//! trusted on their signature alone (`auth::Plane`), and `x-sextant-job: true` the
//! operations a job's credential may call on its own run; it can call nothing else.

use utoipa::PartialSchema;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
};

use crate::error::{Body, Envelope};
use sextant_domain::error::ErrorCode;

/// The security scheme for API keys and the tokens exchanged for them.
pub const BEARER: &str = "bearer";
/// The operator's token, for the cross-tenant usage report.
pub const OPERATOR: &str = "operator";

/// The error answers any operation may give, beyond those its handler documents.
const EDGE_ERRORS: [(&str, &str); 7] = [
    ("400", "The request is malformed or fails validation."),
    (
        "408",
        "The request, its body included, took longer than 30 s (`request_timeout`).",
    ),
    (
        "413",
        "The request body exceeds the limit of the function that takes it.",
    ),
    ("415", "A JSON body was sent without `application/json`."),
    (
        "429",
        "A rate limit was reached; `Retry-After` says when to try again.",
    ),
    ("500", "A failure of ours; it has been logged."),
    (
        "503",
        "Storage is busy; `Retry-After` says when to try again.",
    ),
];

/// The answers of operations that need a credential.
const CREDENTIAL_ERRORS: [(&str, &str); 3] = [
    (
        "401",
        "No credential, or one that is invalid, expired or revoked.",
    ),
    ("403", "The caller's role does not allow this."),
    (
        "404",
        "No such resource in the caller's team (another team's resources answer alike).",
    ),
];

/// Wraps the operations collected from the handlers into the published document.
pub fn document(title: &str, mut paths: OpenApi) -> OpenApi {
    let mut components = paths.components.take().unwrap_or_default();
    components
        .schemas
        .insert("Error".to_owned(), <Envelope as PartialSchema>::schema());
    components
        .schemas
        .insert("ErrorBody".to_owned(), <Body as PartialSchema>::schema());
    components.schemas.insert(
        "ErrorCode".to_owned(),
        <ErrorCode as PartialSchema>::schema(),
    );
    let components = ComponentsBuilder::from(components)
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`sk_...`), or the short-lived token `POST /v1/auth/token` \
                         exchanges one for. Scopes name the role an operation needs: read, \
                         write or admin.",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            OPERATOR,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The operator token (SEXTANT_OPERATOR_TOKEN)."))
                    .build(),
            ),
        )
        .build();
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(title)
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every error is `{\"error\": {\"code\", \"message\"}}` with a stable code. \
                     Another team's resources answer 404 exactly as missing ones do.",
                ))
                .build(),
        )
        .paths(paths.paths)
        .components(Some(components))
        .build();
    normalize_wildcards(&mut document);
    for (_, item) in document.paths.paths.iter_mut() {
        for operation in operations(item) {
            add_error_answers(operation);
        }
    }
    document
}

/// axum spells a catch-all segment `{*name}`; OpenAPI knows only `{name}`.
fn normalize_wildcards(document: &mut OpenApi) {
    let paths = std::mem::take(&mut document.paths.paths);
    document.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Gives every error answer the envelope's schema, and adds those the edge can give.
fn add_error_answers(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        if let RefOr::T(response) = response
            && !status.starts_with('2')
            && !status.starts_with('3')
            && response.content.is_empty()
        {
            response.content.insert(
                "application/json".to_owned(),
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            );
        }
    }
    let needs_credential = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty() && !is_public(requirements));
    let credential = needs_credential.then_some(CREDENTIAL_ERRORS.iter());
    for (status, description) in EDGE_ERRORS.iter().chain(credential.into_iter().flatten()) {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| error_response(description));
    }
}

/// `security(())` in an annotation: the operation needs no credential.
fn is_public(requirements: &[utoipa::openapi::security::SecurityRequirement]) -> bool {
    requirements
        .iter()
        .all(|requirement| requirement == &Default::default())
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .into()
}

/// The JSON of a document, as served and as checked in: stable, pretty, one trailing
/// newline.
pub fn to_json(document: &OpenApi) -> String {
    let declared = document
        .to_pretty_json()
        .expect("an OpenAPI document serializes");
    let mut ordered: OrderedJson =
        serde_json::from_str(&declared).expect("a serialized document parses");
    ordered.sort_extensions();
    let mut json = serde_json::to_string_pretty(&ordered).expect("a parsed document serializes");
    json.push('\n');
    json
}

/// JSON that keeps its objects' keys in the order written. utoipa keeps `x-`
/// extensions in a `HashMap`, whose order changes from one process to the next, and
/// `serde_json::Value` would sort every key (the workspace does not turn on its
/// `preserve_order`, on which stored bytes would then depend); this keeps the declared
/// order of everything else and sorts only the extensions.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum OrderedJson {
    Object(indexmap::IndexMap<String, OrderedJson>),
    Array(Vec<OrderedJson>),
    Scalar(serde_json::Value),
}

impl OrderedJson {
    fn sort_extensions(&mut self) {
        match self {
            OrderedJson::Object(map) => {
                let extension_rank = |key: &String| key.starts_with("x-").then(|| key.clone());
                map.sort_by(|a, _, b, _| extension_rank(a).cmp(&extension_rank(b)));
                map.values_mut().for_each(OrderedJson::sort_extensions);
            }
            OrderedJson::Array(items) => items.iter_mut().for_each(OrderedJson::sort_extensions),
            OrderedJson::Scalar(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::extensions::ExtensionsBuilder;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};

    fn document_with_extensions(names: impl Iterator<Item = String>) -> OpenApi {
        let mut extensions = ExtensionsBuilder::new();
        for name in names {
            extensions = extensions.add(name, true);
        }
        let operation = OperationBuilder::new()
            .extensions(Some(extensions.build()))
            .build();
        OpenApiBuilder::new()
            .paths(PathsBuilder::new().path("/", PathItem::new(HttpMethod::Get, operation)))
            .build()
    }

    #[test]
    fn extensions_serialize_in_one_order_however_they_were_stored() {
        let names = || (0..16).map(|n| format!("x-extension-{n:02}"));
        let forwards = to_json(&document_with_extensions(names()));
        let backwards = to_json(&document_with_extensions(names().rev()));
        assert_eq!(forwards, backwards);
        let positions: Vec<usize> = names()
            .map(|name| forwards.find(&name).expect("every extension is serialized"))
            .collect();
        assert!(positions.is_sorted(), "extensions are sorted by name");
    }
}
