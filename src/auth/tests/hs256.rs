//! JWTs with the HS256 shared secret: every claim check and every refusal.

use super::*;
use crate::auth::PrincipalKind;
use jsonwebtoken::Algorithm;

#[tokio::test]
async fn a_valid_token_is_a_jwt_principal_on_the_default_plan() {
    let a = hs256_auth();
    let token = hs256(&claims("user-1"));
    let p = check(&a, &token).await.unwrap();
    assert_eq!(p.id.as_ref(), "jwt:user-1");
    assert_eq!(p.kind, PrincipalKind::Jwt);
    assert_eq!(p.plan.as_ref(), "default");
    let via_key = a
        .authenticate(&with_authorization(&format!("Key {token}")), peer())
        .await
        .unwrap();
    assert_eq!(via_key, p);
}

#[tokio::test]
async fn expiry_is_required_and_honoured_with_leeway() {
    let a = hs256_auth();
    let mut c = claims("u");
    c["exp"] = json!(now() - 120);
    refused(&a, &hs256(&c), "token_expired", "expired").await;
    c["exp"] = json!(now() - 2); // within the 5 s leeway
    assert!(check(&a, &hs256(&c)).await.is_ok());
    c.as_object_mut().unwrap().remove("exp");
    refused(&a, &hs256(&c), "invalid_credentials", "no valid expiry").await;
    c["exp"] = json!("tomorrow");
    refused(&a, &hs256(&c), "invalid_credentials", "no valid expiry").await;
}

#[tokio::test]
async fn not_before_is_honoured_with_leeway() {
    let a = hs256_auth();
    let mut c = claims("u");
    c["nbf"] = json!(now() + 120);
    refused(&a, &hs256(&c), "invalid_credentials", "not valid yet").await;
    c["nbf"] = json!(now() + 2);
    assert!(check(&a, &hs256(&c)).await.is_ok());
}

#[tokio::test]
async fn audience_and_issuer_must_match() {
    let a = hs256_auth();
    let mut c = claims("u");
    c["aud"] = json!("someone-else");
    refused(&a, &hs256(&c), "invalid_credentials", "another audience").await;
    c["aud"] = json!(["someone-else", AUDIENCE]);
    assert!(check(&a, &hs256(&c)).await.is_ok());
    c.as_object_mut().unwrap().remove("aud");
    refused(&a, &hs256(&c), "invalid_credentials", "no valid audience").await;
    let mut c = claims("u");
    c["iss"] = json!("https://evil.example.com/");
    refused(&a, &hs256(&c), "invalid_credentials", "another issuer").await;
    c.as_object_mut().unwrap().remove("iss");
    refused(&a, &hs256(&c), "invalid_credentials", "no valid issuer").await;
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_tokens_are_refused() {
    let a = hs256_auth();
    let payload = b64(claims("u").to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes());
        let token = format!("{header}.{payload}.");
        refused(&a, &token, "invalid_credentials", "alg: none").await;
    }
    let other = EncodingKey::from_secret(b"another-secret-0123456789abcdef-0123");
    let token = sign(&Header::default(), &claims("u"), &other);
    refused(&a, &token, "invalid_credentials", "signature is not valid").await;
    // A valid signature over a different payload.
    let good = hs256(&claims("u"));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(b"{\"sub\":\"admin\"}"), parts[2]);
    refused(&a, &forged, "invalid_credentials", "signature is not valid").await;
}

#[tokio::test]
async fn algorithms_outside_the_config_are_refused() {
    let a = hs256_auth();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = sign(&Header::new(Algorithm::HS512), &claims("u"), &key);
    refused(&a, &token, "invalid_credentials", "accepted: HS256").await;
    // An RS256 header without any RS256 configured never reaches a key lookup.
    let header = b64(json!({ "alg": "RS256", "kid": "k" }).to_string().as_bytes());
    let payload = b64(claims("u").to_string().as_bytes());
    let token = format!("{header}.{payload}.c2ln");
    refused(&a, &token, "invalid_credentials", "not accepted").await;
    let header = b64(json!({ "alg": "HS256", "crit": ["b64"] })
        .to_string()
        .as_bytes());
    let token = format!("{header}.{payload}.c2ln");
    refused(&a, &token, "invalid_credentials", "crit").await;
    refused(&a, "e30.e30.", "invalid_credentials", "names no algorithm").await;
    refused(
        &a,
        "bm90IGpzb24.e30.c2ln",
        "invalid_credentials",
        "malformed",
    )
    .await;
}

