//! This proxy's own rules on top of fal's schema, from an endpoint's `[[endpoints]]` entry.
//! Pure. Every violation type starts with `policy_`.
//!
//! Values are judged as they will reach fal, defaults applied: a missing `resolution` is judged
//! as the schema's default. A value of the wrong type is left to the schema check.

use serde_json::{Map, Value};

use super::Violation;
use super::data_uri::{self, DataUriError};
use super::image_url::{self, HostRule, UrlError};
use super::messages::{join_or, one_of};
use super::parse::Entry;
use crate::config::EndpointConfig;

/// One endpoint's policy, prepared once at start-up.
#[derive(Debug, Clone)]
pub(super) struct Policy {
    max_num_images: Option<u64>,
    allowed_resolutions: Vec<Value>,
    allow_sync_mode: bool,
    allow_web_search: bool,
    max_image_urls: Option<usize>,
    allow_data_uris: bool,
    max_data_uri_bytes: usize,
    hosts: Vec<HostRule>,
    host_names: Vec<String>,
}

impl Policy {
    /// Prepares the policy keys of one endpoint.
    pub(super) fn new(config: &EndpointConfig) -> Self {
        Self {
            max_num_images: config.max_num_images,
            allowed_resolutions: config
                .allowed_resolutions
                .iter()
                .map(|r| Value::from(r.as_str()))
                .collect(),
            allow_sync_mode: config.allow_sync_mode,
            allow_web_search: config.allow_web_search,
            max_image_urls: config.max_image_urls,
            allow_data_uris: config.allow_data_uris,
            max_data_uri_bytes: config.max_data_uri_bytes,
            hosts: config
                .image_url_hosts
                .iter()
                .map(|h| HostRule::parse(h))
                .collect(),
            host_names: config
                .image_url_hosts
                .iter()
                .map(|h| format!("'{h}'"))
                .collect(),
        }
    }

    /// The most `image_urls` entries allowed, if limited.
    pub(super) fn max_image_urls(&self) -> Option<usize> {
        self.max_image_urls
    }

    /// Appends a violation for every rule `input` breaks. `input` has the schema's defaults
    /// applied; `defaulted` names the fields that were filled from them. `images` holds the
    /// `image_urls` entries' text (`None` for an entry that is not a string) when that field is
    /// a list.
    pub(super) fn check(
        &self,
        input: &Map<String, Value>,
        images: Option<&[Option<Entry<'_>>]>,
        defaulted: &[&str],
        out: &mut Vec<Violation>,
    ) {
        if let (Some(max), Some(n)) = (self.max_num_images, input.get("num_images").and_then(whole))
        {
            if n > max {
                out.push(Violation::field(
                    "num_images",
                    "policy_max_num_images",
                    format!("At most {max} images per request are allowed here, not {n}"),
                ));
            }
        }
        if !self.allowed_resolutions.is_empty()
            && let Some(resolution) = input.get("resolution").filter(|v| v.is_string())
            && !self.allowed_resolutions.contains(resolution)
        {
            let shown = resolution.as_str().unwrap_or_default();
            let which = if defaulted.contains(&"resolution") {
                format!("The default resolution '{shown}'")
            } else if shown.len() <= 32 {
                format!("Resolution '{shown}'")
            } else {
                "This resolution".to_string()
            };
            out.push(Violation::field(
                "resolution",
                "policy_resolution",
                format!(
                    "{which} is not allowed here; resolution should be {}",
                    one_of(&self.allowed_resolutions)
                ),
            ));
        }
        if !self.allow_sync_mode && input.get("sync_mode") == Some(&Value::Bool(true)) {
            out.push(Violation::field(
                "sync_mode",
                "policy_sync_mode",
                "sync_mode is not allowed here; submit to the queue and fetch the result instead",
            ));
        }
        if !self.allow_web_search && input.get("enable_web_search") == Some(&Value::Bool(true)) {
            out.push(Violation::field(
                "enable_web_search",
                "policy_web_search",
                "enable_web_search is not allowed here",
            ));
        }
        if let Some(urls) = images {
            self.check_image_urls(urls, out);
        }
    }

    fn check_image_urls(&self, urls: &[Option<Entry<'_>>], out: &mut Vec<Violation>) {
        if let Some(max) = self.max_image_urls
            && urls.len() > max
        {
            out.push(Violation::field(
                "image_urls",
                "policy_max_image_urls",
                format!(
                    "At most {max} image URLs are allowed here, not {}",
                    urls.len()
                ),
            ));
        }
        for (index, url) in urls.iter().enumerate() {
            if let Some(url) = url
                && let Some((kind, msg)) = self.check_image_url(url)
            {
                out.push(Violation::new(
                    &[Value::from("image_urls"), Value::from(index)],
                    kind,
                    msg,
                ));
            }
        }
    }

    /// The violation type and message for one `image_urls` entry, if it breaks a rule.
    fn check_image_url(&self, entry: &Entry<'_>) -> Option<(&'static str, String)> {
        let url = &*entry.text;
        if image_url::has_scheme(url, b"data:") {
            if !self.allow_data_uris {
                return Some((
                    "policy_data_uri_not_allowed",
                    "Data URIs are not accepted here; upload the image and pass its https:// URL"
                        .into(),
                ));
            }
            let max = self.max_data_uri_bytes;
            return data_uri::check(url, max, entry.base64_from).err().map(|error| match error {
                DataUriError::Malformed(msg) => ("policy_data_uri_invalid", msg.to_string()),
                DataUriError::MediaType(media) => (
                    "policy_data_uri_media_type",
                    format!("A data URI must hold an image (data:image/<type>;base64,...), not '{media}'"),
                ),
                DataUriError::Base64(problem) => ("policy_data_uri_base64", problem.describe()),
                DataUriError::TooLarge { decoded } => (
                    "policy_data_uri_too_large",
                    format!("The image in this data URI is {decoded} bytes, over the limit of {max} bytes"),
                ),
            });
        }
        image_url::check(&entry.as_str(), &self.hosts)
            .err()
            .map(|error| match error {
                UrlError::Scheme { plain_http: true } => (
                    "policy_image_url_scheme",
                    "Image URLs must use https:// (plain http:// is refused)".to_string(),
                ),
                UrlError::Scheme { plain_http: false } => (
                    "policy_image_url_scheme",
                    if self.allow_data_uris {
                        "An image must be an https:// URL or a data:image/<type>;base64,... URI"
                    } else {
                        "An image must be an https:// URL"
                    }
                    .to_string(),
                ),
                UrlError::Userinfo => (
                    "policy_image_url_userinfo",
                    "Image URLs must not carry a user name or password".to_string(),
                ),
                UrlError::Invalid(msg) => ("policy_image_url_invalid", msg.to_string()),
                UrlError::HostNotAllowed(host) => (
                    "policy_image_url_host",
                    format!(
                        "Images from host '{host}' are not allowed here; allowed hosts: {}",
                        join_or(&self.host_names)
                    ),
                ),
            })
    }
}

/// A non-negative whole number (`2` or `2.0`).
pub(super) fn whole(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}
