//! Target rules: which fal URL a request may reach. PURE: no I/O, no allocation of shared state.
//!
//! Both routes end here. The compat route passes the client's `x-fal-target-url`; the native
//! routes build the same fal URL from their own path. [`TargetRules::parse`] either returns a
//! [`Target`] (host, call kind, normalised path, re-encoded query, endpoint, request id) or a
//! [`TargetError`] that says precisely what was refused. Nothing is sent upstream before this
//! has said yes.

mod query;
#[cfg(test)]
mod tests;

use crate::hash::FastSet;
use http::Method;
use std::sync::Arc;

/// Longest target URL accepted.
pub const MAX_TARGET_LEN: usize = 4096;
/// Longest request id accepted.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The three fal hosts a client may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FalHost {
    /// `queue.fal.run`: asynchronous jobs.
    Queue,
    /// `fal.run`: synchronous calls.
    Run,
    /// `rest.fal.ai`: storage upload initiation only.
    Rest,
}

impl FalHost {
    /// The host name as clients write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queue => "queue.fal.run",
            Self::Run => "fal.run",
            Self::Rest => "rest.fal.ai",
        }
    }
}

/// What a target asks fal to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `POST queue.fal.run/{endpoint}`: spend money asynchronously.
    Submit,
    /// `POST fal.run/{endpoint}`: spend money synchronously.
    Run,
    /// `GET .../requests/{id}/status`.
    Status,
    /// `GET .../requests/{id}/status/stream` (server-sent events).
    StatusStream,
    /// `GET .../requests/{id}`.
    Result,
    /// `PUT .../requests/{id}/cancel`.
    Cancel,
    /// `POST rest.fal.ai/storage/upload/initiate`.
    UploadInitiate,
    /// `POST rest.fal.ai/storage/upload/initiate-multipart`.
    UploadInitiateMultipart,
    /// `POST rest.fal.ai/storage/upload/complete-multipart`.
    UploadCompleteMultipart,
}

impl CallKind {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Run => "run",
            Self::Status => "status",
            Self::StatusStream => "stream",
            Self::Result => "result",
            Self::Cancel => "cancel",
            Self::UploadInitiate => "upload_initiate",
            Self::UploadInitiateMultipart => "upload_initiate_multipart",
            Self::UploadCompleteMultipart => "upload_complete_multipart",
        }
    }

    /// The one method this call takes.
    pub fn method(self) -> Method {
        match self {
            Self::Status | Self::StatusStream | Self::Result => Method::GET,
            Self::Cancel => Method::PUT,
            _ => Method::POST,
        }
    }

    /// Whether the call spends money (its body is validated against the endpoint's schema).
    pub fn spends(self) -> bool {
        matches!(self, Self::Submit | Self::Run)
    }

    /// Whether the call initiates or completes a storage upload (`rest.fal.ai`).
    pub fn is_upload(self) -> bool {
        matches!(
            self,
            Self::UploadInitiate | Self::UploadInitiateMultipart | Self::UploadCompleteMultipart
        )
    }

    /// Whether the call reads an existing job by request id.
    pub fn is_request_call(self) -> bool {
        matches!(
            self,
            Self::Status | Self::StatusStream | Self::Result | Self::Cancel
        )
    }
}

/// An accepted target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Which fal host.
    pub host: FalHost,
    /// What the call does.
    pub kind: CallKind,
    /// The normalised path, starting with `/`.
    pub path: String,
    /// The accepted query parameters, re-encoded; `None` when there are none.
    pub query: Option<String>,
    /// For submits and runs the endpoint id; for request calls the endpoint id named in the path
    /// (`owner/alias`, or `owner/alias/sub` in the long form); for uploads `None`.
    /// Shared with the rules' allowlist: taking it costs a reference count, not a copy.
    pub endpoint: Option<Arc<str>>,
    /// The fal request id of a request call (shared: the relay hands it on to what it spawns).
    pub request_id: Option<Arc<str>>,
}

