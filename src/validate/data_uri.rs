//! `data:` URIs in `image_urls`: the header grammar this proxy accepts and a single-pass check of
//! the standard base64 payload that never allocates a decoded buffer. Pure.

/// Longest header (`data:` up to the `,`) accepted; the `,` is searched for only this far.
const MAX_HEADER_LEN: usize = 256;

/// Why a data URI was refused (the caller turns it into a violation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DataUriError {
    /// Not `data:<type>/<subtype>[;param]*;base64,<payload>`.
    Malformed(&'static str),
    /// A media type other than `image/*` (carries the media type as written, bounded in length).
    MediaType(String),
    /// The payload is not canonical standard base64.
    Base64(Base64Error),
    /// The decoded payload would be larger than allowed.
    TooLarge {
        /// Decoded size in bytes, computed from the length.
        decoded: usize,
    },
}

/// What is wrong with a base64 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Base64Error {
    /// The payload is empty.
    Empty,
    /// The length is not a multiple of 4 (padding missing or extra characters).
    Length(usize),
    /// A byte outside `A-Z a-z 0-9 + /` (or a `=` before the end) at this offset.
    Symbol(usize),
    /// The last character carries bits that the padding says are unused.
    TrailingBits,
}

impl Base64Error {
    /// A human description.
    pub(super) fn describe(self) -> String {
        match self {
            Self::Empty => "The data URI holds no data".into(),
            Self::Length(len) => format!(
                "The base64 data is {len} characters long, not a multiple of 4 (missing or extra `=` padding?)"
            ),
            Self::Symbol(at) => format!(
                "The base64 data has an invalid character at offset {at} (only A-Z, a-z, 0-9, +, / and final `=` padding are allowed; no whitespace, no URL-safe alphabet)"
            ),
            Self::TrailingBits => {
                "The base64 data is not canonical: its last character has non-zero unused bits"
                    .into()
            }
        }
    }
}

/// Checks a data URI (`uri` starts with `data:`, any case) against the accepted grammar, then its
/// decoded size against `max_bytes`, then its base64 payload. The size is judged before the payload
/// is scanned, so an oversized upload costs no scan.
///
/// `base64_from` is what the parser already knows: every byte of `uri` from there up to its final
/// `=` padding is in the base64 alphabet (`uri.len()` when it knows nothing). When the payload
/// starts at or after it, the payload is not scanned a second time.
pub(super) fn check(uri: &[u8], max_bytes: usize, base64_from: usize) -> Result<(), DataUriError> {
    let rest = uri.get(5..).unwrap_or_default();
    let window = &rest[..rest.len().min(MAX_HEADER_LEN)];
    let comma = window
        .iter()
        .position(|&b| b == b',')
        .ok_or(DataUriError::Malformed(
            "A data URI must look like data:image/<type>;base64,<data>",
        ))?;
    let header = &rest[..comma];
    let payload = &rest[comma + 1..];
    check_header(header)?;
    let decoded = decoded_len(payload);
    if decoded > max_bytes {
        return Err(DataUriError::TooLarge { decoded });
    }
    if payload.is_empty() {
        return Err(DataUriError::Base64(Base64Error::Empty));
    }
    let scanned = base64_from <= 5 + comma + 1;
    check_base64(payload, scanned).map_err(DataUriError::Base64)?;
    Ok(())
}

/// `<type>/<subtype>[;name=value]*;base64`, with `<type>` = `image`.
fn check_header(header: &[u8]) -> Result<(), DataUriError> {
    let mut parts = header.split(|&b| b == b';');
    let media = parts.next().unwrap_or_default();
    let params: Vec<&[u8]> = parts.collect();
    let Some((last, middle)) = params.split_last() else {
        return Err(DataUriError::Malformed(
            "Only base64 data URIs are accepted: data:image/<type>;base64,<data>",
        ));
    };
    let (kind, subtype) = match media.iter().position(|&b| b == b'/') {
        Some(slash) => (&media[..slash], &media[slash + 1..]),
        None => (media, &b""[..]),
    };
    if !kind.eq_ignore_ascii_case(b"image") || !is_token(subtype) {
        return Err(DataUriError::MediaType(
            String::from_utf8_lossy(media).into_owned(),
        ));
    }
    if !last.eq_ignore_ascii_case(b"base64") {
        return Err(DataUriError::Malformed(
            "Only base64 data URIs are accepted: data:image/<type>;base64,<data>",
        ));
    }
    for param in middle {
        let ok = match param.iter().position(|&b| b == b'=') {
            Some(eq) => is_token(&param[..eq]) && is_token(&param[eq + 1..]),
            None => false,
        };
        if !ok {
            return Err(DataUriError::Malformed(
                "Data URI parameters must be name=value pairs before ;base64",
            ));
        }
    }
    Ok(())
}

