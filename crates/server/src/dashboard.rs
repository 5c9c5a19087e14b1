//! The web dashboard, built in `dashboard/` and embedded here from `dashboard/dist`, so
//! `botwatch serve` needs no Node and no files beside the binary.
//!
//! Every GET that no route answers and that is not under `/api/` gets a built file
//! when one has that path, else the single page's `index.html` (its own router reads
//! the path: `/bots/helpdesk/dialogs` is a page, not a file). Built files with a hash
//! in their name (`/assets/…`) are cached for good; `index.html` is always revalidated,
//! so a new binary's dashboard is seen at the next load.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error;

#[derive(RustEmbed)]
#[folder = "../../dashboard/dist"]
struct Built;

/// The fallback of the router: a dashboard file or page, or 404.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if !(method == Method::GET || method == Method::HEAD) || path.starts_with("/api/") {
        return error::not_found().await.into_response();
    }
    let wanted = path.trim_start_matches('/');
    let (name, file) = match Built::get(wanted) {
        Some(file) => (wanted, file),
        // A page of the single-page app (or a missing asset, which must not be
        // answered with the page: a script tag would get HTML).
        _ if wanted.starts_with("assets/") => return error::not_found().await.into_response(),
        _ => match Built::get("index.html") {
            Some(file) => ("index.html", file),
            None => return error::not_found().await.into_response(),
        },
    };
    let etag = format!(
        "\"{}\"",
        crate::users::hex(&file.metadata.sha256_hash()[..16])
    );
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(file.data))
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