impl Target {
    /// `base` + path + query: the upstream URL for a configured `fal.*_url`, or the request's
    /// origin-form URI for that URL's path alone (`upstream::pool::Origin::prefix`).
    pub fn upstream_url(&self, base: &str) -> String {
        let query = self.query.as_deref().unwrap_or_default();
        let mut url = String::with_capacity(base.len() + self.path.len() + 1 + query.len());
        url.push_str(base);
        url.push_str(&self.path);
        if self.query.is_some() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The `https://` fal URL this target names, as fal itself writes it.
    pub fn fal_url(&self) -> String {
        self.upstream_url(&format!("https://{}", self.host.name()))
    }
}

/// How a target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: malformed.
    BadRequest,
    /// 403: well-formed, not allowed.
    Forbidden,
    /// 405: the call does not take this method.
    MethodNotAllowed,
}

/// A refused target, with a machine code and a sentence for the developer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError {
    /// Which status class.
    pub refusal: Refusal,
    /// Machine code, e.g. `target_not_https`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> TargetError {
    TargetError {
        refusal: Refusal::BadRequest,
        code,
        message: message.into(),
    }
}

fn forbidden(code: &'static str, message: impl Into<String>) -> TargetError {
    TargetError {
        refusal: Refusal::Forbidden,
        code,
        message: message.into(),
    }
}

/// What a target's host and path say: the call, its endpoint id and its request id.
type Classified = (CallKind, Option<Arc<str>>, Option<Arc<str>>);

/// The allowlists a target is judged by, built once from config.
#[derive(Debug, Clone, Default)]
pub struct TargetRules {
    endpoints: FastSet<Arc<str>>,
    apps: FastSet<Arc<str>>,
    webhook_prefixes: Vec<String>,
}

impl TargetRules {
    /// Rules admitting `endpoints` (full ids) and webhooks under `webhook_prefixes`.
    pub fn new<S: AsRef<str>>(endpoints: &[S], webhook_prefixes: &[S]) -> Self {
        let endpoints: FastSet<Arc<str>> = endpoints.iter().map(|e| e.as_ref().into()).collect();
        let apps = endpoints
            .iter()
            .filter_map(|id| {
                let segments: Vec<&str> = id.split('/').collect();
                split_app(&segments).map(|(app, _)| app.join("/").into())
            })
            .collect();
        Self {
            endpoints,
            apps,
            webhook_prefixes: webhook_prefixes
                .iter()
                .map(|p| p.as_ref().to_string())
                .collect(),
        }
    }

    /// The rules of `config`: its endpoints and its webhook URL prefixes.
    pub fn from_config(config: &crate::config::Config) -> Self {
        let ids: Vec<&str> = config.endpoints.iter().map(|e| e.id.as_str()).collect();
        let hooks: Vec<&str> = config
            .fal
            .allowed_webhook_urls
            .iter()
            .map(String::as_str)
            .collect();
        Self::new(&ids, &hooks)
    }

    /// Judges `method` + `raw` (a full fal URL such as `https://queue.fal.run/fal-ai/x`).
    pub fn parse(&self, method: &Method, raw: &str) -> Result<Target, TargetError> {
        let (host, raw_path, raw_query) = split_url(raw)?;
        let segments = normalise_path(raw_path)?;
        let path = join_path(&segments);
        let (kind, endpoint, request_id) = self.classify(host, &segments, &path)?;
        if *method != kind.method() {
            return Err(TargetError {
                refusal: Refusal::MethodNotAllowed,
                code: "method_not_allowed",
                message: format!(
                    "{} on {} takes {}, not {method}",
                    kind.as_str(),
                    host.name(),
                    kind.method()
                ),
            });
        }
        let query = query::accept(kind, raw_query, &self.webhook_prefixes)?;
        Ok(Target {
            host,
            kind,
            path,
            query,
            endpoint,
            request_id,
        })
    }

