//! Every way a credential is refused, as the error the client sees. Messages say what is wrong
//! with a credential and never quote it.

use jsonwebtoken::errors::ErrorKind;

use super::key_set::KeyError;
use crate::error::ApiError;

/// A 401 `invalid_credentials` with `message` (which must never quote the credential).
pub(super) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_credentials",
        message: message.into(),
    }
}

/// Why no JWKS key could verify a token.
pub(super) fn key_error(error: KeyError) -> ApiError {
    match error {
        KeyError::Unknown => {
            invalid("the token's signing key (kid) is not one of the identity provider's keys")
        }
        KeyError::Mismatch => invalid("the token's algorithm does not match the type of its key"),
        KeyError::Ambiguous => {
            invalid("the token names no key id (kid) and the identity provider has several keys")
        }
        // The client cannot fix this; a 503 with Retry-After says "try again", where a 401
        // would tell apps to throw their (valid) session away.
        KeyError::Unavailable => ApiError::AuthUnavailable,
    }
}

/// Why `jsonwebtoken` refused a token.
pub(super) fn decode_error(kind: &ErrorKind) -> ApiError {
    match kind {
        ErrorKind::ExpiredSignature => ApiError::Unauthorized {
            code: "token_expired",
            message: "the token has expired".into(),
        },
        ErrorKind::ImmatureSignature => invalid("the token is not valid yet (nbf)"),
        ErrorKind::InvalidAudience => invalid("the token was issued for another audience (aud)"),
        ErrorKind::InvalidIssuer => invalid("the token was issued by another issuer (iss)"),
        ErrorKind::InvalidSignature => invalid("the token's signature is not valid"),
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => invalid("the token has no valid expiry (exp)"),
            "iss" => invalid("the token names no valid issuer (iss)"),
            "aud" => invalid("the token names no valid audience (aud)"),
            _ => invalid("the token lacks a required claim"),
        },
        ErrorKind::InvalidClaimFormat(_) => invalid("the token has a malformed time claim"),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => {
            invalid("the token's algorithm does not match the type of its key")
        }
        _ => invalid("the token is malformed"),
    }
}
