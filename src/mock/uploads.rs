//! fal's storage over HTTP: `POST /rest/storage/upload/initiate` hands out a pre-signed-style
//! `upload_url` (PUT the bytes there, no auth) and the `file_url` they are then served at.
//!
//! Multipart, as `@fal-ai/client` (`libs/client/src/storage.ts`) drives it for files over 90 MB:
//! `POST .../initiate-multipart` gives `{upload_url, file_url}`; each 10 MB part is `PUT` to
//! `{upload_url}/{part number}` (from 1) and answered with `{"partNumber","etag"}` (the fake also
//! sends an `ETag` header, which fal's Python client reads instead); then
//! `POST {upload_url}/complete` with `{"parts":[{"partNumber","etag"},...]}` joins them. The REST
//! route `POST /rest/storage/upload/complete-multipart` (allowed by fal's own server proxy but not
//! called by the clients) is a guess: it takes the same body plus `upload_url`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::storage::{Meta, PartRef, etag};
use super::{MockFal, detail, lock};

/// Percent-encodes one URL path segment.
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct InitiateBody {
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    file_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CompleteBody {
    #[serde(default)]
    upload_url: Option<String>,
    parts: Vec<PartRef>,
}

fn unprocessable(e: serde_json::Error) -> Response {
    let entry = json!({"loc": ["body"], "msg": e.to_string(), "type": "json_invalid"});
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({ "detail": [entry] })),
    )
        .into_response()
}

fn initiate(mock: &MockFal, headers: &HeaderMap, body: &[u8], multipart: bool) -> Response {
    let parsed: InitiateBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return unprocessable(e),
    };
    let content_type = parsed
        .content_type
        .filter(|c| !c.is_empty())
        .unwrap_or("application/octet-stream".into());
    let file_name = parsed
        .file_name
        .filter(|n| !n.is_empty())
        .unwrap_or("upload.bin".into());
    let public = mock.public_base(headers);
    let name = encode_segment(&file_name);
    let token = lock(&mock.inner.storage).initiate(Meta { content_type }, multipart);
    let kind = if multipart { "multipart" } else { "upload" };
    axum::Json(json!({
        "upload_url": format!("{public}/files/{kind}/{token}"),
        "file_url": format!("{public}/files/{token}/{name}"),
    }))
    .into_response()
}

/// `POST /rest/storage/upload/initiate`.
pub async fn initiate_single(
    State(mock): State<MockFal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    initiate(&mock, &headers, &body, false)
}

/// `POST /rest/storage/upload/initiate-multipart`.
pub async fn initiate_multipart(
    State(mock): State<MockFal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    initiate(&mock, &headers, &body, true)
}

fn cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("etag, content-length"),
    );
    response
}

/// `OPTIONS /files/...`: browsers PUT and GET here directly, so every preflight is allowed.
pub async fn preflight(headers: HeaderMap) -> Response {
    let asked = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
    let mut response = cors(StatusCode::NO_CONTENT.into_response());
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, PUT, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        asked.unwrap_or(HeaderValue::from_static("*")),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// `PUT /files/upload/{token}`: stores the bytes of an initiated upload.
pub async fn put_file(
    State(mock): State<MockFal>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut storage = lock(&mock.inner.storage);
    let Some(mut meta) = storage.initiated(&token) else {
        return cors(detail(StatusCode::NOT_FOUND, "Upload not found"));
    };
    if meta.content_type == "application/octet-stream"
        && let Some(sent) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    {
        meta.content_type = sent.to_string();
    }
    let etag = etag(&body);
    storage.store(&token, meta, body);
    drop(storage);
    let mut response = cors(StatusCode::OK.into_response());
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// `PUT /files/multipart/{token}/{part}`: stores one part, answers `{"partNumber","etag"}`.
pub async fn put_part(
    State(mock): State<MockFal>,
    Path((token, part)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(number) = part.parse::<u32>() else {
        return cors(detail(StatusCode::NOT_FOUND, "Not found"));
    };
    if !(1..=10_000).contains(&number) {
        return cors(detail(
            StatusCode::BAD_REQUEST,
            "Part numbers go from 1 to 10000",
        ));
    }
    let outcome = lock(&mock.inner.storage).add_part(&token, number, body);
    match outcome {
        Ok(etag) => {
            let mut response =
                cors(axum::Json(json!({ "partNumber": number, "etag": etag })).into_response());
            if let Ok(value) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(header::ETAG, value);
            }
            response
        }
        Err(StatusCode::NOT_FOUND) => cors(detail(StatusCode::NOT_FOUND, "Upload not found")),
        Err(status) => cors(detail(status, "Too much unfinished multipart data")),
    }
}

fn complete(mock: &MockFal, token: &str, body: &[u8]) -> Response {
    let parsed: CompleteBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return cors(unprocessable(e)),
    };
    let outcome = lock(&mock.inner.storage).complete(token, &parsed.parts);
    match outcome {
        Ok(()) => cors(axum::Json(json!({ "status": "COMPLETED" })).into_response()),
        Err((status, message)) => cors(detail(status, &message)),
    }
}

/// `POST /files/multipart/{token}/complete` (what the official clients call).
pub async fn complete_at_upload_url(
    State(mock): State<MockFal>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    complete(&mock, &token, &body)
}

/// `POST /rest/storage/upload/complete-multipart`: `{"upload_url", "parts"}` (a plausible guess).
pub async fn complete_rest(State(mock): State<MockFal>, body: Bytes) -> Response {
    let parsed: CompleteBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return unprocessable(e),
    };
    let url = parsed.upload_url.unwrap_or_default();
    let token = url
        .split('?')
        .next()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    complete(&mock, token, &body)
}

/// `GET /files/{token}/{file name}`: a stored upload, with its content type.
pub async fn get_file(
    State(mock): State<MockFal>,
    Path((token, _name)): Path<(String, String)>,
) -> Response {
    let found = lock(&mock.inner.storage).file(&token);
    match found {
        Some((meta, data)) => {
            let content_type = HeaderValue::from_str(&meta.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            cors(([(header::CONTENT_TYPE, content_type)], data).into_response())
        }
        None => cors(detail(StatusCode::NOT_FOUND, "File not found")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("my photo/1.png"), "my%20photo%2F1.png");
    }
}