/// An RFC 9110 token: one or more of `!#$%&'*+-.^_`|~`, digits and letters.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The decoded size of padded base64, from its length and final `=` count alone (exact for
/// valid input; for a length that is not a multiple of 4, what the characters would carry).
fn decoded_len(payload: &[u8]) -> usize {
    let len = payload.len();
    if len % 4 != 0 {
        return len / 4 * 3 + (len % 4) * 3 / 4;
    }
    len / 4 * 3 - padding(payload)
}

/// How many `=` end `text` (at most two: base64's padding).
pub(super) fn padding(text: &[u8]) -> usize {
    text.iter()
        .rev()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count()
}

/// Bytes checked per step by [`all_b64`] in the scans over megabytes of base64.
pub(super) const B64_CHUNK: usize = 64;

/// Is every byte of `chunk` in the base64 alphabet? No early exit, so the compiler vectorises
/// it; callers hand it [`B64_CHUNK`] bytes at a time and look closer only when it says no.
#[inline(always)]
pub(super) fn all_b64(chunk: &[u8]) -> bool {
    chunk.iter().fold(true, |ok, &b| ok & is_b64(b))
}

/// Is `b` in the standard base64 alphabet (`A-Z a-z 0-9 + /`)? Branch-free so loops vectorise.
#[inline(always)]
pub(super) fn is_b64(b: u8) -> bool {
    (b.wrapping_sub(b'A') < 26)
        | (b.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'+')
        | (b == b'/')
}

/// The 6-bit value of a standard base64 character (only called on characters that passed
/// [`is_b64`]).
fn b64_value(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        _ => 63,
    }
}

