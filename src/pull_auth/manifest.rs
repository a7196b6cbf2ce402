//! A manifest HEAD for one image with one credential (or none), answering
//! what a diagnosis needs and the health check does not: the HTTP status
//! itself, Docker Hub's `ratelimit-remaining` header (a HEAD does not count
//! against the limit), and after a 404 whether the repository exists at all
//! (its tag list answers) or only the tag is missing.

use reqwest::header::ACCEPT;
use reqwest::{Client, StatusCode};

use super::challenge::challenges;
use super::session::Session;
use super::verdict::{Outcome, Step, judge};
use super::{CHECK_TIMEOUT, MANIFEST_ACCEPT};
use crate::api::PullAuthResult;
use crate::dockerconfig::RegistryAuth;
use crate::registry;

/// What the registry answered for one manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestCheck {
    /// Healthy (the manifest is there and may be pulled), Unauthorized,
    /// ImageNotFound, Unreachable or Unknown.
    pub result: PullAuthResult,
    /// The manifest HEAD's status, when the request got that far.
    pub status: Option<u16>,
    /// After a 404: whether the repository's tag list answered (the tag is
    /// missing) or not (the repository is).
    pub repository_exists: Option<bool>,
    /// Docker Hub's `ratelimit-remaining` header, e.g. `0;w=21600`.
    pub ratelimit_remaining: Option<String>,
    /// What happened, in words, without any credential.
    pub message: String,
}

/// HEAD `/v2/<repository>/manifests/<reference>` on `registry` (a host,
/// Docker Hub on its API host), with `auth` (answering a Basic or Bearer
/// challenge, as a runtime does) or anonymously. Bounded by [`CHECK_TIMEOUT`].
pub async fn check_manifest(
    http: &Client,
    registry: &str,
    auth: Option<&RegistryAuth>,
    repository: &str,
    reference: &str,
) -> ManifestCheck {
    let run = head(http, registry, auth, repository, reference);
    match tokio::time::timeout(CHECK_TIMEOUT, run).await {
        Ok(Ok(check)) => check,
        Ok(Err(outcome)) => ManifestCheck {
            result: outcome.result,
            status: None,
            repository_exists: None,
            ratelimit_remaining: None,
            // What happened, without the probe's advice, which is written
            // for the operator's network path, not the caller's.
            message: match outcome.message.split_once("; check ") {
                Some((what, _)) if outcome.result == PullAuthResult::Unreachable => what.to_string(),
                _ => outcome.message,
            },
        },
        Err(_) => ManifestCheck {
            result: PullAuthResult::Unreachable,
            status: None,
            repository_exists: None,
            ratelimit_remaining: None,
            message: format!(
                "registry {registry} did not finish answering within {}s",
                CHECK_TIMEOUT.as_secs()
            ),
        },
    }
}

async fn head(
    http: &Client,
    registry: &str,
    auth: Option<&RegistryAuth>,
    repository: &str,
    reference: &str,
) -> Result<ManifestCheck, Outcome> {
    let base = registry::api_base_url(registry);
    let scope = format!("repository:{repository}:pull");
    let mut session = Session::new(http, registry, auth);
    let url = format!("{base}/v2/{repository}/manifests/{reference}");
    let request = |c: &Client| c.head(&url).header(ACCEPT, MANIFEST_ACCEPT);
    let response = session.send_answering(request, &url, Some(&scope)).await?;
    let status = response.status();
    let ratelimit_remaining = response
        .headers()
        .get("ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64)
        .map(String::from);
    let denial = challenges(&response).and_then(|c| c.error);
    let image = format!("{repository}:{reference}");
    let verdict = judge(registry, Step::Manifest { image: &image }, status, denial.as_deref());
    let repository_exists = if status == StatusCode::NOT_FOUND {
        let tags = format!("{base}/v2/{repository}/tags/list?n=1");
        let answer = session.send(|c| c.get(&tags), &tags).await?;
        Some(answer.status().is_success())
    } else {
        None
    };
    Ok(ManifestCheck {
        result: verdict.result,
        status: Some(status.as_u16()),
        repository_exists,
        ratelimit_remaining,
        message: verdict.message,
    })
}
