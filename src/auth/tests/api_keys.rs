//! API keys, anonymous access and what the authenticator prints.

use super::*;
use crate::auth::{PrincipalKind, generate_key};
use crate::config::ApiKeyConfig;

fn auth(anonymous: bool) -> (Authenticator, String, String) {
    let (key, hash) = generate_key();
    let mut config = config();
    config.auth.api_keys = vec![ApiKeyConfig {
        id: "web".into(),
        key_sha256: Secret::new(hash.clone()),
        plan: "pro".into(),
    }];
    (Authenticator::new(&config, anonymous).unwrap(), key, hash)
}

#[tokio::test]
async fn bearer_and_key_schemes_are_accepted() {
    let (a, key, _) = auth(false);
    for v in [
        format!("Bearer {key}"),
        format!("Key {key}"),
        format!("key {key}"),
    ] {
        let p = a
            .authenticate(&with_authorization(&v), peer())
            .await
            .unwrap();
        assert_eq!(p.id.as_ref(), "web");
        assert_eq!(p.kind, PrincipalKind::ApiKey);
        assert_eq!(p.plan.as_ref(), "pro");
    }
}

#[tokio::test]
async fn missing_wrong_and_malformed_are_401() {
    let (a, key, _) = auth(false);
    let missing = a.authenticate(&HeaderMap::new(), peer()).await.unwrap_err();
    assert_eq!(missing.code(), "unauthorized");
    for v in [
        "Bearer nope",
        "Basic abc",
        "Bearer",
        &format!("Token {key}"),
        "Bearer  ",
    ] {
        let e = a
            .authenticate(&with_authorization(v), peer())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_credentials", "{v}");
    }
}

#[tokio::test]
async fn anonymous_only_without_credentials_and_keyed_by_address() {
    let (a, _, _) = auth(true);
    let p = a.authenticate(&HeaderMap::new(), peer()).await.unwrap();
    assert_eq!(p.kind, PrincipalKind::Anonymous);
    assert_eq!(p.id.as_ref(), "ip:203.0.113.7");
    assert_eq!(p.plan.as_ref(), "anonymous");
    // A wrong key never degrades to anonymous.
    assert!(check(&a, "wrong").await.is_err());
}

#[tokio::test]
async fn anonymous_clients_behind_a_trusted_proxy_are_keyed_by_the_forwarded_address() {
    let mut config = config();
    config.network.trusted_proxies = vec!["10.0.0.0/8".into(), "192.0.2.1".into()];
    let a = Authenticator::new(&config, true).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        HeaderValue::from_static("198.51.100.9, 2001:db8:aa:bb:cc::1, 10.1.1.1"),
    );
    let behind_proxy = SocketAddr::from(([10, 0, 0, 2], 443));
    let p = a.authenticate(&headers, behind_proxy).await.unwrap();
    assert_eq!(p.id.as_ref(), "ip:2001:db8:aa:bb::/64");
    // The same headers from an untrusted peer are ignored.
    let p = a.authenticate(&headers, peer()).await.unwrap();
    assert_eq!(p.id.as_ref(), "ip:203.0.113.7");
}

#[tokio::test]
async fn a_jwt_shaped_credential_is_an_api_key_when_jwts_are_off() {
    let (a, _, _) = auth(false);
    let e = check(&a, &hs256(&claims("u"))).await.unwrap_err();
    assert_eq!(e.code(), "invalid_credentials");
    assert_eq!(e.to_string(), "the credentials are not valid");
}

#[test]
fn bad_key_hashes_and_unknown_plans_are_config_errors() {
    let mut config = config();
    config.auth.api_keys = vec![ApiKeyConfig {
        id: "web".into(),
        key_sha256: Secret::new("zz"),
        plan: "default".into(),
    }];
    let e = Authenticator::new(&config, false).unwrap_err();
    assert!(e.to_string().contains("auth.api_keys[0].key_sha256"), "{e}");
    config.auth.api_keys[0].key_sha256 = Secret::new(generate_key().1);
    config.auth.api_keys[0].plan = "gold".into();
    let e = Authenticator::new(&config, false).unwrap_err();
    assert!(e.to_string().contains("auth.api_keys[0].plan"), "{e}");
}

#[test]
fn generated_keys_are_distinct_and_hash_to_64_hex() {
    let (k1, h1) = generate_key();
    let (k2, _) = generate_key();
    assert_ne!(k1, k2);
    assert_eq!(h1.len(), 64);
    assert!(format!("{:?}", auth(false).0).contains("keys: 1"));
}

#[test]
fn debug_output_holds_no_secret() {
    let (key, hash) = generate_key();
    let mut config = config();
    config.auth.api_keys = vec![ApiKeyConfig {
        id: "web".into(),
        key_sha256: Secret::new(hash.clone()),
        plan: "default".into(),
    }];
    let mut jwt = jwt_config(&["HS256", "RS256"]);
    jwt.jwks_url = Some("https://id.example.com/jwks.json".into());
    config.auth.jwt = Some(jwt);
    let debug = format!("{:?}", Authenticator::new(&config, true).unwrap());
    assert!(
        debug.contains("HS256") && debug.contains("*****"),
        "{debug}"
    );
    for secret in [SECRET, &hash, &hash[..16], &key] {
        assert!(!debug.contains(secret), "{debug}");
    }
    // The secret's bytes, as a derived Debug of a key would print them, are absent too.
    let bytes = format!("{:?}", &SECRET.as_bytes()[..8]);
    assert!(!debug.contains(bytes.trim_matches(['[', ']'])), "{debug}");
}
