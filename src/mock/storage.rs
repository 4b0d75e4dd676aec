//! The fake storage's state: initiated upload tokens, stored files and open multipart sessions,
//! each bounded (oldest evicted). The HTTP side is in [`super::uploads`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// Total bytes of completed files kept (oldest evicted).
pub const FILE_STORE_BYTES: usize = 256 * 1024 * 1024;
/// Total bytes of not-yet-completed multipart parts kept (oldest sessions evicted).
pub const PART_STORE_BYTES: usize = 192 * 1024 * 1024;
/// Initiated uploads and multipart sessions remembered.
const MAX_TOKENS: usize = 10_000;

/// What an upload's initiate call declared.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The content type files are served with.
    pub content_type: String,
}

/// One part listed in a multipart completion.
#[derive(Debug, Deserialize)]
pub struct PartRef {
    /// 1-based part number.
    #[serde(rename = "partNumber")]
    pub part_number: u32,
    /// The ETag the part upload answered.
    pub etag: String,
}

#[derive(Debug)]
struct Session {
    meta: Meta,
    parts: BTreeMap<u32, (Bytes, String)>,
    bytes: usize,
}

/// Uploads: initiated tokens, stored files and open multipart sessions, all bounded.
#[derive(Debug, Default)]
pub struct Storage {
    initiated: HashMap<String, Meta>,
    initiated_order: VecDeque<String>,
    files: HashMap<String, (Meta, Bytes)>,
    file_order: VecDeque<String>,
    file_bytes: usize,
    sessions: HashMap<String, Session>,
    session_order: VecDeque<String>,
    part_bytes: usize,
}

impl Storage {
    /// Remembers an upload (or a multipart session) and returns its fresh token.
    pub fn initiate(&mut self, meta: Meta, multipart: bool) -> String {
        let token: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if multipart {
            while self.session_order.len() >= MAX_TOKENS {
                self.drop_oldest_session();
            }
            let session = Session {
                meta,
                parts: BTreeMap::new(),
                bytes: 0,
            };
            self.sessions.insert(token.clone(), session);
            self.session_order.push_back(token.clone());
        } else {
            while self.initiated_order.len() >= MAX_TOKENS {
                if let Some(old) = self.initiated_order.pop_front() {
                    self.initiated.remove(&old);
                }
            }
            self.initiated.insert(token.clone(), meta);
            self.initiated_order.push_back(token.clone());
        }
        token
    }

    fn drop_oldest_session(&mut self) {
        if let Some(old) = self.session_order.pop_front()
            && let Some(session) = self.sessions.remove(&old)
        {
            self.part_bytes -= session.bytes;
        }
    }

    /// Keeps a finished file, evicting the oldest to stay under [`FILE_STORE_BYTES`].
    pub fn store(&mut self, token: &str, meta: Meta, data: Bytes) {
        if let Some((_, old)) = self.files.remove(token) {
            self.file_bytes -= old.len();
            self.file_order.retain(|t| t != token);
        }
        while self.file_bytes + data.len() > FILE_STORE_BYTES {
            let Some(old) = self.file_order.pop_front() else {
                break;
            };
            if let Some((_, gone)) = self.files.remove(&old) {
                self.file_bytes -= gone.len();
            }
        }
        self.file_bytes += data.len();
        self.file_order.push_back(token.to_string());
        self.files.insert(token.to_string(), (meta, data));
    }

    /// Adds part `number` to a session and returns its ETag; 404 if there is no such session,
    /// 413 if there is no room.
    pub fn add_part(
        &mut self,
        token: &str,
        number: u32,
        data: Bytes,
    ) -> Result<String, StatusCode> {
        let previous = match self.sessions.get(token) {
            None => return Err(StatusCode::NOT_FOUND),
            Some(s) => s.parts.get(&number).map_or(0, |(b, _)| b.len()),
        };
        while self.part_bytes - previous + data.len() > PART_STORE_BYTES {
            if self.session_order.front().is_none_or(|t| t == token) {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            self.drop_oldest_session();
        }
        let etag = etag(&data);
        let session = self.sessions.get_mut(token).ok_or(StatusCode::NOT_FOUND)?;
        session.bytes = session.bytes - previous + data.len();
        self.part_bytes = self.part_bytes - previous + data.len();
        session.parts.insert(number, (data, etag.clone()));
        Ok(etag)
    }

    /// Joins the listed parts (ascending, etags matching) into the session's file.
    pub fn complete(&mut self, token: &str, parts: &[PartRef]) -> Result<(), (StatusCode, String)> {
        let session = self
            .sessions
            .get(token)
            .ok_or((StatusCode::NOT_FOUND, "Upload not found".into()))?;
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        if parts.is_empty()
            || parts
                .windows(2)
                .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(bad("Parts must be listed in ascending order".into()));
        }
        let mut joined = BytesMut::new();
        for part in parts {
            let Some((data, etag)) = session.parts.get(&part.part_number) else {
                return Err(bad(format!("Part {} was not uploaded", part.part_number)));
            };
            if etag.trim_matches('"') != part.etag.trim_matches('"') {
                return Err(bad(format!("ETag mismatch for part {}", part.part_number)));
            }
            joined.extend_from_slice(data);
        }
        let meta = session.meta.clone();
        if let Some(session) = self.sessions.remove(token) {
            self.part_bytes -= session.bytes;
            self.session_order.retain(|t| t != token);
        }
        self.store(token, meta, joined.freeze());
        Ok(())
    }

    /// The declared metadata of an initiated single upload.
    pub fn initiated(&self, token: &str) -> Option<Meta> {
        self.initiated.get(token).cloned()
    }

    /// A stored file.
    pub fn file(&self, token: &str) -> Option<(Meta, Bytes)> {
        self.files.get(token).cloned()
    }
}

/// An ETag for some bytes (quoted FNV-1a 64).
pub fn etag(data: &[u8]) -> String {
    format!("\"{:016x}\"", fnv(data))
}

/// FNV-1a 64 of some bytes.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            content_type: "image/png".into(),
        }
    }

    #[test]
    fn multipart_joins_parts_in_order_and_checks_etags() {
        let mut s = Storage::default();
        let token = s.initiate(meta(), true);
        let e2 = s.add_part(&token, 2, Bytes::from_static(b"world")).unwrap();
        let e1 = s
            .add_part(&token, 1, Bytes::from_static(b"hello "))
            .unwrap();
        assert_eq!(s.part_bytes, 11);
        let wrong = [
            PartRef {
                part_number: 1,
                etag: e2.clone(),
            },
            PartRef {
                part_number: 2,
                etag: e2.clone(),
            },
        ];
        assert_eq!(
            s.complete(&token, &wrong).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        let parts = [
            PartRef {
                part_number: 1,
                etag: e1,
            },
            PartRef {
                part_number: 2,
                etag: e2,
            },
        ];
        s.complete(&token, &parts).unwrap();
        assert_eq!(s.files[&token].1, Bytes::from_static(b"hello world"));
        assert_eq!((s.part_bytes, s.sessions.len()), (0, 0));
        assert_eq!(
            s.add_part(&token, 3, Bytes::new()).unwrap_err(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn file_store_is_bounded() {
        let mut s = Storage::default();
        let big = Bytes::from(vec![0u8; FILE_STORE_BYTES / 2 + 1]);
        s.store("a", meta(), big.clone());
        s.store("b", meta(), big);
        assert!(!s.files.contains_key("a") && s.files.contains_key("b"));
        assert_eq!(s.file_bytes, FILE_STORE_BYTES / 2 + 1);
    }
}
