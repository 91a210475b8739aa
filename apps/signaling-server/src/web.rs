//! The browser chat's static files: `GET /` is its index.html, every other path the file of that
//! name in [`Config::web_dir`](crate::Config::web_dir) (tower-http's `ServeDir`, which refuses
//! paths that leave the folder and sets each file's content type from its extension, e.g.
//! `application/wasm`).
//!
//! A WebSocket upgrade at `/` never reaches this module: [`crate::root`] hands it to the
//! signaling socket first.

use std::io;
use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::services::{ServeDir, ServeFile};
use tracing::warn;

/// The command that builds the browser chat into the web folder.
pub(crate) const BUILD_COMMAND: &str = "cargo xtask web";

/// `GET /` without a WebSocket upgrade: the chat's index.html, or a page that says how to build it.
pub(crate) async fn index(dir: &Path, request: Request) -> Response {
    let path = dir.join("index.html");
    if !tokio::fs::metadata(&path)
        .await
        .is_ok_and(|meta| meta.is_file())
    {
        return not_built(dir);
    }
    match ServeFile::new(path).try_call(request).await {
        Ok(response) => response.map(Body::new),
        Err(err) => {
            warn!(%err, dir = %dir.display(), "could not read the browser chat's index.html");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not read the browser chat's index.html\n",
            )
                .into_response()
        }
    }
}

/// Every other path: the file of that name under `dir`; a missing one is a 404 that says why.
pub(crate) async fn file(dir: &Path, request: Request) -> Response {
    let mut files = ServeDir::new(dir).append_index_html_on_directories(false);
    match files.try_call(request).await {
        Ok(response) if response.status() == StatusCode::NOT_FOUND => not_found(),
        Ok(response) => response.map(Body::new),
        // ServeDir without a fallback reports a missing file as an error.
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::NotADirectory
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::InvalidFilename
            ) =>
        {
            not_found()
        }
        Err(err) => {
            warn!(%err, dir = %dir.display(), "could not read a file of the browser chat");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not read the file\n",
            )
                .into_response()
        }
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("no such file here (the browser chat's files are built by `{BUILD_COMMAND}`)\n"),
    )
        .into_response()
}

/// The page `GET /` answers while the chat is not built.
fn not_built(dir: &Path) -> Response {
    let dir = escape(&dir.display().to_string());
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>p2pmesh chat: not built</title></head>\n<body>\
         <h1>p2pmesh signaling server</h1>\n\
         <p>The browser chat is not built yet: run <code>{BUILD_COMMAND}</code>, \
         then reload this page (this server serves the folder <code>{dir}</code>, \
         see <code>--web-dir</code>).</p>\n\
         <p>WebSocket signaling clients connect at this same URL.</p>\n</body></html>\n"
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `text` safe inside HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
