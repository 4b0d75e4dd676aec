//! ASCII helpers (PURE) for the header names matched on every answer.

/// Whether `name` is `lower` in any ASCII case, where `lower` holds only lowercase letters,
/// digits and `-` (as every name matched here does). Eight or four bytes are compared at once,
/// the last group overlapping the one before: a byte under a letter may differ from it in the
/// case bit (0x20) only, any other byte not at all. `eq_ignore_ascii_case` goes byte by byte:
/// matching each of an answer's header names cost ~60 instructions that way.
#[inline]
pub fn eq_ignore_case(name: &[u8], lower: &[u8]) -> bool {
    /// Bit 6 is set in the letters' bytes and clear in digits and `-`; shifted right it is
    /// the case bit.
    const LETTER: u64 = 0x4040_4040_4040_4040;
    fn word<const N: usize>(bytes: &[u8], at: usize) -> u64 {
        let mut word = [0u8; 8];
        word[..N].copy_from_slice(&bytes[at..at + N]);
        u64::from_le_bytes(word)
    }
    fn same<const N: usize>(name: &[u8], lower: &[u8], at: usize) -> bool {
        let (got, want) = (word::<N>(name, at), word::<N>(lower, at));
        got | ((want & LETTER) >> 1) == want
    }
    let len = lower.len();
    if name.len() != len {
        return false;
    }
    match len {
        0..4 => name.eq_ignore_ascii_case(lower),
        4..8 => same::<4>(name, lower, 0) && same::<4>(name, lower, len - 4),
        _ => {
            (0..len - 8).step_by(8).all(|at| same::<8>(name, lower, at))
                && same::<8>(name, lower, len - 8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::eq_ignore_case;

    proptest::proptest! {
        /// The word-at-a-time comparison agrees with the standard one on any bytes, for the
        /// names it is used with, and on names made from them by changing case or one byte.
        #[test]
        fn case_blind_comparison_matches_the_standard_one(
            which in 0usize..13,
            flips in proptest::collection::vec(proptest::bool::ANY, 19),
            change in proptest::option::of((0usize..19, proptest::num::u8::ANY)),
            other in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
        ) {
            let lower: &[u8] = [
                &b"x-fal-"[..], b"x-fal-target-url", b"etag", b"retry-after", b"content-type",
                b"cache-control", b"last-modified", b"content-disposition", b"content-length",
                b"transfer-encoding", b"connection", b"te", b"x-1",
            ][which];
            let mut name: Vec<u8> = lower
                .iter()
                .zip(&flips)
                .map(|(&b, &flip)| if flip { b.to_ascii_uppercase() } else { b })
                .collect();
            if let Some((at, byte)) = change {
                let at = at % name.len();
                name[at] = byte;
            }
            for name in [&name[..], &other[..]] {
                proptest::prop_assert_eq!(
                    eq_ignore_case(name, lower),
                    name.eq_ignore_ascii_case(lower),
                    "{:?} against {:?}", name, lower
                );
            }
        }
    }
}