    /// Judges the host and the path's `segments`; `path` is them joined ([`join_path`]), from
    /// which the ids are cut.
    fn classify(
        &self,
        host: FalHost,
        segments: &[&str],
        path: &str,
    ) -> Result<Classified, TargetError> {
        match host {
            FalHost::Rest => {
                let kind = match segments {
                    ["storage", "upload", "initiate"] => CallKind::UploadInitiate,
                    ["storage", "upload", "initiate-multipart"] => {
                        CallKind::UploadInitiateMultipart
                    }
                    ["storage", "upload", "complete-multipart"] => {
                        CallKind::UploadCompleteMultipart
                    }
                    _ => {
                        return Err(forbidden(
                            "target_path_not_allowed",
                            "on rest.fal.ai only the storage upload initiate/complete paths are allowed",
                        ));
                    }
                };
                Ok((kind, None, None))
            }
            FalHost::Run => {
                let id = self.allowed_endpoint(segments, path)?;
                Ok((CallKind::Run, Some(id), None))
            }
            FalHost::Queue => {
                let Some(at) = segments.iter().position(|s| *s == "requests") else {
                    let id = self.allowed_endpoint(segments, path)?;
                    return Ok((CallKind::Submit, Some(id), None));
                };
                let (named, tail) = segments.split_at(at);
                let (app, sub) = split_app(named).ok_or_else(|| {
                    bad(
                        "invalid_target",
                        "a request URL names owner/alias before /requests/",
                    )
                })?;
                let endpoint = if sub.is_empty() {
                    listed(&self.apps, joined(path, app))?
                } else {
                    listed(&self.endpoints, joined(path, named))?
                };
                let (id, kind) = match tail {
                    [_, id] => (id, CallKind::Result),
                    [_, id, "status"] => (id, CallKind::Status),
                    [_, id, "status", "stream"] => (id, CallKind::StatusStream),
                    [_, id, "cancel"] => (id, CallKind::Cancel),
                    _ => {
                        return Err(bad(
                            "invalid_target",
                            "after /requests/{id} only /status, /status/stream or /cancel may follow",
                        ));
                    }
                };
                if !is_valid_request_id(id) {
                    return Err(bad(
                        "invalid_request_id",
                        "a request id is 1-128 letters, digits, `-` or `_`",
                    ));
                }
                Ok((kind, Some(endpoint), Some((*id).into())))
            }
        }
    }

    fn allowed_endpoint(&self, segments: &[&str], path: &str) -> Result<Arc<str>, TargetError> {
        if split_app(segments).is_none() {
            return Err(bad(
                "invalid_target",
                "the path must name an endpoint id (owner/alias[/path])",
            ));
        }
        listed(&self.endpoints, joined(path, segments))
    }
}

/// The first `segments` of `path` joined by `/`, cut from `path` ([`join_path`] of all the
/// segments, which these begin), so an id is looked up without joining it again.
fn joined<'p>(path: &'p str, segments: &[&str]) -> &'p str {
    // "/a/b/c" for [a, b, c]: the first two end where "/a/b" ends.
    let end = segments.iter().map(|s| s.len() + 1).sum::<usize>();
    path.get(1..end).unwrap_or_default()
}

/// `id`'s entry in `set` (shared, not copied), or the refusal naming it.
fn listed(set: &FastSet<Arc<str>>, id: &str) -> Result<Arc<str>, TargetError> {
    set.get(id).cloned().ok_or_else(|| not_allowed(id))
}

fn not_allowed(id: &str) -> TargetError {
    forbidden(
        "endpoint_not_allowed",
        format!("endpoint `{id}` is not on this proxy's allowlist"),
    )
}

/// How many leading segments name the app: `owner/alias`, or `workflows|comfy/owner/alias`.
fn app_len(first_segment: Option<&str>) -> usize {
    match first_segment {
        Some("workflows") | Some("comfy") => 3,
        _ => 2,
    }
}

