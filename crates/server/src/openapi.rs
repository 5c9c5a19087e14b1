//! `GET /api/v1/openapi.json`: the HTTP API described from the Rust types and the
//! handlers' annotations (utoipa). Who may call each operation comes from the route
//! table, the same one the guard enforces, so the document cannot disagree with it.

pub(crate) mod rules;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, SecurityRequirement};
use utoipa::{Modify, OpenApi};

use crate::auth::Access;
use crate::{
    audience, broadcasts, figures, forward, health, history, ingest, live, modes, outbox, session,
    settings, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "botwatch",
        description = "Every message bots receive and send, live, per bot. The contract: API.md."
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        session::login,
        session::current,
        session::logout,
        session::audit_log,
        ingest::ingest,
        live::upgrade,
        figures::bots,
        figures::stats,
        figures::top_messages,
        figures::dialogs,
        figures::dialog,
        modes::put,
        history::messages,
        outbox::send,
        crate::handoff::post,
        outbox::file,
        crate::channels::telegram::webhook::webhook,
        crate::channels::telegram::webhook::file,
        crate::channels::telegram::proxy::proxy,
        crate::channels::telegram::proxy::proxy_get,
        crate::channels::webchat::page,
        crate::channels::webchat::asset,
        crate::channels::webchat::live,
        users::users,
        users::user,
        users::users_csv,
        audience::patch_user,
        audience::bulk,
        audience::roles,
        audience::create_role,
        audience::rename_role,
        audience::delete_role,
        audience::tags,
        audience::create_tag,
        audience::rename_tag,
        audience::delete_tag,
        broadcasts::list,
        broadcasts::create,
        broadcasts::get,
        broadcasts::cancel,
        settings::get,
        forward::status,
        forward::test_event,
        forward::backfill,
        settings::put,
        openapi_json,
    ),
    components(schemas(
        live::Overview,
        live::StatsFrame,
        live::DialogsSnapshot,
        live::DialogDelta,
        live::DialogSnapshot,
        live::MessageDelta,
        live::DeliveryDelta,
        live::AlertsSnapshot,
        broadcasts::BroadcastsSnapshot,
        broadcasts::BroadcastDelta,
    )),
    modifiers(&SecurityFromRoutes, &OptionalBodies)
)]
struct ApiDoc;

/// Operations that take a body or go without one. utoipa makes a body optional only
/// by making its schema nullable, and a `null` body is not the same as none.
const OPTIONAL_BODIES: [&str; 1] = ["/api/v1/bots/{bot}/dialogs/{user}/handoff"];

struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, doc: &mut Document) {
        for path in OPTIONAL_BODIES {
            let body = doc
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|operation| operation.request_body.as_mut());
            if let Some(body) = body {
                body.required = Some(utoipa::openapi::Required::False);
            }
        }
    }
}

/// Adds the two ways to authenticate and, on every operation, who may call it.
struct SecurityFromRoutes;

impl Modify for SecurityFromRoutes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::COOKIE,
                "The cookie of POST /api/v1/session; changes also need the X-Botwatch-CSRF header",
            ))),
        );
        for route in crate::routes::all() {
            let Some(item) = doc.paths.paths.get_mut(route.path) else {
                continue;
            };
            let operation = match route.method.as_str() {
                "GET" => item.get.as_mut(),
                "POST" => item.post.as_mut(),
                "PUT" => item.put.as_mut(),
                "DELETE" => item.delete.as_mut(),
                "PATCH" => item.patch.as_mut(),
                _ => None,
            };
            let Some(operation) = operation else {
                continue;
            };
            say_what_the_guard_refuses(operation);
            if route.access == Access::Public {
                operation.security = Some(Vec::new());
                continue;
            }
            let session = SecurityRequirement::new("session", Vec::<String>::new());
            operation.security = Some(if route.access == Access::Session {
                vec![session]
            } else {
                vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    session,
                ]
            });
            let needs = match route.access {
                Access::Public => "nothing",
                Access::Authenticated => "any valid credentials",
                Access::Ingest => "an ingest or admin token of the events' bot, or an admin",
                Access::Read => "any dashboard user, or a read or admin token of the bot",
                Access::Operate => "an operator or admin, or an admin token of the bot",
                Access::Configure => "an admin, or an admin token of the bot",
                Access::Accounts => "an admin",
                Access::Session => "a dashboard user's session (the cookie), never a token",
            };
            let said = operation.description.take().unwrap_or_default();
            operation.description = Some(
                format!("{said}\n\nWho may call it: {needs}.")
                    .trim()
                    .to_string(),
            );
        }
    }
}

/// Every `{bot}` in a path is a bot slug, and the guard answers 400 `bad_parameter` for
/// one that is not, 404 for a bot that does not exist where one must; every operation
/// with parameters or a body may answer 400 for values it cannot take. The document says
/// so on each operation (schemathesis holds the server to it).
fn say_what_the_guard_refuses(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let mut takes_input = operation.request_body.is_some();
    let mut has_bot = false;
    for parameter in operation.parameters.iter_mut().flatten() {
        takes_input = true;
        if parameter.name == "bot" && parameter.parameter_in == ParameterIn::Path {
            has_bot = true;
            parameter.schema = Some(RefOr::T(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[a-z0-9][a-z0-9_-]{0,63}$"))
                    .into(),
            ));
        }
    }
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    let responses = &mut operation.responses.responses;
    if takes_input && !responses.contains_key("400") {
        responses.insert(
            "400".into(),
            error("A parameter or the body is not one this operation takes"),
        );
    }
    if has_bot && !responses.contains_key("404") {
        responses.insert("404".into(), error("No such bot, or no such item of it"));
    }
}

/// The document (built once).
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as pretty JSON: what `GET /api/v1/openapi.json` answers and
/// `botwatch openapi` prints (the dashboard's TypeScript types are made from it).
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().unwrap_or_default())
}

/// This document, as JSON.
#[utoipa::path(get, operation_id = "openapi_openapi_json", path = "/api/v1/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}
