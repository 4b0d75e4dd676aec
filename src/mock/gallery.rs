//! The generated images: rendered once per job on first need (off the async threads), kept in a
//! cache bounded by total bytes (oldest evicted; an evicted image is rendered again on demand,
//! identically), served at `/files/gen/{request id}/{index}.{ext}`, and assembled into the
//! model's result JSON.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::try_join_all;
use serde_json::{Value, json};

use super::images::{Format, image_key, render};
use super::jobs::Job;
use super::{MockFal, detail, lock};

/// Largest total size of cached encoded images.
pub const IMAGE_CACHE_BYTES: usize = 256 * 1024 * 1024;

/// What the result JSON says about one generated image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Encoded size in bytes.
    pub size: usize,
    /// Encoding.
    pub format: Format,
    /// File name reported in the result.
    pub file_name: String,
}

/// Encoded images by (request id, index), bounded by total bytes.
#[derive(Debug, Default)]
pub struct ImageCache {
    entries: HashMap<(String, u32), Bytes>,
    order: VecDeque<(String, u32)>,
    bytes: usize,
    cap: usize,
}

impl ImageCache {
    /// An empty cache holding at most `cap` bytes (one oversized image is still kept alone).
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    /// Stores an image, evicting the oldest ones to stay under the cap.
    pub fn insert(&mut self, key: (String, u32), data: Bytes) {
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.len();
            self.order.retain(|k| k != &key);
        }
        while self.bytes + data.len() > self.cap {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
        self.bytes += data.len();
        self.order.push_back(key.clone());
        self.entries.insert(key, data);
    }

    /// The cached bytes of an image.
    pub fn get(&self, key: &(String, u32)) -> Option<Bytes> {
        self.entries.get(key).cloned()
    }
}

fn internal(message: String) -> Response {
    tracing::error!(%message, "mock fal: image generation failed");
    detail(StatusCode::INTERNAL_SERVER_ERROR, "Image generation failed")
}

/// Renders image `index` of a job on the blocking pool.
async fn render_one(job: &Job, index: u32) -> Result<Bytes, Response> {
    let p = Arc::clone(&job.params);
    let key = image_key(&p.prompt, p.seed, index);
    let task = tokio::task::spawn_blocking(move || render(p.width, p.height, p.format, key));
    match task.await {
        Ok(Ok(bytes)) => Ok(Bytes::from(bytes)),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e.to_string())),
    }
}

/// The job's images, rendering them (in parallel) and caching their bytes the first time.
pub async fn ensure(mock: &MockFal, job: &Job) -> Result<Arc<[ImageMeta]>, Response> {
    let metas = job
        .images
        .get_or_try_init(|| async {
            let rendered =
                try_join_all((0..job.params.num_images).map(|i| render_one(job, i))).await?;
            let mut cache = lock(&mock.inner.images);
            let metas: Vec<ImageMeta> = rendered
                .into_iter()
                .zip(0u32..)
                .map(|(bytes, index)| {
                    let meta = ImageMeta {
                        width: job.params.width,
                        height: job.params.height,
                        size: bytes.len(),
                        format: job.params.format,
                        file_name: format!("{index}.{}", job.params.format.ext()),
                    };
                    cache.insert((job.id.clone(), index), bytes);
                    meta
                })
                .collect();
            Ok::<_, Response>(Arc::from(metas))
        })
        .await?;
    Ok(Arc::clone(metas))
}

/// The bytes of image `index`, from the cache or rendered again.
pub async fn image_bytes(mock: &MockFal, job: &Job, index: u32) -> Result<Bytes, Response> {
    let key = (job.id.clone(), index);
    if let Some(bytes) = lock(&mock.inner.images).get(&key) {
        return Ok(bytes);
    }
    let bytes = render_one(job, index).await?;
    lock(&mock.inner.images).insert(key, bytes.clone());
    Ok(bytes)
}

/// The model's output for a completed job: image URLs under `public` (or data URIs with
/// `sync_mode`), the description and the seed.
pub async fn result_json(mock: &MockFal, job: &Job, public: &str) -> Result<Value, Response> {
    let metas = ensure(mock, job).await?;
    let mut images = Vec::with_capacity(metas.len());
    for (meta, index) in metas.iter().zip(0u32..) {
        let content_type = meta.format.content_type();
        let url = if job.params.sync_mode {
            let bytes = image_bytes(mock, job, index).await?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            format!("data:{content_type};base64,{b64}")
        } else {
            format!("{public}/files/gen/{}/{}", job.id, meta.file_name)
        };
        images.push(json!({
            "url": url,
            "content_type": content_type,
            "file_name": meta.file_name,
            "file_size": meta.size,
            "width": meta.width,
            "height": meta.height,
        }));
    }
    let prompt: String = job.params.prompt.chars().take(200).collect();
    let description = format!("Mock fal generated {} image(s) for: {prompt}", metas.len());
    Ok(json!({ "images": images, "description": description, "seed": job.params.seed }))
}

/// `GET /files/gen/{request id}/{index}.{ext}`.
pub async fn serve(
    State(mock): State<MockFal>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let missing = || detail(StatusCode::NOT_FOUND, "File not found");
    let Some(job) = mock.job(&id) else {
        return missing();
    };
    let Some((index, ext)) = file.split_once('.') else {
        return missing();
    };
    let Ok(index) = index.parse::<u32>() else {
        return missing();
    };
    if index >= job.params.num_images || ext != job.params.format.ext() {
        return missing();
    }
    match image_bytes(&mock, &job, index).await {
        Ok(bytes) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(job.params.format.content_type()),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(response) => response,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_oldest_by_bytes() {
        let mut cache = ImageCache::new(10);
        cache.insert(("a".into(), 0), Bytes::from_static(b"1234"));
        cache.insert(("a".into(), 1), Bytes::from_static(b"5678"));
        cache.insert(("b".into(), 0), Bytes::from_static(b"9abc"));
        assert!(cache.get(&("a".into(), 0)).is_none());
        assert_eq!(
            cache.get(&("a".into(), 1)).unwrap(),
            Bytes::from_static(b"5678")
        );
        assert_eq!(cache.bytes, 8);
        cache.insert(("c".into(), 0), Bytes::from(vec![0u8; 20]));
        assert_eq!((cache.entries.len(), cache.bytes), (1, 20));
    }
}
