//! JWTs verified with keys from a JWKS: RS256, ES256, EdDSA, rotation, the refresh bound,
//! and an identity provider that is down.

use super::jwks_server::{JwksServer, ed25519_key, jwks_auth, p256_key, rsa_key};
use super::*;
use crate::auth::PrincipalKind;
use std::sync::Arc;
use std::time::Duration;

/// Authenticates `tokens` all at once, each on its own task.
async fn all_at_once(
    auth: &Arc<Authenticator>,
    tokens: Vec<String>,
) -> Vec<Result<Principal, ApiError>> {
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let auth = auth.clone();
            tokio::spawn(async move { check(&auth, &t).await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_verify_with_a_fetched_and_cached_jwks() {
    let key = rsa_key(0, "k1");
    let server = JwksServer::start(vec![key.jwk.clone()]).await;
    let auth = server.auth(&["RS256"], 3600.0, 30.0);
    assert_eq!(server.fetches(), 0, "nothing is fetched at construction");
    let tokens = (0..20)
        .map(|i| key.sign(&claims(&format!("u{i}"))))
        .collect();
    for (i, result) in all_at_once(&auth, tokens).await.into_iter().enumerate() {
        let p = result.unwrap();
        assert_eq!(
            (p.id.as_ref(), p.kind),
            (format!("jwt:u{i}").as_str(), PrincipalKind::Jwt)
        );
    }
    assert_eq!(server.fetches(), 1, "concurrent first uses share one fetch");
    // No kid: the only RSA key will do.
    assert!(check(&auth, &key.sign_as(None, &claims("u"))).await.is_ok());
    // Signed by another key under the same kid.
    let impostor = rsa_key(1, "k1");
    refused(
        &auth,
        &impostor.sign(&claims("u")),
        "invalid_credentials",
        "signature is not valid",
    )
    .await;
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_refresh() {
    let (old, new) = (rsa_key(0, "old"), rsa_key(1, "new"));
    // Signing is slow in debug builds: make the tokens before the clock matters.
    let (old_token, new_token) = (old.sign(&claims("u")), new.sign(&claims("u")));
    let server = JwksServer::start(vec![old.jwk.clone()]).await;
    let auth = server.auth(&["RS256"], 3600.0, 0.5);
    assert!(check(&auth, &old_token).await.is_ok());
    server.set_keys(vec![new.jwk.clone()]);
    // Within the refresh bound the new kid is not fetched for yet.
    refused(&auth, &new_token, "invalid_credentials", "(kid)").await;
    assert_eq!(server.fetches(), 1);
    tokio::time::sleep(Duration::from_millis(550)).await;
    let p = check(&auth, &new_token).await.unwrap();
    assert_eq!(p.id.as_ref(), "jwt:u");
    assert_eq!(server.fetches(), 2);
    // The retired key is gone with the old set.
    refused(&auth, &old_token, "invalid_credentials", "(kid)").await;
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_key_dropped_from_the_set_is_refused_once_the_set_expires() {
    let (old, new) = (rsa_key(0, "old"), rsa_key(1, "new"));
    let token = old.sign(&claims("u"));
    let server = JwksServer::start(vec![old.jwk.clone()]).await;
    let auth = server.auth(&["RS256"], 0.3, 0.1);
    assert!(check(&auth, &token).await.is_ok());
    server.set_keys(vec![new.jwk.clone()]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    refused(&auth, &token, "invalid_credentials", "(kid)").await;
    assert_eq!(server.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_cannot_make_the_proxy_hammer_the_jwks_server() {
    let key = rsa_key(0, "k1");
    let server = JwksServer::start(vec![key.jwk.clone()]).await;
    let auth = server.auth(&["RS256"], 3600.0, 0.5);
    // Signing is slow in debug builds: make every token before the clock matters.
    let mut floods: Vec<Vec<String>> = (0..3)
        .map(|_| {
            (0..50)
                .map(|_| {
                    let kid = format!("kid-{}", rand::random::<u64>());
                    key.sign_as(Some(&kid), &claims("u"))
                })
                .collect()
        })
        .collect();
    let mut random_kids = move || floods.pop().unwrap();
    assert!(check(&auth, &key.sign(&claims("u"))).await.is_ok());
    // Inside the window: no fetch at all.
    for result in all_at_once(&auth, random_kids()).await {
        assert_eq!(result.unwrap_err().code(), "invalid_credentials");
    }
    assert_eq!(server.fetches(), 1);
    // After the window: one fetch for the whole flood, then none again.
    tokio::time::sleep(Duration::from_millis(550)).await;
    for result in all_at_once(&auth, random_kids()).await {
        assert!(result.unwrap_err().to_string().contains("(kid)"));
    }
    assert_eq!(server.fetches(), 2);
    all_at_once(&auth, random_kids()).await;
    assert_eq!(server.fetches(), 2);
    // The known key kept working throughout.
    assert!(check(&auth, &key.sign(&claims("u"))).await.is_ok());
}

#[tokio::test]
async fn a_caller_that_goes_away_mid_fetch_neither_cancels_nor_repeats_it() {
    let key = rsa_key(0, "k1");
    let token = key.sign(&claims("u"));
    let server = JwksServer::start(vec![key.jwk.clone()]).await;
    let auth = server.auth(&["RS256"], 3600.0, 30.0);
    let (a, t) = (auth.clone(), token.clone());
    let first = tokio::spawn(async move { check(&a, &t).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    first.abort(); // the fetch (50 ms) is under way
    assert!(check(&auth, &token).await.is_ok());
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn es256_and_eddsa_tokens_verify() {
    let (ec, ed, rsa) = (p256_key("ec"), ed25519_key("ed"), rsa_key(0, "rsa"));
    let server = JwksServer::start(vec![ec.jwk.clone(), ed.jwk.clone(), rsa.jwk.clone()]).await;
    let auth = server.auth(&["ES256", "EdDSA"], 3600.0, 30.0);
    assert_eq!(
        check(&auth, &ec.sign(&claims("e")))
            .await
            .unwrap()
            .id
            .as_ref(),
        "jwt:e"
    );
    assert_eq!(
        check(&auth, &ed.sign(&claims("d")))
            .await
            .unwrap()
            .id
            .as_ref(),
        "jwt:d"
    );
    // RS256 is not configured here, even though the set holds an RSA key.
    refused(
        &auth,
        &rsa.sign(&claims("u")),
        "invalid_credentials",
        "accepted: ES256, EdDSA",
    )
    .await;
    // An ES256 token naming the Ed25519 key's kid: the key type does not fit the algorithm.
    refused(
        &auth,
        &ec.sign_as(Some("ed"), &claims("u")),
        "invalid_credentials",
        "does not match",
    )
    .await;
    // No kid and two keys... of different kinds: only the fitting one counts.
    assert!(check(&auth, &ed.sign_as(None, &claims("u"))).await.is_ok());
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn a_kidless_token_is_refused_when_several_keys_fit() {
    let (a, b) = (p256_key("a"), p256_key("b"));
    let server = JwksServer::start(vec![a.jwk.clone(), b.jwk.clone()]).await;
    let auth = server.auth(&["ES256"], 3600.0, 30.0);
    refused(
        &auth,
        &a.sign_as(None, &claims("u")),
        "invalid_credentials",
        "several keys",
    )
    .await;
}

#[tokio::test]
async fn unusable_jwks_entries_are_skipped_and_never_used_as_hmac_keys() {
    let key = rsa_key(0, "k1");
    let oct = json!({ "kty": "oct", "kid": "hmac", "k": b64(SECRET.as_bytes()) });
    let enc = json!({ "kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB" });
    let junk = vec![oct, enc, json!({ "kty": "XYZ" }), json!(7), key.jwk.clone()];
    let server = JwksServer::start(junk).await;
    let auth = server.auth(&["HS256", "RS256"], 3600.0, 30.0);
    assert!(check(&auth, &key.sign(&claims("u"))).await.is_ok());
    // An RS256 token naming the encryption key finds no signing key under that kid.
    refused(
        &auth,
        &key.sign_as(Some("enc"), &claims("u")),
        "invalid_credentials",
        "(kid)",
    )
    .await;
    // Algorithm confusion: HS256 signed with the RSA public modulus as the secret.
    let modulus = key.jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let header = Header {
        kid: Some("k1".into()),
        ..Header::default()
    };
    let forged = sign(&header, &claims("u"), &EncodingKey::from_secret(&modulus));
    refused(
        &auth,
        &forged,
        "invalid_credentials",
        "signature is not valid",
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_identity_provider_is_a_503_and_held_keys_stay_in_use() {
    let key = rsa_key(0, "k1");
    let (token, new_kid) = (
        key.sign(&claims("u")),
        key.sign_as(Some("new"), &claims("u")),
    );
    let server = JwksServer::start(vec![key.jwk.clone()]).await;
    server.set_failing(true);
    let auth = server.auth(&["RS256"], 0.6, 0.3);
    let e = check(&auth, &token).await.unwrap_err();
    assert_eq!((e.status().as_u16(), e.code()), (503, "auth_unavailable"));
    // Within the refresh bound the failure is remembered, not retried.
    assert_eq!(
        check(&auth, &token).await.unwrap_err().code(),
        "auth_unavailable"
    );
    assert_eq!(server.fetches(), 1);
    server.set_failing(false);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(check(&auth, &token).await.is_ok());
    // The set goes stale and cannot be refetched: the key held is still good.
    server.set_failing(true);
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert!(check(&auth, &token).await.is_ok());
    assert_eq!(server.fetches(), 3);
    // A kid the proxy has never seen, while the provider is down, may be a new key: 503.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        check(&auth, &new_kid).await.unwrap_err().code(),
        "auth_unavailable"
    );
    assert_eq!(server.fetches(), 4);

    // Nothing listening at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let auth = jwks_auth(&url, &["RS256"], 3600.0, 30.0);
    let e = check(&auth, &key.sign(&claims("u"))).await.unwrap_err();
    assert_eq!(e.code(), "auth_unavailable");
}
