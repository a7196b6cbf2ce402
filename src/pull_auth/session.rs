//! The requests of one check, and the one way a 401 is answered: the
//! challenge read, the credential sent (Basic) or traded for a token
//! (Bearer), the request sent again.

use reqwest::header::ACCEPT;
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use super::challenge::{Challenge, Scheme, challenges};
use super::verdict::{Outcome, Step, endpoint_of, judge, registry_error_code, unreachable};
use crate::api::PullAuthResult;
use crate::dockerconfig::RegistryAuth;
use crate::redact::Sensitive;

/// The requests of one check, with the credential once a challenge asked for it.
pub(crate) struct Session<'a> {
    http: &'a Client,
    /// The registry as the caller names it, for messages.
    registry: &'a str,
    /// What a challenge is answered with; `None` pulls anonymously, as a pod
    /// without a matching pull Secret does.
    auth: Option<&'a RegistryAuth>,
    /// What every request carries once a challenge was answered.
    credential: Option<Credential<'a>>,
}

enum Credential<'a> {
    Basic(&'a RegistryAuth),
    Bearer(Sensitive<String>),
}

impl<'a> Session<'a> {
    pub(crate) fn new(http: &'a Client, registry: &'a str, auth: Option<&'a RegistryAuth>) -> Self {
        Self {
            http,
            registry,
            auth,
            credential: None,
        }
    }

    /// Whether a challenge was answered, so that requests carry the credential.
    pub(crate) fn answered(&self) -> bool {
        self.credential.is_some()
    }

    /// Send one request, with the credential once a challenge was answered.
    pub(crate) async fn send(&self, build: impl Fn(&Client) -> RequestBuilder, url: &str) -> Result<Response, Outcome> {
        let request = build(self.http);
        let request = match &self.credential {
            None => request,
            Some(Credential::Basic(auth)) => request.basic_auth(&auth.username, Some(auth.password.expose())),
            Some(Credential::Bearer(token)) => request.bearer_auth(token.expose()),
        };
        request.send().await.map_err(|e| unreachable(self.registry, url, &e))
    }

    /// Send one request and, if it is refused with a 401, answer the
    /// challenge as `docker pull` does and send it again. A session answers
    /// once, and only with a credential: a 401 after that, or to an anonymous
    /// session, is the registry's answer. A Bearer token is scoped to `scope`.
    pub(crate) async fn send_answering(
        &mut self,
        build: impl Fn(&Client) -> RequestBuilder,
        url: &str,
        scope: Option<&str>,
    ) -> Result<Response, Outcome> {
        let response = self.send(&build, url).await?;
        let Some(auth) = self.auth else {
            return Ok(response);
        };
        if response.status() != StatusCode::UNAUTHORIZED || self.answered() {
            return Ok(response);
        }
        self.credential = Some(self.answer(auth, &response, scope).await?);
        self.send(&build, url).await
    }

    /// What answers the challenge of a 401: the credential itself for Basic,
    /// a token traded for it for Bearer.
    async fn answer(
        &self,
        auth: &'a RegistryAuth,
        response: &Response,
        scope: Option<&str>,
    ) -> Result<Credential<'a>, Outcome> {
        let registry = self.registry;
        // A 401 without a challenge is answered with Basic, the one scheme that needs no parameters.
        let challenge = challenges(response).unwrap_or(Challenge {
            scheme: Scheme::Basic,
            error: None,
        });
        match challenge.scheme {
            Scheme::Basic => Ok(Credential::Basic(auth)),
            Scheme::Bearer { realm, service } => Ok(Credential::Bearer(
                self.token(auth, &realm, service.as_deref(), scope).await?,
            )),
            Scheme::Other(scheme) => Err(Outcome::new(
                PullAuthResult::Unknown,
                format!(
                    "registry {registry} asks for {scheme:?} authentication, which neither regcred nor container \
                     runtimes speak (only Basic and Bearer): check the registry host"
                ),
            )),
        }
    }

    /// A token from the realm of a Bearer challenge, requested with the credential.
    async fn token(
        &self,
        auth: &RegistryAuth,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Sensitive<String>, Outcome> {
        let registry = self.registry;
        let unknown = |why: &str| Outcome::new(PullAuthResult::Unknown, format!("registry {registry} {why}"));
        let mut url = Url::parse(realm)
            .map_err(|_| unknown("names a token endpoint that is not a URL: check the registry host"))?;
        if url.scheme() != "https" {
            return Err(unknown(&format!(
                "names a token endpoint without TLS ({}), where regcred does not send credentials: serve it over \
                 https",
                endpoint_of(&url)
            )));
        }
        let endpoint = endpoint_of(&url);
        if service.is_some() || scope.is_some() {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            if let Some(scope) = scope {
                query.append_pair("scope", scope);
            }
        }
        let response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .basic_auth(&auth.username, Some(auth.password.expose()))
            .send()
            .await
            .map_err(|e| unreachable(registry, &endpoint, &e))?;
        let status = response.status();
        if !status.is_success() {
            let code = registry_error_code(response).await;
            return Err(judge(
                registry,
                Step::Token { endpoint: &endpoint },
                status,
                code.as_deref(),
            ));
        }
        let body = crate::bounded::read(response, crate::bounded::MAX_BODY)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<TokenResponse>(&b).ok());
        let body = body.ok_or_else(|| {
            unknown(&format!(
                "answered the token request at {endpoint} with something other than a token: check the registry host"
            ))
        })?;
        body.token().ok_or_else(|| {
            unknown(&format!(
                "answered the token request at {endpoint} without a token: check the registry host"
            ))
        })
    }
}

/// Docker token authentication's answer; older servers say `access_token`.
#[derive(Deserialize)]
pub struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl TokenResponse {
    /// The bearer token to send, `None` when the answer holds none.
    pub fn token(self) -> Option<Sensitive<String>> {
        self.token
            .or(self.access_token)
            .filter(|t| !t.is_empty())
            .map(Sensitive::new)
    }
}