/// The app (`owner/alias`, or `namespace/owner/alias`) of an endpoint id; the id itself when it
/// is shorter than that.
pub fn app_of(endpoint: &str) -> &str {
    let mut len = 2;
    let mut slashes = 0;
    for (at, b) in endpoint.bytes().enumerate() {
        if b == b'/' {
            if slashes == 0 {
                len = app_len(Some(&endpoint[..at]));
            }
            slashes += 1;
            if slashes == len {
                return &endpoint[..at];
            }
        }
    }
    endpoint
}

/// Splits `owner/alias[/sub...]` (or `workflows|comfy/owner/alias[/sub...]`) into the app id's
/// segments and the sub-path's. `None` when there are too few segments.
fn split_app<'a, 'b>(segments: &'b [&'a str]) -> Option<(&'b [&'a str], &'b [&'a str])> {
    let app_len = app_len(segments.first().copied());
    (segments.len() >= app_len).then(|| segments.split_at(app_len))
}

/// The whole-URL rules, then the URL split into host, raw path and raw query: at most
/// [`MAX_TARGET_LEN`] bytes, all visible ASCII, no backslash, `https://` (any case), no fragment.
///
/// Checks every status poll makes, so the common case costs one pass over the bytes that the
/// compiler turns into vector code, and the checks that find something wrong say what only then.
fn split_url(raw: &str) -> Result<(FalHost, &str, Option<&str>), TargetError> {
    if raw.len() > MAX_TARGET_LEN {
        return Err(bad("invalid_target", "the target URL is too long"));
    }
    let (mut odd, mut backslash, mut hash) = (false, false, false);
    for &b in raw.as_bytes() {
        odd |= !b.is_ascii_graphic();
        backslash |= b == b'\\';
        hash |= b == b'#';
    }
    if odd {
        let at = raw.bytes().position(|b| !b.is_ascii_graphic()).unwrap_or(0);
        let c = raw[at..].chars().next().unwrap_or_default();
        return Err(bad(
            "invalid_target",
            format!("the target URL contains a forbidden character {c:?}"),
        ));
    }
    if backslash {
        return Err(bad("invalid_target", "the target URL contains a backslash"));
    }
    // All ASCII from here, so any byte offset is a character boundary.
    const HTTPS: &[u8] = b"https://";
    let Some(rest) = raw
        .get(..HTTPS.len())
        .filter(|scheme| scheme.as_bytes().eq_ignore_ascii_case(HTTPS))
        .map(|_| &raw[HTTPS.len()..])
    else {
        return Err(match raw.split_once("://") {
            None => bad(
                "invalid_target",
                "the target must be an absolute https:// URL on a fal host",
            ),
            Some(_) => bad("target_not_https", "only https:// targets are allowed"),
        });
    };
    if hash {
        // Not in the scheme, which is `https`: so in what follows it.
        return Err(bad(
            "invalid_target",
            "the target URL may not have a fragment",
        ));
    }
    let authority_end = memchr::memchr2(b'/', b'?', rest.as_bytes()).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    let host = parse_authority(authority)?;
    Ok(match memchr::memchr(b'?', path_and_query.as_bytes()) {
        Some(at) => (host, &path_and_query[..at], Some(&path_and_query[at + 1..])),
        None => (host, path_and_query, None),
    })
}

/// Host rules: no userinfo, port 443 or none, no IP literal, one of the three fal hosts.
fn parse_authority(authority: &str) -> Result<FalHost, TargetError> {
    // The names as fal writes them pass every rule below; most targets are one of them.
    match authority {
        "queue.fal.run" => return Ok(FalHost::Queue),
        "fal.run" => return Ok(FalHost::Run),
        "rest.fal.ai" => return Ok(FalHost::Rest),
        _ => {}
    }
    judge_authority(authority)
}

