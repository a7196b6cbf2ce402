//! `identity: PerServiceAccount`: one ServiceAccount's own token (from the
//! TokenRequest API, audience already right) exchanged for a registry
//! credential of the cloud identity its annotation names.
//!
//! - AWS: `sts:AssumeRoleWithWebIdentity` through aws-sdk-sts, unsigned (the
//!   ServiceAccount token is the only credential; the operator's own AWS
//!   identity takes no part), then ECR as the shared path calls it, with the
//!   role's temporary credentials: ECR names the role's own account's registry.
//! - Google: the STS token exchange (`/v1/token`), then IAM Credentials
//!   `generateAccessToken` for the Google service account, over the
//!   operator's HTTP client: gcp_auth has no token-exchange API (it reads
//!   service-account keys, the metadata server and gcloud's files only).
//! - Azure: azure_identity's `ClientAssertionCredential` with the
//!   ServiceAccount token as the assertion, then the ACR exchange.
//!
//! A refusal by the cloud's trust configuration is
//! [`MintError::IdentityRefused`], naming the identity and the ServiceAccount
//! it must admit. No error carries the ServiceAccount token or a token the
//! exchange yields: provider answers are read for their error fields only,
//! and every error text is scrubbed of the token in hand and of anything
//! token-shaped before it leaves this module.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use aws_sdk_ecr::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::ClientMethodOptions;
use azure_identity::{ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;

use super::{Credential, MAX_SECRET_LEN, MintError, MintInput, acr, ecr, gcr};
use crate::api::{AcrProvider, EcrProvider, GcrProvider, ProviderSpec};
use crate::identity::WorkloadIdentity;
use crate::redact::Sensitive;

const GOOGLE_STS: &str = "https://sts.googleapis.com";
const GOOGLE_IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com";
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest error answer read: enough for any error document, no more.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// Longest run of token characters an error text may keep: longer than any
/// name (ARN segment, DNS label, email part), shorter than any token.
const MAX_WORD: usize = 80;

/// Exchange `token` (the ServiceAccount's own TokenRequest token, audience already right) for a registry credential of `identity`.
pub async fn mint_for(
    provider: ProviderSpec<'_>,
    identity: &WorkloadIdentity,
    token: &Sensitive<String>,
    session_name: &str,
    input: &MintInput<'_>,
) -> Result<Credential, MintError> {
    let ex = Exchange::new(identity, token.expose());
    super::guarded(provider.kind(), async {
        let minted = match (provider, identity) {
            (ProviderSpec::Ecr(p), WorkloadIdentity::Aws { role_arn }) => aws(p, &ex, role_arn, session_name).await,
            (ProviderSpec::Gcr(p), WorkloadIdentity::Google { service_account }) => {
                google(p, &ex, service_account, input.http).await
            }
            (ProviderSpec::Acr(p), WorkloadIdentity::Azure { client_id, tenant_id }) => {
                azure(p, &ex, client_id, tenant_id, input).await
            }
            _ => Err(MintError::MintFailed(format!(
                "{} cannot be used with the {} provider",
                identity.describe(),
                provider.kind().as_str()
            ))),
        };
        minted.map_err(|e| ex.scrub_error(e))
    })
    .await
}

/// The AWS `RoleSessionName` for `wanted`: characters outside `[\w+=,.@-]`
/// become `-`, at least 2 and at most 64 characters (a longer name keeps a
/// prefix and a digest of the whole, so distinct names stay distinct).
pub fn role_session_name(wanted: &str) -> String {
    const MAX: usize = 64;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    let name: String = wanted.chars().map(|c| if allowed(c) { c } else { '-' }).collect();
    match name.len() {
        0 => "regcred".into(),
        1 => format!("regcred-{name}"),
        n if n <= MAX => name,
        _ => {
            let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
            let hash: String = sum.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
            format!("{}-{hash}", &name[..MAX - hash.len() - 1])
        }
    }
}

/// One exchange: whose it is, for errors that say who must admit whom, and
/// the token no error may carry.
struct Exchange<'a> {
    identity: &'a WorkloadIdentity,
    token: &'a str,
    /// The token's `sub` (`system:serviceaccount:<ns>:<sa>`) and `aud`, unverified.
    subject: String,
    audience: String,
}

impl<'a> Exchange<'a> {
    fn new(identity: &'a WorkloadIdentity, token: &'a str) -> Self {
        let claims = token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .unwrap_or_default();
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let subject = text(&claims["sub"]).unwrap_or_else(|| "the ServiceAccount".into());
        let audience = text(&claims["aud"])
            .or_else(|| text(&claims["aud"][0]))
            .unwrap_or_else(|| "of the token".into());
        Self {
            identity,
            token,
            subject,
            audience,
        }
    }