/// Checks canonical standard base64 with padding (exactly what
/// `base64::engine::general_purpose::STANDARD` decodes) in one pass, without decoding.
/// Returns the decoded length. `scanned`: the caller already knows that every byte before the
/// final `=` padding (at most two) is in the alphabet, so only the length and padding are checked.
pub(super) fn check_base64(input: &[u8], scanned: bool) -> Result<usize, Base64Error> {
    let len = input.len();
    if len == 0 {
        return Ok(0);
    }
    if len % 4 != 0 {
        return Err(Base64Error::Length(len));
    }
    let pad = padding(input);
    let body = &input[..len - pad];
    if !scanned {
        let mut offset = 0;
        for chunk in body.chunks(B64_CHUNK) {
            if !all_b64(chunk) {
                let at = chunk.iter().position(|&b| !is_b64(b)).unwrap_or_default();
                return Err(Base64Error::Symbol(offset + at));
            }
            offset += chunk.len();
        }
    }
    // The character before the padding must not carry bits the padding declares unused.
    let unused_mask = match pad {
        2 => 0b1111,
        1 => 0b0011,
        _ => 0,
    };
    if let Some(&last) = body.last()
        && b64_value(last) & unused_mask != 0
    {
        return Err(Base64Error::TrailingBits);
    }
    Ok(len / 4 * 3 - pad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    fn b64(input: &[u8]) -> Result<usize, Base64Error> {
        check_base64(input, false)
    }

    /// Where the trailing base64 run of `uri` begins, as the parser reports it.
    fn run_start(uri: &str) -> usize {
        let bytes = uri.as_bytes();
        let pad = padding(bytes);
        let run = bytes[..bytes.len() - pad]
            .iter()
            .rev()
            .take_while(|&&b| is_b64(b))
            .count();
        bytes.len() - pad - run
    }

    #[test]
    fn known_cases() {
        assert_eq!(b64(b""), Ok(0));
        assert_eq!(b64(b"YQ=="), Ok(1));
        assert_eq!(b64(b"YWI="), Ok(2));
        assert_eq!(b64(b"YWJj"), Ok(3));
        assert_eq!(b64(b"YR=="), Err(Base64Error::TrailingBits));
        assert_eq!(b64(b"YWJ="), Err(Base64Error::TrailingBits));
        assert_eq!(b64(b"YQ"), Err(Base64Error::Length(2)));
        assert_eq!(b64(b"YQ="), Err(Base64Error::Length(3)));
        assert_eq!(b64(b"Y==="), Err(Base64Error::Symbol(1)));
        assert_eq!(b64(b"===="), Err(Base64Error::Symbol(0)));
        assert_eq!(b64(b"YW-j"), Err(Base64Error::Symbol(2)));
        assert_eq!(b64(b"YW=j"), Err(Base64Error::Symbol(2)));
        assert_eq!(b64(b"YW j"), Err(Base64Error::Symbol(2)));
    }

    #[test]
    fn header_grammar() {
        let ok = |s: &str| check(s.as_bytes(), usize::MAX, s.len());
        assert_eq!(ok("data:image/png;base64,YWJj"), Ok(()));
        assert_eq!(ok("DATA:Image/PNG;BASE64,YWJj"), Ok(()));
        assert_eq!(ok("data:image/svg+xml;charset=utf-8;base64,YWJj"), Ok(()));
        assert!(
            matches!(ok("data:text/plain;base64,YWJj"), Err(DataUriError::MediaType(m)) if m == "text/plain")
        );
        assert!(matches!(
            ok("data:;base64,YWJj"),
            Err(DataUriError::MediaType(_))
        ));
        assert!(matches!(
            ok("data:image;base64,YWJj"),
            Err(DataUriError::MediaType(_))
        ));
        assert!(matches!(
            ok("data:image/;base64,YWJj"),
            Err(DataUriError::MediaType(_))
        ));
        assert!(matches!(
            ok("data:image/png,YWJj"),
            Err(DataUriError::Malformed(_))
        ));
        assert!(matches!(
            ok("data:image/png;utf8,abc"),
            Err(DataUriError::Malformed(_))
        ));
        assert!(matches!(
            ok("data:image/png;x;base64,YWJj"),
            Err(DataUriError::Malformed(_))
        ));
        assert!(matches!(
            ok("data:image/png;base64"),
            Err(DataUriError::Malformed(_))
        ));
        assert!(matches!(ok("data:"), Err(DataUriError::Malformed(_))));
        assert_eq!(
            ok("data:image/png;base64,"),
            Err(DataUriError::Base64(Base64Error::Empty))
        );
    }

    #[test]
    fn size_is_judged_from_the_length() {
        let payload = STANDARD.encode(vec![7u8; 1000]);
        let uri = format!("data:image/png;base64,{payload}");
        assert_eq!(check(uri.as_bytes(), 1000, uri.len()), Ok(()));
        assert_eq!(
            check(uri.as_bytes(), 999, uri.len()),
            Err(DataUriError::TooLarge { decoded: 1000 })
        );
        let uri = format!("data:image/png;base64,{}", STANDARD.encode(vec![7u8; 999]));
        assert_eq!(check(uri.as_bytes(), 999, uri.len()), Ok(()));
    }

    fn b64ish() -> impl Strategy<Value = Vec<u8>> {
        // Mostly alphabet characters and padding, sometimes anything, so both outcomes occur.
        prop_oneof![
            prop::collection::vec(
                prop::sample::select(b"ABCXYZabcxyz0189+/=-_ \n".to_vec()),
                0..24
            ),
            prop::collection::vec(any::<u8>(), 0..24),
            prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|raw| STANDARD.encode(raw).into_bytes()),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_the_base64_crate(input in b64ish()) {
            let ours = b64(&input);
            let theirs = STANDARD.decode(&input);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "input {:?}", String::from_utf8_lossy(&input));
            if let (Ok(len), Ok(decoded)) = (ours, theirs) {
                prop_assert_eq!(len, decoded.len());
            }
        }

        /// What the parser knows of the base64 run never changes the verdict.
        #[test]
        fn a_known_base64_run_changes_no_verdict(
            header in prop::sample::select(vec!["data:image/png;base64,", "data:image/png;x=1;base64,", "data:image/png,", "data:"]),
            payload in b64ish(),
        ) {
            let uri = format!("{header}{}", String::from_utf8_lossy(&payload));
            prop_assert_eq!(check(uri.as_bytes(), 100, run_start(&uri)), check(uri.as_bytes(), 100, uri.len()));
        }

        #[test]
        fn length_matches_real_decoding(raw in prop::collection::vec(any::<u8>(), 0..300)) {
            let encoded = STANDARD.encode(&raw);
            prop_assert_eq!(b64(encoded.as_bytes()), Ok(raw.len()));
            prop_assert_eq!(decoded_len(encoded.as_bytes()), raw.len());
        }
    }
}