/// [`parse_authority`]'s rules, for any spelling.
fn judge_authority(authority: &str) -> Result<FalHost, TargetError> {
    if authority.contains('@') {
        return Err(bad(
            "target_userinfo",
            "credentials in the target URL are not allowed",
        ));
    }
    if authority.starts_with('[') {
        return Err(bad(
            "target_ip_literal",
            "IP addresses are not allowed as target hosts",
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(port) = port
        && port != "443"
    {
        return Err(bad(
            "target_port",
            "only the default https port 443 is allowed",
        ));
    }
    if !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad(
            "target_ip_literal",
            "IP addresses are not allowed as target hosts",
        ));
    }
    [FalHost::Queue, FalHost::Run, FalHost::Rest]
        .into_iter()
        .find(|h| host.eq_ignore_ascii_case(h.name()))
        .ok_or_else(|| {
            forbidden(
                "target_host_not_allowed",
                "the target host must be queue.fal.run, fal.run or rest.fal.ai",
            )
        })
}

/// `/` + the segments joined by `/`.
fn join_path(segments: &[&str]) -> String {
    let mut path = String::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
    for segment in segments {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// Path rules: only unreserved characters and `/`; no `.`/`..` segments; no percent-encoding
/// (so no encoded dots or slashes); repeated and trailing slashes are folded away.
fn normalise_path(raw: &str) -> Result<Vec<&str>, TargetError> {
    if !raw.starts_with('/') {
        return Err(no_path());
    }
    // One pass: segments are collected on the way; the first byte not allowed ends it.
    let mut segments = Vec::with_capacity(8);
    let mut dots = false;
    let mut from = 0;
    for (at, b) in raw.bytes().enumerate() {
        if b == b'/' {
            let segment = &raw[from..at];
            dots |= segment == "." || segment == "..";
            if !segment.is_empty() {
                segments.push(segment);
            }
            from = at + 1;
        } else if !UNRESERVED[usize::from(b)] {
            // Percent-encoding anywhere is named as such (it could hide dots or slashes).
            return Err(if raw.contains('%') {
                percent_encoded()
            } else {
                path_character(raw[at..].chars().next().unwrap_or_default())
            });
        }
    }
    let last = &raw[from..];
    dots |= last == "." || last == "..";
    if !last.is_empty() {
        segments.push(last);
    }
    if dots {
        return Err(dot_segments());
    }
    if segments.is_empty() {
        return Err(no_path());
    }
    Ok(segments)
}

/// The bytes allowed in a target path segment: RFC 3986's unreserved characters.
static UNRESERVED: [bool; 256] = alphanumeric_and(b"-._~");

/// A byte table: true for ASCII letters and digits and for the bytes of `extra`.
const fn alphanumeric_and(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

fn no_path() -> TargetError {
    bad("invalid_target", "the target URL has no path")
}

fn percent_encoded() -> TargetError {
    bad(
        "target_path",
        "percent-encoded characters are not allowed in the target path",
    )
}

fn path_character(c: char) -> TargetError {
    bad(
        "target_path",
        format!("the character {c:?} is not allowed in the target path"),
    )
}

fn dot_segments() -> TargetError {
    bad(
        "target_path",
        "`.` and `..` segments are not allowed in the target path",
    )
}

/// A fal request id: 1-128 of `[A-Za-z0-9_-]`.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| REQUEST_ID[usize::from(b)])
}

/// The bytes of a request id: letters, digits, `-` and `_`.
static REQUEST_ID: [bool; 256] = alphanumeric_and(b"-_");

/// A fal endpoint id as config may name it: `owner/alias[/path]` (or with a `workflows/` or
/// `comfy/` namespace), segments of unreserved characters, none `.`/`..`/`requests`.
pub fn is_valid_endpoint_id(id: &str) -> bool {
    let segments: Vec<&str> = id.split('/').collect();
    split_app(&segments).is_some()
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && *s != "requests"
                && s.bytes().all(|b| UNRESERVED[usize::from(b)])
        })
}