    fn refused(&self, message: String) -> MintError {
        MintError::IdentityRefused {
            identity: self.identity.describe(),
            message,
        }
    }

    /// A provider's own words, fit for an error: first line, no token, short.
    fn quote(&self, text: &str) -> String {
        let first = text.lines().next().unwrap_or_default();
        acr::short(&self.hide(first))
    }

    /// `text` without the token in hand or anything token-shaped.
    fn hide(&self, text: &str) -> String {
        if self.token.is_empty() {
            return scrub(text);
        }
        scrub(&text.replace(self.token, "<token>"))
    }

    /// The last guard: error texts built from SDK errors pass through here too.
    fn scrub_error(&self, err: MintError) -> MintError {
        let clean = |m: String| self.hide(&m);
        match err {
            MintError::MintFailed(m) => MintError::MintFailed(clean(m)),
            MintError::InvalidProviderResponse(m) => MintError::InvalidProviderResponse(clean(m)),
            MintError::IdentityRefused { identity, message } => MintError::IdentityRefused {
                identity,
                message: clean(message),
            },
            other => other,
        }
    }
}

/// `text` with every run of token characters longer than [`MAX_WORD`] cut out.
fn scrub(text: &str) -> String {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "-_.~+/=".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        // A resource name (`//iam.googleapis.com/projects/…` of a principal
        // to grant) is long but no token starts with `//`.
        if word.len() > MAX_WORD && !word.starts_with("//") {
            out.push_str("<redacted>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if token_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

async fn aws(p: &EcrProvider, ex: &Exchange<'_>, role_arn: &str, session_name: &str) -> Result<Credential, MintError> {
    let config = ecr::loader(&p.region).no_credentials().load().await;
    let mut sts = aws_sdk_sts::config::Builder::from(&config);
    if let Some(url) = &p.sts_endpoint_url {
        sts = sts.endpoint_url(url);
    }
    let out = aws_sdk_sts::Client::from_conf(sts.build())
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(role_session_name(session_name))
        .web_identity_token(ex.token)
        .send()
        .await
        .map_err(|e| sts_error(e, ex))?;
    let keys = out
        .credentials()
        .ok_or_else(|| MintError::InvalidProviderResponse("STS returned no credentials".into()))?;
    let keys = Credentials::new(
        keys.access_key_id(),
        keys.secret_access_key(),
        Some(keys.session_token().to_string()),
        SystemTime::try_from(*keys.expiration()).ok(),
        "regcred-web-identity",
    );
    let config = config
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(keys))
        .build();
    p.authorization(&config).await
}

/// The STS error codes of a web identity the role's trust does not admit.
fn sts_refuses(code: &str) -> bool {
    matches!(code, "AccessDenied" | "InvalidIdentityToken" | "IDPRejectedClaim")
}

fn sts_error(err: SdkError<AssumeRoleWithWebIdentityError>, ex: &Exchange<'_>) -> MintError {
    if let SdkError::ServiceError(service) = &err
        && let Some(code) = service.err().code()
        && sts_refuses(code)
    {
        return ex.refused(format!(
            "{code}: {}; the role's trust policy must allow sts:AssumeRoleWithWebIdentity for {} \
             (audience {}) from this cluster's OIDC provider",
            ex.quote(service.err().message().unwrap_or("no message")),
            ex.subject,
            ex.audience
        ));
    }
    ecr::classify(
        err,
        "STS AssumeRoleWithWebIdentity",
        "check the role ARN and that STS is reachable (stsEndpointUrl)",
    )
}

async fn google(
    p: &GcrProvider,
    ex: &Exchange<'_>,
    gsa: &str,
    http: &reqwest::Client,
) -> Result<Credential, MintError> {
    let provider = p.workload_identity_provider.as_deref().ok_or_else(|| {
        MintError::MintFailed("identity PerServiceAccount needs workloadIdentityProvider on the gcr provider".into())
    })?;
    let email_char = |c: char| c.is_ascii_alphanumeric() || "@.-_".contains(c);
    if !gsa.contains('@') || !gsa.chars().all(email_char) {
        return Err(MintError::MintFailed(format!(
            "{gsa:?} is not a Google service account email; fix the iam.gke.io/gcp-service-account annotation"
        )));
    }
    let sts = p
        .sts_endpoint_url
        .as_deref()
        .unwrap_or(GOOGLE_STS)
        .trim_end_matches('/');
    let scope = gcr::SCOPES.join(" ");
    let request = http.post(format!("{sts}/v1/token")).form(&[
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("audience", provider),
        ("scope", &scope),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("subject_token", ex.token),
        ("subject_token_type", JWT_TOKEN_TYPE),
    ]);
    let federated = match send(request, "the Google STS token exchange", ex).await? {
        Ok(body) => parse_federated(&body)?,
        Err(no) if google_sts_refuses(no.status) => {
            return Err(ex.refused(format!(
                "Google STS refused the token exchange (HTTP {}: {}); the workload identity pool provider \
                 {provider} must trust this cluster's ServiceAccount issuer and audience {}",
                no.status, no.summary, ex.audience
            )));
        }
        Err(no) => return Err(no.failed("the Google STS token exchange")),
    };
    let iam = (p.iam_credentials_endpoint_url.as_deref())
        .unwrap_or(GOOGLE_IAM_CREDENTIALS)
        .trim_end_matches('/');
    let request = http
        .post(format!("{iam}/v1/projects/-/serviceAccounts/{gsa}:generateAccessToken"))
        .bearer_auth(federated.expose())
        .json(&serde_json::json!({ "scope": gcr::SCOPES }));
    let (access_token, expires) = match send(request, "IAM generateAccessToken", ex).await? {
        Ok(body) => parse_generated(&body)?,
        Err(no) if google_iam_refuses(no.status, &no.code) => {
            return Err(ex.refused(format!(
                "IAM generateAccessToken refused (HTTP {}: {}); grant {} roles/iam.workloadIdentityUser on {gsa}",
                no.status,
                no.summary,
                principal(provider, &ex.subject)
            )));
        }
        Err(no) => return Err(no.failed("IAM generateAccessToken")),
    };
    Ok(gcr::credential(
        &p.registries,
        access_token.expose(),
        expires.as_second(),
    ))
}

/// The Google STS statuses of a token the pool provider does not accept.
fn google_sts_refuses(status: u16) -> bool {
    matches!(status, 400 | 401 | 403)
}

/// The IAM Credentials answers of a federated principal not allowed to act as the service account.
fn google_iam_refuses(status: u16, code: &str) -> bool {
    matches!(status, 403 | 404) || matches!(code, "PERMISSION_DENIED" | "NOT_FOUND")
}

/// The federated principal of ServiceAccount `subject` in the pool of `provider`.
fn principal(provider: &str, subject: &str) -> String {
    let pool = provider.split("/providers/").next().unwrap_or(provider);
    format!("principal:{pool}/subject/{subject}")
}

/// A Google error answer: its status and error fields, never its body.
struct Refusal {
    status: u16,
    /// `error` (STS) or `error.status` (IAM).
    code: String,
    /// Code and message, scrubbed.
    summary: String,
}

impl Refusal {
    fn failed(self, what: &str) -> MintError {
        MintError::MintFailed(format!("{what} answered HTTP {}: {}", self.status, self.summary))
    }
}

/// Send `request`: the body of a success, the [`Refusal`] of an error
/// answer, `Throttled` for 429, `MintFailed` when no answer came.
async fn send(
    request: reqwest::RequestBuilder,
    what: &str,
    ex: &Exchange<'_>,
) -> Result<Result<Vec<u8>, Refusal>, MintError> {
    let response = request
        .timeout(HTTP_TIMEOUT)
        .send()
        .await
        .map_err(|e| MintError::MintFailed(format!("{what} failed: {}", acr::transport_error(&e))))?;
    let status = response.status().as_u16();
    if status == 429 {
        return Err(MintError::Throttled {
            retry_after: acr::retry_after(&response),
        });
    }
    let limit = if status < 300 {
        MAX_SECRET_LEN * 2
    } else {
        MAX_ERROR_BODY
    };
    let body = crate::bounded::read(response, limit).await.map_err(|e| match e {
        crate::bounded::BodyError::TooLarge(n) => {
            MintError::InvalidProviderResponse(format!("the answer of {what} is larger than {n} bytes"))
        }
        crate::bounded::BodyError::Transport(e) => MintError::MintFailed(format!(
            "reading the answer of {what} failed: {}",
            acr::transport_error(&e)
        )),
    })?;
    if (200..300).contains(&status) {
        return Ok(Ok(body));
    }
    let (code, message) = google_error(&body);
    let summary = ex.quote(&format!("{code}: {message}"));
    Ok(Err(Refusal { status, code, summary }))
}

/// The code and message of a Google error document: STS's OAuth
/// `{error, error_description}` or the API's `{error: {status, message}}`.
fn google_error(body: &[u8]) -> (String, String) {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    match &doc["error"] {
        serde_json::Value::String(code) => (code.clone(), text(&doc["error_description"])),
        e @ serde_json::Value::Object(_) => (text(&e["status"]), text(&e["message"])),
        _ => ("unknown".into(), "no error document".into()),
    }
}

/// The federated token of an STS answer `{access_token, ...}`.
fn parse_federated(body: &[u8]) -> Result<Sensitive<String>, MintError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        access_token: String,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| MintError::InvalidProviderResponse("the Google STS answer is not the expected JSON".into()))?;
    if answer.access_token.is_empty() {
        return Err(MintError::InvalidProviderResponse(
            "Google STS returned an empty access token".into(),
        ));
    }
    Ok(Sensitive::new(answer.access_token))
}

