//! The requests of one check: the challenge answered, the Bearer token fetched.

use reqwest::header::ACCEPT;
use reqwest::{Client, RequestBuilder, Response, Url};
use serde::Deserialize;

use super::parse::*;
use super::verdict::*;
use super::*;
use crate::api::PullAuthResult;
use crate::dockerconfig::RegistryAuth;
use crate::redact::Sensitive;

/// The requests of one check, with the credential once a challenge asked for it.
pub(crate) struct Session<'a> {
    pub(crate) http: &'a Client,
    pub(crate) auth: &'a RegistryAuth,
    pub(crate) credential: Option<Credential>,
}

pub(crate) enum Credential {
    Basic,
    Bearer(Sensitive<String>),
}

impl Session<'_> {
    pub(crate) async fn send(&self, build: impl Fn(&Client) -> RequestBuilder, url: &str) -> Result<Response, Outcome> {
        let mut request = build(self.http);
        request = match &self.credential {
            None => request,
            Some(Credential::Basic) => request.basic_auth(&self.auth.username, Some(self.auth.password.expose())),
            Some(Credential::Bearer(token)) => request.bearer_auth(token.expose()),
        };
        request
            .send()
            .await
            .map_err(|e| unreachable(&self.auth.registry, url, &e))
    }

    /// Answer the challenge of a 401: keep the credential for Basic, trade it
    /// for a token for Bearer.
    pub(crate) async fn authenticate(&mut self, response: &Response, scope: Option<&str>) -> Result<(), Outcome> {
        let registry = &self.auth.registry;
        // A 401 without a challenge is answered with Basic, the one scheme that needs no parameters.
        let challenge = challenges(response).unwrap_or(Challenge {
            scheme: Scheme::Basic,
            error: None,
        });
        self.credential = Some(match challenge.scheme {
            Scheme::Basic => Credential::Basic,
            Scheme::Bearer { realm, service } => {
                Credential::Bearer(self.token(&realm, service.as_deref(), scope).await?)
            }
            Scheme::Other(scheme) => {
                return Err(Outcome::new(
                    PullAuthResult::Unknown,
                    format!(
                        "registry {registry} asks for {scheme:?} authentication, which neither regcred nor container \
                         runtimes speak (only Basic and Bearer): check the registry host"
                    ),
                ));
            }
        });
        Ok(())
    }

    /// A token from the realm of a Bearer challenge, requested with the credential.
    pub(crate) async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Sensitive<String>, Outcome> {
        let registry = &self.auth.registry;
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
            .basic_auth(&self.auth.username, Some(self.auth.password.expose()))
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

/// A realm for messages: scheme, host, port and path, never a query.
pub(crate) fn endpoint_of(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}
