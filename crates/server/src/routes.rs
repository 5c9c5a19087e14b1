//! Every route of the service with the access it needs, in one table: the router is
//! built from it, each route behind [`crate::auth::guard`] with its own rule, so no
//! route exists without one.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::auth::Access;
use crate::{
    AppState, audience, broadcasts, channels, figures, forward, handoff, health, history, ingest,
    live, modes, openapi, outbox, session, settings, users,
};

/// One route: method, path (axum's syntax) and the access it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

fn route<H, T>(
    method: Method,
    path: &'static str,
    access: Access,
    handler: H,
) -> (Route, MethodRouter<AppState>)
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("{method} {path}: not a method axum routes"));
    (
        Route {
            method,
            path,
            access,
        },
        on(filter, handler),
    )
}

/// The table.
pub(crate) fn table() -> Vec<(Route, MethodRouter<AppState>)> {
    use Access::*;
    use Method as M;
    vec![
        route(M::GET, "/healthz", Public, health::healthz),
        route(
            M::GET,
            "/api/v1/openapi.json",
            Public,
            openapi::openapi_json,
        ),
        route(M::GET, "/readyz", Public, health::readyz),
        route(M::GET, "/metrics", Public, health::metrics),
        route(M::POST, "/api/v1/session", Public, session::login),
        route(M::GET, "/api/v1/session", Authenticated, session::current),
        route(M::DELETE, "/api/v1/session", Session, session::logout),
        route(M::POST, "/api/v1/events", Ingest, ingest::ingest),
        route(M::GET, "/api/v1/live", Authenticated, live::upgrade),
        route(M::GET, "/api/v1/bots", Authenticated, figures::bots),
        route(M::GET, "/api/v1/bots/{bot}/stats", Read, figures::stats),
        route(
            M::GET,
            "/api/v1/bots/{bot}/top-messages",
            Read,
            figures::top_messages,
        ),
        route(M::GET, "/api/v1/bots/{bot}/users", Read, users::users),
        route(
            M::GET,
            "/api/v1/bots/{bot}/users.csv",
            Read,
            users::users_csv,
        ),
        route(M::GET, "/api/v1/bots/{bot}/users/{user}", Read, users::user),
        route(
            M::PATCH,
            "/api/v1/bots/{bot}/users/{user}",
            Operate,
            audience::patch_user,
        ),
        route(
            M::POST,
            "/api/v1/bots/{bot}/users/bulk",
            Operate,
            audience::bulk,
        ),
        route(M::GET, "/api/v1/bots/{bot}/roles", Read, audience::roles),
        route(
            M::POST,
            "/api/v1/bots/{bot}/roles",
            Operate,
            audience::create_role,
        ),
        route(
            M::PATCH,
            "/api/v1/bots/{bot}/roles/{name}",
            Operate,
            audience::rename_role,
        ),
        route(
            M::DELETE,
            "/api/v1/bots/{bot}/roles/{name}",
            Operate,
            audience::delete_role,
        ),
        route(M::GET, "/api/v1/bots/{bot}/tags", Read, audience::tags),
        route(
            M::POST,
            "/api/v1/bots/{bot}/tags",
            Operate,
            audience::create_tag,
        ),
        route(
            M::PATCH,
            "/api/v1/bots/{bot}/tags/{name}",
            Operate,
            audience::rename_tag,
        ),
        route(
            M::DELETE,
            "/api/v1/bots/{bot}/tags/{name}",
            Operate,
            audience::delete_tag,
        ),
        route(
            M::GET,
            "/api/v1/bots/{bot}/broadcasts",
            Read,
            broadcasts::list,
        ),
        route(
            M::POST,
            "/api/v1/bots/{bot}/broadcasts",
            Operate,
            broadcasts::create,
        ),
        route(
            M::GET,
            "/api/v1/bots/{bot}/broadcasts/{id}",
            Read,
            broadcasts::get,
        ),
        route(
            M::DELETE,
            "/api/v1/bots/{bot}/broadcasts/{id}",
            Operate,
            broadcasts::cancel,
        ),
        route(M::GET, "/api/v1/bots/{bot}/dialogs", Read, figures::dialogs),
        route(
            M::GET,
            "/api/v1/bots/{bot}/dialogs/{user}",
            Read,
            figures::dialog,
        ),
        route(
            M::PUT,
            "/api/v1/bots/{bot}/dialogs/{user}/mode",
            Operate,
            modes::put,
        ),
        route(
            M::GET,
            "/api/v1/bots/{bot}/dialogs/{user}/messages",
            Read,
            history::messages,
        ),
        // A bot hands a dialog off to a human (bots' ingest tokens may).
        route(
            M::POST,
            "/api/v1/bots/{bot}/dialogs/{user}/handoff",
            Ingest,
            handoff::post,
        ),
        {
            let (r, handler) = route(
                M::POST,
                "/api/v1/bots/{bot}/dialogs/{user}/messages",
                Operate,
                outbox::send,
            );
            // A file with its multipart framing.
            let limit = axum::extract::DefaultBodyLimit::max(outbox::MAX_FILE_BYTES + 64 * 1024);
            (r, handler.layer(limit))
        },
        route(M::GET, "/api/v1/files/{id}", Public, outbox::file),
        // Telegram authenticates with the webhook's secret header (checked inside).
        route(
            M::POST,
            "/channels/telegram/{bot}/webhook",
            Public,
            channels::telegram::webhook::webhook,
        ),
        // The Bot API proxy: only the bot's own token admits a call (checked inside).
        {
            let (r, handler) = route(
                M::POST,
                "/channels/telegram/{bot}/api/{bot_token}/{method_name}",
                Public,
                channels::telegram::proxy::proxy,
            );
            let limit =
                axum::extract::DefaultBodyLimit::max(channels::telegram::proxy::MAX_BODY_BYTES);
            (r, handler.layer(limit))
        },
        route(
            M::GET,
            "/channels/telegram/{bot}/api/{bot_token}/{method_name}",
            Public,
            channels::telegram::proxy::proxy_get,
        ),
        route(
            M::GET,
            "/channels/telegram/{bot}/files/{file_id}",
            Read,
            channels::telegram::webhook::file,
        ),
        // The web chat: public, for bots that enable it (checked inside).
        route(
            M::GET,
            "/chat/assets/{file}",
            Public,
            channels::webchat::asset,
        ),
        route(M::GET, "/chat/{bot}", Public, channels::webchat::page),
        route(M::GET, "/chat/{bot}/live", Public, channels::webchat::live),
        route(M::GET, "/api/v1/bots/{bot}/settings", Read, settings::get),
        route(
            M::PUT,
            "/api/v1/bots/{bot}/settings",
            Configure,
            settings::put,
        ),
        route(
            M::GET,
            "/api/v1/bots/{bot}/integrations",
            Read,
            forward::status,
        ),
        route(
            M::POST,
            "/api/v1/bots/{bot}/integrations/{service}/test",
            Configure,
            forward::test_event,
        ),
        route(
            M::POST,
            "/api/v1/bots/{bot}/integrations/{service}/backfill",
            Configure,
            forward::backfill,
        ),
        route(M::GET, "/api/v1/audit", Accounts, session::audit_log),
    ]
}

/// Every route and its rule (for the route-matrix test and documentation).
pub fn all() -> Vec<Route> {
    table().into_iter().map(|(r, _)| r).collect()
}