/// The access token and expiry of a `generateAccessToken` answer `{accessToken, expireTime}`.
fn parse_generated(body: &[u8]) -> Result<(Sensitive<String>, Timestamp), MintError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        #[serde(default)]
        access_token: String,
        #[serde(default)]
        expire_time: String,
    }
    let invalid = |what: &str| MintError::InvalidProviderResponse(format!("the IAM generateAccessToken answer {what}"));
    let answer: Answer = serde_json::from_slice(body).map_err(|_| invalid("is not the expected JSON"))?;
    if answer.access_token.is_empty() {
        return Err(invalid("has an empty accessToken"));
    }
    let expires = answer
        .expire_time
        .parse::<Timestamp>()
        .map_err(|_| invalid("has no RFC 3339 expireTime"))?;
    Ok((Sensitive::new(answer.access_token), expires))
}

async fn azure(
    p: &AcrProvider,
    ex: &Exchange<'_>,
    client_id: &str,
    tenant_id: &str,
    input: &MintInput<'_>,
) -> Result<Credential, MintError> {
    let options = ClientAssertionCredentialOptions {
        client_options: p.client_options(input),
    };
    let assertion = Assertion(Sensitive::new(ex.token.to_string()));
    let credential = ClientAssertionCredential::new(tenant_id.into(), client_id.into(), assertion, Some(options))
        .map_err(|e| {
            MintError::MintFailed(format!(
                "configuring the Entra credential of {} failed: {}",
                ex.identity.describe(),
                ex.quote(&e.to_string())
            ))
        })?;
    let aad = credential
        .get_token(&[acr::SCOPE], None)
        .await
        .map_err(|e| entra_error(&e, ex))?;
    acr::redeem(input.http, &p.registry, tenant_id, aad.token.secret()).await
}