#[tokio::test]
async fn the_client_id_comes_from_the_configured_claim() {
    let a = hs256_auth();
    let mut c = claims("u");
    c.as_object_mut().unwrap().remove("sub");
    refused(&a, &hs256(&c), "invalid_credentials", "`sub` claim").await;
    c["sub"] = json!("  ");
    refused(&a, &hs256(&c), "invalid_credentials", "`sub` claim").await;
    // `sub` must be a string or URI (RFC 7519); an object is not even a claim set we read.
    c["sub"] = json!({ "id": 1 });
    refused(&a, &hs256(&c), "invalid_credentials", "malformed").await;
    c["sub"] = json!("x".repeat(300));
    refused(&a, &hs256(&c), "invalid_credentials", "longer than").await;
    c["sub"] = json!(42);
    assert_eq!(check(&a, &hs256(&c)).await.unwrap().id.as_ref(), "jwt:42");

    let mut config = config();
    let mut jwt = jwt_config(&["HS256"]);
    jwt.client_id_claim = "uid".into();
    config.auth.jwt = Some(jwt);
    let a = Authenticator::new(&config, false).unwrap();
    c["uid"] = json!("alice");
    assert_eq!(
        check(&a, &hs256(&c)).await.unwrap().id.as_ref(),
        "jwt:alice"
    );
}

#[tokio::test]
async fn the_plan_comes_from_the_claim_or_the_default() {
    let a = hs256_auth();
    let mut c = claims("u");
    c["plan"] = json!("pro");
    assert_eq!(check(&a, &hs256(&c)).await.unwrap().plan.as_ref(), "pro");
    c["plan"] = json!(null);
    assert_eq!(
        check(&a, &hs256(&c)).await.unwrap().plan.as_ref(),
        "default"
    );
    c["plan"] = json!("gold");
    refused(
        &a,
        &hs256(&c),
        "invalid_credentials",
        "plan this proxy does not have",
    )
    .await;
    c["plan"] = json!(3);
    refused(&a, &hs256(&c), "invalid_credentials", "not a plan name").await;
}

#[tokio::test]
async fn api_keys_still_work_beside_jwts() {
    let (key, hash) = crate::auth::generate_key();
    let mut config = config();
    config.auth.jwt = Some(jwt_config(&["HS256"]));
    config.auth.api_keys = vec![crate::config::ApiKeyConfig {
        id: "web".into(),
        key_sha256: Secret::new(hash),
        plan: "default".into(),
    }];
    let a = Authenticator::new(&config, false).unwrap();
    assert_eq!(check(&a, &key).await.unwrap().kind, PrincipalKind::ApiKey);
    assert_eq!(
        check(&a, "a.b").await.unwrap_err().code(),
        "invalid_credentials"
    );
}

#[tokio::test]
async fn the_secret_file_is_read_once_without_its_newline() {
    let path = std::env::temp_dir().join(format!("fal-proxy-hs256-{}", rand::random::<u64>()));
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let mut config = config();
    let mut jwt = jwt_config(&["HS256"]);
    jwt.hs256_secret = None;
    jwt.hs256_secret_file = Some(path.clone());
    config.auth.jwt = Some(jwt);
    let a = Authenticator::new(&config, false).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(check(&a, &hs256(&claims("u"))).await.is_ok());
    let e = Authenticator::new(&config, false).unwrap_err();
    assert!(
        e.to_string().contains("cannot read the HS256 secret"),
        "{e}"
    );
}

#[test]
fn short_or_missing_secrets_are_config_errors() {
    let mut config = config();
    let mut jwt = jwt_config(&["HS256"]);
    jwt.hs256_secret = Some(Secret::new("short\n"));
    config.auth.jwt = Some(jwt.clone());
    let e = Authenticator::new(&config, false).unwrap_err();
    assert!(e.to_string().contains("at least 32 bytes"), "{e}");
    assert!(!e.to_string().contains("short"), "{e}");
    jwt.hs256_secret = None;
    config.auth.jwt = Some(jwt);
    assert!(Authenticator::new(&config, false).is_err());
}