/// The ServiceAccount token as the client assertion of an Entra app.
#[derive(Debug)]
struct Assertion(Sensitive<String>);

// What `#[async_trait]` expands `async fn secret` to (the trait is declared
// with it); the assertion is at hand, so nothing is awaited.
impl ClientAssertion for Assertion {
    fn secret<'s, 'o, 'f>(
        &'s self,
        _options: Option<ClientMethodOptions<'o>>,
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<String>> + Send + 'f>>
    where
        's: 'f,
        'o: 'f,
        Self: 'f,
    {
        let assertion = self.0.expose().clone();
        Box::pin(async move { Ok(assertion) })
    }
}

/// Entra's refusals of an app that does not federate this ServiceAccount:
/// `invalid_client` / `unauthorized_client`, or any AADSTS7002xx (no
/// matching federated identity, wrong issuer or audience, ...).
fn entra_refuses(error: &str, codes: &[i64]) -> bool {
    matches!(error, "invalid_client" | "unauthorized_client") || codes.iter().any(|c| (700200..700300).contains(c))
}

fn entra_error(err: &azure_core::Error, ex: &Exchange<'_>) -> MintError {
    let answer =
        std::iter::successors(Some(err), |e| e.downcast_ref::<azure_core::Error>()).find_map(|e| match e.kind() {
            ErrorKind::HttpResponse {
                status, raw_response, ..
            } => Some((u16::from(*status), raw_response.as_deref())),
            _ => None,
        });
    let Some((status, raw)) = answer else {
        return MintError::MintFailed(format!(
            "getting an Entra ID token for {} failed: {}",
            ex.identity.describe(),
            ex.quote(&err.to_string())
        ));
    };
    if status == 429 {
        let header = raw.and_then(|r| r.headers().get_optional_str(&azure_core::http::headers::RETRY_AFTER));
        return MintError::Throttled {
            retry_after: header.and_then(|v| super::retry_after(v, Timestamp::now())),
        };
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Answer {
        error: String,
        error_description: String,
        error_codes: Vec<i64>,
    }
    let mut answer: Answer = raw.and_then(|r| r.body().json().ok()).unwrap_or_default();
    // The description leads with the code too (`AADSTS700213: ...`), for
    // answers without `error_codes`.
    let leading: Option<i64> = answer.error_description.strip_prefix("AADSTS").and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    answer.error_codes.extend(leading);
    let said = ex.quote(&format!("{}: {}", answer.error, answer.error_description));
    if entra_refuses(&answer.error, &answer.error_codes) {
        return ex.refused(format!(
            "Entra ID refused the ServiceAccount token ({said}); the app needs a federated identity credential \
             for this cluster's issuer with subject {} and audience {}",
            ex.subject, ex.audience
        ));
    }
    MintError::MintFailed(format!(
        "getting an Entra ID token for {} failed: HTTP {status}: {said}",
        ex.identity.describe()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Identity;

    const CANARY: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGVhbS1hOmJ1aWxkZXIiLCJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.canary-signature";

    fn sa_token(sub: &str, aud: &str) -> String {
        regcred_testenv::fakes::unsigned_jwt(&serde_json::json!({ "sub": sub, "aud": aud, "exp": 4_000_000_000u64 }))
    }

    fn aws_identity() -> WorkloadIdentity {
        WorkloadIdentity::Aws {
            role_arn: "arn:aws:iam::111111111111:role/team-a".into(),
        }
    }

    #[test]
    fn session_names_keep_to_what_sts_accepts() {
        let valid = |s: &str| {
            (2..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        };
        assert_eq!(role_session_name("regcred-team-a-builder"), "regcred-team-a-builder");
        assert_eq!(role_session_name("team a/builder:x"), "team-a-builder-x");
        assert_eq!(role_session_name(""), "regcred");
        assert_eq!(role_session_name("x"), "regcred-x");
        let long = format!("regcred-{}-builder", "n".repeat(100));
        let other = format!("regcred-{}-runner", "n".repeat(100));
        for s in [&long, &other, "ünïcödé", "a", "", "team a/builder"] {
            assert!(valid(&role_session_name(s)), "{s:?} → {:?}", role_session_name(s));
        }
        assert_eq!(role_session_name(&long), role_session_name(&long), "deterministic");
        assert_ne!(
            role_session_name(&long),
            role_session_name(&other),
            "a cut keeps names apart"
        );
    }

    #[test]
    fn reads_generate_access_token_answers() {
        let body = br#"{"accessToken":"ya29.abc","expireTime":"2026-12-06T14:00:00.123456Z"}"#;
        let (token, expires) = parse_generated(body).unwrap();
        assert_eq!(token.expose(), "ya29.abc");
        assert_eq!(expires, "2026-12-06T14:00:00.123456Z".parse::<Timestamp>().unwrap());
        assert_eq!(
            parse_generated(br#"{"accessToken":"ya29.abc","expireTime":"2026-12-06T14:00:00Z"}"#)
                .unwrap()
                .1
                .as_second(),
            1_796_565_600
        );
        for bad in [
            &br#"{"accessToken":"ya29.abc"}"#[..],
            br#"{"accessToken":"ya29.abc","expireTime":"tomorrow"}"#,
            br#"{"accessToken":"","expireTime":"2026-12-06T14:00:00Z"}"#,
            b"not json",
        ] {
            let err = parse_generated(bad).unwrap_err();
            assert_eq!(err.reason(), "InvalidProviderResponse", "{err}");
            assert!(!err.to_string().contains("ya29"), "{err}");
        }
        assert_eq!(
            parse_federated(br#"{"access_token":"ya29.f","expires_in":3600}"#)
                .unwrap()
                .expose(),
            "ya29.f"
        );
        assert!(parse_federated(br#"{"access_token":""}"#).is_err());
    }

    #[test]
    fn reads_retry_after_as_seconds_or_an_http_date() {
        let now: Timestamp = "2026-12-06T13:00:00Z".parse().unwrap();
        assert_eq!(super::super::retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(super::super::retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            super::super::retry_after("Sun, 06 Dec 2026 13:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            super::super::retry_after("Sun, 06 Dec 2026 12:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date gone by is no wait"
        );
        assert_eq!(super::super::retry_after("soon", now), None);
        assert_eq!(super::super::retry_after("-5", now), None);
    }

    #[test]
    fn refusals_are_told_from_other_failures() {
        for code in ["AccessDenied", "InvalidIdentityToken", "IDPRejectedClaim"] {
            assert!(sts_refuses(code), "{code}");
        }
        for code in [
            "Throttling",
            "ExpiredTokenException",
            "RegionDisabledException",
            "InternalFailure",
        ] {
            assert!(!sts_refuses(code), "{code}");
        }
        assert!(google_sts_refuses(400) && google_sts_refuses(401) && google_sts_refuses(403));
        assert!(!google_sts_refuses(500) && !google_sts_refuses(429));
        assert!(google_iam_refuses(403, "PERMISSION_DENIED") && google_iam_refuses(404, "NOT_FOUND"));
        assert!(google_iam_refuses(400, "PERMISSION_DENIED"));
        assert!(!google_iam_refuses(401, "UNAUTHENTICATED") && !google_iam_refuses(503, "UNAVAILABLE"));
        assert!(entra_refuses("invalid_client", &[]));
        assert!(entra_refuses("unauthorized_client", &[]));
        assert!(entra_refuses("invalid_request", &[700213]));
        assert!(entra_refuses("", &[50000, 700211]));
        assert!(!entra_refuses("invalid_request", &[90014]));
        assert!(!entra_refuses("temporarily_unavailable", &[]));
        assert_eq!(
            google_error(br#"{"error":"invalid_grant","error_description":"The audience does not match."}"#),
            ("invalid_grant".into(), "The audience does not match.".into())
        );
        assert_eq!(
            google_error(br#"{"error":{"code":403,"message":"Permission denied.","status":"PERMISSION_DENIED"}}"#),
            ("PERMISSION_DENIED".into(), "Permission denied.".into())
        );
        assert_eq!(google_error(b"<html>").0, "unknown");
    }

    #[test]
    fn a_refusal_names_the_identity_and_the_service_account() {
        let identity = aws_identity();
        let token = sa_token("system:serviceaccount:team-a:builder", "sts.amazonaws.com");
        let ex = Exchange::new(&identity, &token);
        assert_eq!(ex.subject, "system:serviceaccount:team-a:builder");
        assert_eq!(ex.audience, "sts.amazonaws.com");
        let err = ex.refused("AccessDenied: Not authorized".into());
        assert_eq!(err.reason(), "IdentityRefused");
        assert!(
            err.to_string()
                .starts_with("role arn:aws:iam::111111111111:role/team-a: AccessDenied"),
            "{err}"
        );
        let google = principal(
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k",
            &ex.subject,
        );
        assert_eq!(
            google,
            "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/system:serviceaccount:team-a:builder"
        );
    }

    #[test]
    fn no_error_text_carries_a_token() {
        let identity = aws_identity();
        let ex = Exchange::new(&identity, CANARY);
        let federated = format!("ya29.{}", "f".repeat(150));
        let echo = format!("bad token {CANARY} and {federated} here");
        let errors = [
            ex.refused(format!("AccessDenied: {}", ex.quote(&echo))),
            ex.scrub_error(MintError::MintFailed(echo.clone())),
            ex.scrub_error(MintError::InvalidProviderResponse(echo.clone())),
            ex.scrub_error(MintError::IdentityRefused {
                identity: identity.describe(),
                message: echo.clone(),
            }),
            Refusal {
                status: 400,
                code: "invalid_grant".into(),
                summary: ex.quote(&format!("invalid_grant: {echo}")),
            }
            .failed("the Google STS token exchange"),
        ];
        for err in errors {
            let text = err.to_string();
            assert!(!text.contains(CANARY) && !text.contains("canary-signature"), "{text}");
            assert!(!text.contains(&federated) && !text.contains("ffffffffff"), "{text}");
            assert!(
                text.contains("bad token") && text.contains("here"),
                "the words around stay: {text}"
            );
        }
        let empty = Exchange::new(&identity, "");
        assert_eq!(empty.quote("AccessDenied: no"), "AccessDenied: no");
        let names = "role arn:aws:iam::111111111111:role/a-role-name-of-sixty-four-characters-is-allowed-by-iam-aaaaa";
        assert_eq!(scrub(names), names, "names are not tokens");
    }

    #[tokio::test]
    async fn an_identity_of_another_cloud_is_refused_before_any_call() {
        let ecr = EcrProvider {
            identity: Identity::PerServiceAccount,
            region: "us-east-1".into(),
            ..Default::default()
        };
        let google = WorkloadIdentity::Google {
            service_account: "puller@p.iam.gserviceaccount.com".into(),
        };
        let input = MintInput {
            source: None,
            credentials_namespace: "regcred-system",
            http: &reqwest::Client::new(),
        };
        let token = Sensitive::new(CANARY.to_string());
        let err = mint_for(ProviderSpec::Ecr(&ecr), &google, &token, "s", &input)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "MintFailed");
        assert!(
            err.to_string().contains("cannot be used with the ECR provider"),
            "{err}"
        );
    }

    fn input(http: &reqwest::Client) -> MintInput<'_> {
        MintInput {
            source: None,
            credentials_namespace: "regcred-system",
            http,
        }
    }

    /// The SDK path end to end against moto's STS and ECR: the role's own
    /// credential, exactly this ServiceAccount's token at STS, a refusal for
    /// a role whose trust says no, throttling as `Throttled`.
    #[tokio::test]
    async fn web_identity_round_trip_against_moto() {
        use regcred_testenv::fakes::moto::{Moto, ecr_password_for_role};
        crate::connect::init_crypto();
        let moto = Moto::start()
            .await
            .expect("moto_server (REGCRED_MOTO_SERVER; source /tmp/testenv.sh)");
        let ecr = EcrProvider {
            region: "us-east-1".into(),
            endpoint_url: Some(moto.url()),
            sts_endpoint_url: Some(moto.url()),
            identity: Identity::PerServiceAccount,
            ..Default::default()
        };
        let http = reqwest::Client::new();
        let role = "arn:aws:iam::111111111111:role/team-a";
        let identity = WorkloadIdentity::Aws { role_arn: role.into() };
        let token = Sensitive::new(sa_token("system:serviceaccount:team-a:builder", "sts.amazonaws.com"));
        let started = std::time::Instant::now();
        let c = mint_for(
            ProviderSpec::Ecr(&ecr),
            &identity,
            &token,
            "regcred team-a/builder",
            &input(&http),
        )
        .await
        .unwrap();
        println!(
            "BENCH web identity + ECR round trip against moto: {:?}",
            started.elapsed()
        );
        assert_eq!(c.registries(), ["111111111111.dkr.ecr.us-east-1.amazonaws.com"]);
        assert_eq!(c.auths[0].username, "AWS");
        assert_eq!(c.auths[0].password.expose(), &ecr_password_for_role(role));
        let calls = moto.web_identity_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].role_arn, role);
        assert_eq!(calls[0].session_name, "regcred-team-a-builder");
        assert_eq!(calls[0].claims["sub"], "system:serviceaccount:team-a:builder");
        assert_eq!(calls[0].claims["aud"], "sts.amazonaws.com");

        let denied = "arn:aws:iam::222222222222:role/team-b";
        moto.deny_role(denied);
        let identity = WorkloadIdentity::Aws {
            role_arn: denied.into(),
        };
        let token = Sensitive::new(sa_token("system:serviceaccount:team-b:runner", "sts.amazonaws.com"));
        let err = mint_for(ProviderSpec::Ecr(&ecr), &identity, &token, "s", &input(&http))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.reason(), "IdentityRefused", "{text}");
        assert!(text.starts_with(&format!("role {denied}: AccessDenied")), "{text}");
        assert!(text.contains("system:serviceaccount:team-b:runner"), "{text}");
        assert!(!text.contains(token.expose().as_str()), "{text}");

        moto.throttle_web_identity(5);
        let err = mint_for(ProviderSpec::Ecr(&ecr), &identity, &token, "s", &input(&http))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "Throttled", "{err}");
        assert_eq!(moto.ecr_token_calls(), 1, "no ECR call without STS credentials");
    }

    /// The Google exchange end to end against the STS / IAM Credentials fake.
    #[tokio::test]
    async fn google_exchange_against_the_fake() {
        use regcred_testenv::fakes::Fault;
        use regcred_testenv::fakes::google_sts::{Endpoint, GoogleSts, access_token_for};
        let fake = GoogleSts::start().await.unwrap();
        let provider = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kind";
        let gcr = GcrProvider {
            registries: vec!["us-docker.pkg.dev".into(), "gcr.io".into()],
            identity: Identity::PerServiceAccount,
            workload_identity_provider: Some(provider.into()),
            sts_endpoint_url: Some(fake.url()),
            iam_credentials_endpoint_url: Some(format!("{}/", fake.url())),
            ..Default::default()
        };
        let http = reqwest::Client::new();
        let gsa = "team-a@p.iam.gserviceaccount.com";
        let identity = WorkloadIdentity::Google {
            service_account: gsa.into(),
        };
        let audience = format!("https:{provider}");
        let token = Sensitive::new(sa_token("system:serviceaccount:team-a:builder", &audience));
        let c = mint_for(ProviderSpec::Gcr(&gcr), &identity, &token, "s", &input(&http))
            .await
            .unwrap();
        assert_eq!(c.registries(), ["us-docker.pkg.dev", "gcr.io"]);
        assert!(
            c.auths
                .iter()
                .all(|a| a.username == "oauth2accesstoken" && a.password.expose() == &access_token_for(gsa, 1))
        );
        let left = c.not_after.unwrap().as_second() - Timestamp::now().as_second();
        assert!((3000..=3601).contains(&left), "expires in {left}s");
        let exchange = &fake.exchanges()[0];
        assert_eq!(exchange.audience, provider);
        assert_eq!(exchange.claims["sub"], "system:serviceaccount:team-a:builder");

        fake.deny_service_account(gsa);
        let err = mint_for(ProviderSpec::Gcr(&gcr), &identity, &token, "s", &input(&http))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.reason(), "IdentityRefused", "{text}");
        assert!(text.starts_with(&format!("Google service account {gsa}: ")), "{text}");
        assert!(
            text.contains("PERMISSION_DENIED") && text.contains("roles/iam.workloadIdentityUser"),
            "{text}"
        );
        assert!(
            !text.contains("ya29") && !text.contains(token.expose().as_str()),
            "{text}"
        );

        let not_a_jwt = Sensitive::new("opaque".to_string());
        let err = mint_for(ProviderSpec::Gcr(&gcr), &identity, &not_a_jwt, "s", &input(&http))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "IdentityRefused", "{err}");
        assert!(err.to_string().contains("invalid_grant"), "{err}");

        fake.set_fault(
            Endpoint::Token,
            Fault::Status {
                code: 429,
                retry_after: Some(7),
            },
        );
        let err = mint_for(ProviderSpec::Gcr(&gcr), &identity, &token, "s", &input(&http))
            .await
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err}");
    }

    /// The Entra exchange end to end against the Azure fake (HTTPS, its own CA).
    #[tokio::test]
    async fn entra_assertion_and_acr_exchange_against_the_fake() {
        use regcred_testenv::fakes::Fault;
        use regcred_testenv::fakes::azure::{Azure, Endpoint};
        crate::connect::init_crypto();
        let azure = Azure::start().await.unwrap();
        let ca = reqwest::Certificate::from_pem_bundle(azure.ca_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder().tls_certs_merge(ca).build().unwrap();
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let acr = AcrProvider {
            registry: azure.registry_host(),
            tenant_id: tenant.into(),
            authority_host: Some(azure.authority_host()),
            custom_login_server: true,
            identity: Identity::PerServiceAccount,
            ..Default::default()
        };
        let identity = |client: &str| WorkloadIdentity::Azure {
            client_id: client.into(),
            tenant_id: tenant.into(),
        };
        let token = Sensitive::new(sa_token(
            "system:serviceaccount:team-a:builder",
            "api://AzureADTokenExchange",
        ));
        let c = mint_for(ProviderSpec::Acr(&acr), &identity("app-a"), &token, "s", &input(&http))
            .await
            .unwrap();
        assert_eq!(c.registries(), [azure.registry_host()]);
        assert_eq!(c.auths[0].username, acr::USERNAME);
        assert_eq!(
            azure.refresh_token_owner()(c.auths[0].password.expose()).as_deref(),
            Some("app-a")
        );
        let call = &azure.assertion_calls()[0];
        assert_eq!((call.tenant.as_str(), call.client_id.as_str()), (tenant, "app-a"));
        assert_eq!(call.claims["sub"], "system:serviceaccount:team-a:builder");

        azure.deny_client("app-b");
        let err = mint_for(ProviderSpec::Acr(&acr), &identity("app-b"), &token, "s", &input(&http))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.reason(), "IdentityRefused", "{text}");
        assert!(
            text.starts_with(&format!("Entra app app-b in tenant {tenant}: ")),
            "{text}"
        );
        assert!(
            text.contains("AADSTS700213") && text.contains("system:serviceaccount:team-a:builder"),
            "{text}"
        );
        assert!(!text.contains(token.expose().as_str()), "{text}");

        azure.set_fault(
            Endpoint::Token,
            Fault::Status {
                code: 429,
                retry_after: Some(9),
            },
        );
        let err = mint_for(ProviderSpec::Acr(&acr), &identity("app-a"), &token, "s", &input(&http))
            .await
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(9)), "{err}");
    }
}
