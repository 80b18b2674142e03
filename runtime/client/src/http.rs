//! One HTTP exchange with a doppel node: URL building, auth, preconditions, and the
//! mapping of every outcome to an [`ApiResponse`] or a [`ClientError`].
//!
//! Key items: [`ApiClient`] (built once from a [`crate::ClientConfig`]),
//! [`endpoint_url`] and [`next_link_url`] (pure URL construction), [`api_error`]
//! (the server's `{"error":{"code","message"}}` body → [`ClientError::Api`]).
//!
//! Contract:
//! - every URL carries `api-version`; path segments (twin ids, DTMIs, relationship
//!   ids) are percent-encoded so that only unreserved characters stay literal;
//! - the bearer token only ever goes to the origin of `--url`: redirects are not
//!   followed and `nextLink`s to another origin are rebased onto it (a node behind a
//!   proxy, or bound to 0.0.0.0, may advertise a host the client cannot use);
//! - a non-2xx status is always an error, whatever the body looks like.

use crate::credentials::{resolve_token, DEFAULT_TOKEN_FILE};
use crate::error::ClientError;
use crate::paging::{collect_pages, parse_page};
use crate::raw::{RawRequest, RawResponse};
use crate::tls::client_tls_config;
use crate::ClientConfig;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, ETAG};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Characters kept literal in a path segment: RFC 3986 "unreserved". Everything else
/// (`:`, `;`, `@`, `/`, `%`, spaces, non-ASCII…) is percent-encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How long to wait for a TCP (and TLS) connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest piece of a non-JSON error body echoed back to the user.
const MAX_ERROR_BODY_CHARS: usize = 300;

/// A request body and the content type it is sent with.
#[derive(Debug, Clone, Copy)]
pub enum RequestBody<'a> {
    /// `application/json`
    Json(&'a Value),
    /// `application/json-patch+json` (RFC 6902 operations)
    JsonPatch(&'a Value),
}

/// Optimistic-concurrency headers for a write.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    /// `If-Match: <etag>`: only if the resource is still at this version.
    pub if_match: Option<String>,
    /// `If-None-Match: *`: only if the resource does not exist yet.
    pub if_none_match_any: bool,
}

/// A successful (2xx) response.
#[derive(Debug)]
pub struct ApiResponse {
    pub url: Url,
    pub status: StatusCode,
    pub etag: Option<String>,
    /// The JSON body; `None` when the body was empty (e.g. 204).
    pub body: Option<Value>,
}

impl ApiResponse {
    /// The JSON body, which the caller requires to be present.
    pub fn into_json(self) -> Result<Value, ClientError> {
        self.body.ok_or_else(|| ClientError::BadResponse {
            url: self.url.to_string(),
            what: format!("status {} with an empty body", self.status.as_u16()),
        })
    }
}

/// A configured connection to one doppel node.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    authorization: Option<HeaderValue>,
    api_version: String,
}

impl ApiClient {
    /// Validate the options, find the token and set up TLS; no network traffic yet.
    pub fn new(opts: &ClientConfig) -> Result<Self, ClientError> {
        let base = parse_base_url(&opts.url)?;
        if base.scheme() == "https" && opts.ca_cert.is_none() {
            return Err(ClientError::Usage(format!(
                "{} is an https URL: pass --ca-cert <PEM> (or set DOPPEL_CA_CERT) naming the \
                 server's certificate or the CA that signed it; the CLI trusts no other roots",
                opts.url
            )));
        }
        let token = resolve_token(opts.token.as_deref(), Path::new(DEFAULT_TOKEN_FILE))?;
        let authorization = token.as_deref().map(bearer_header).transpose()?;
        let tls = client_tls_config(opts.ca_cert.as_deref())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("doppel-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            authorization,
            api_version: opts.api_version.clone(),
        })
    }

    /// A client over an HTTP client the caller configured (its TLS roots, timeouts),
    /// with exactly this token (no token file is read), sending [`crate::DEFAULT_API_VERSION`].
    /// Redirects are the caller's policy here; [`ApiClient::new`] follows none.
    pub fn with_http(
        http: reqwest::Client,
        url: &str,
        token: Option<&str>,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            http,
            base: parse_base_url(url)?,
            authorization: token.map(bearer_header).transpose()?,
            api_version: crate::DEFAULT_API_VERSION.to_owned(),
        })
    }

    /// `<base>/<segments…>?api-version=…&<query…>`.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ClientError> {
        endpoint_url(&self.base, segments, query, &self.api_version)
    }

    /// Send one request; a non-2xx status becomes [`ClientError::Api`].
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<RequestBody<'_>>,
        preconditions: &Preconditions,
    ) -> Result<ApiResponse, ClientError> {
        let mut request = RawRequest::new(&self.http, self.authorization.as_ref(), method, Ok(url))
            .header("accept", "application/json");
        if let Some(etag) = &preconditions.if_match {
            header_value("--if-match", etag)?;
            request = request.header("if-match", etag);
        }
        if preconditions.if_none_match_any {
            request = request.header("if-none-match", "*");
        }
        if let Some(body) = body {
            let (content_type, value) = match body {
                RequestBody::Json(v) => ("application/json", v),
                RequestBody::JsonPatch(v) => ("application/json-patch+json", v),
            };
            let bytes = serde_json::to_vec(value)
                .map_err(|e| ClientError::Usage(format!("cannot encode request body: {e}")))?;
            request = request.header("content-type", content_type).body(bytes);
        }

        let RawResponse {
            url,
            status,
            headers,
            body: bytes,
        } = request.send().await?;
        let etag = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(
                serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
                    url: url.to_string(),
                    what: format!("body is not JSON: {e}"),
                })?,
            )
        };
        Ok(ApiResponse {
            url,
            status,
            etag,
            body,
        })
    }

    /// A request written by the caller (any path, header and body), answered whatever
    /// its status: see [`crate::raw`]. `target` is a path under the base URL
    /// (`/models?x=y`) or an absolute URL (moved onto the base's origin).
    pub fn raw(&self, method: Method, target: &str) -> RawRequest<'_> {
        RawRequest::new(
            &self.http,
            self.authorization.as_ref(),
            method,
            self.resolve(target),
        )
    }

    /// The URL a raw `target` stands for (see [`ApiClient::raw`]).
    pub fn resolve(&self, target: &str) -> Result<Url, ClientError> {
        if target.starts_with("http://") || target.starts_with("https://") {
            let url = Url::parse(target)
                .map_err(|e| ClientError::Usage(format!("invalid URL {target:?}: {e}")))?;
            return onto_origin(&self.base, url)
                .map_err(|what| ClientError::Usage(format!("cannot use URL {target:?}: {what}")));
        }
        if !target.starts_with('/') {
            return Err(ClientError::Usage(format!(
                "{target:?} is neither an absolute URL nor a path starting with '/'"
            )));
        }
        let joined = format!("{}{target}", self.base.as_str().trim_end_matches('/'));
        Url::parse(&joined).map_err(|e| ClientError::Usage(format!("invalid path {target:?}: {e}")))
    }

    /// The base URL every request goes to.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `GET url`, requiring a JSON body.
    pub async fn get_json(&self, url: Url) -> Result<Value, ClientError> {
        self.call(Method::GET, url, None, &Preconditions::default())
            .await?
            .into_json()
    }

    /// `GET` a paged collection, following `nextLink` until the last page (or until
    /// `limit` items have been read).
    pub async fn get_all(
        &self,
        first: Url,
        limit: Option<usize>,
    ) -> Result<Vec<Value>, ClientError> {
        collect_pages(
            first,
            limit,
            |url: Url| async move {
                let body = self.get_json(url.clone()).await?;
                parse_page(body, &url)
            },
            |link: &str| next_link_url(&self.base, link, &self.api_version),
        )
        .await
    }
}

/// Parse and check `--url`: http or https with a host; query and fragment dropped.
pub fn parse_base_url(raw: &str) -> Result<Url, ClientError> {
    let mut url =
        Url::parse(raw).map_err(|e| ClientError::Usage(format!("invalid --url {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ClientError::Usage(format!(
            "invalid --url {raw:?}: expected http://host[:port] or https://host[:port]"
        )));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// `<base>/<segments…>?api-version=…&<query…>`, each segment percent-encoded.
pub fn endpoint_url(
    base: &Url,
    segments: &[&str],
    query: &[(&str, &str)],
    api_version: &str,
) -> Result<Url, ClientError> {
    let mut path = base.path().trim_end_matches('/').to_owned();
    for segment in segments {
        path.push('/');
        path.push_str(&encode_segment(segment)?);
    }
    let mut url = base.clone();
    url.set_path(&path);
    url.set_query(None);
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("api-version", api_version);
        for (key, value) in query {
            pairs.append_pair(key, value);
        }
    }
    Ok(url)
}

/// Percent-encode one path segment; refuse ids that no URL path can carry.
pub fn encode_segment(segment: &str) -> Result<String, ClientError> {
    // URL parsers collapse "." and ".." (even as %2E) into path navigation.
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(ClientError::Usage(format!(
            "id {segment:?} cannot be used in a URL path"
        )));
    }
    Ok(utf8_percent_encode(segment, PATH_SEGMENT).to_string())
}

/// The URL to fetch for a page's `nextLink`: resolved against `base`, moved onto
/// `base`'s origin if it points elsewhere, and given `api-version` if it lacks one.
pub fn next_link_url(base: &Url, link: &str, api_version: &str) -> Result<Url, ClientError> {
    let bad = |what: String| ClientError::BadResponse {
        url: link.to_owned(),
        what,
    };
    let url = base
        .join(link)
        .map_err(|e| bad(format!("invalid nextLink: {e}")))?;
    let mut url = onto_origin(base, url).map_err(|what| bad(format!("nextLink {what}")))?;
    if !url.query_pairs().any(|(key, _)| key == "api-version") {
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
    }
    Ok(url)
}

/// `url` moved onto `base`'s origin (scheme, host, port) if it points elsewhere, with
/// any user name or password removed: the bearer token goes to `base` only, and
/// credentials in a URL would be sent as Basic auth beside it.
fn onto_origin(base: &Url, mut url: Url) -> Result<Url, String> {
    if url.origin() != base.origin() {
        url.set_scheme(base.scheme())
            .map_err(|()| "has an unusable scheme".to_owned())?;
        url.set_host(base.host_str())
            .map_err(|e| format!("cannot be rebased: {e}"))?;
        url.set_port(base.port())
            .map_err(|()| "cannot be rebased onto the port".to_owned())?;
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok(url)
}

/// The error a non-2xx response stands for. Bodies not in the documented
/// `{"error":{"code","message"}}` shape are shown as text under the status's name.
pub fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) {
        return ClientError::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
        };
    }
    let code = status
        .canonical_reason()
        .map(|r| r.replace([' ', '-'], ""))
        .unwrap_or_else(|| "HttpError".to_owned());
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        "(empty response body)".to_owned()
    } else if text.chars().count() > MAX_ERROR_BODY_CHARS {
        let cut: String = text.chars().take(MAX_ERROR_BODY_CHARS).collect();
        format!("{cut}…")
    } else {
        text.to_owned()
    };
    ClientError::Api {
        status: status.as_u16(),
        code,
        message,
    }
}

/// `Bearer <token>` as a sensitive header value.
fn bearer_header(token: &str) -> Result<HeaderValue, ClientError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        ClientError::Usage("the token contains characters not allowed in an HTTP header".to_owned())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A user-supplied header value, rejected up front if HTTP cannot carry it.
fn header_value(flag: &str, raw: &str) -> Result<HeaderValue, ClientError> {
    HeaderValue::from_str(raw).map_err(|_| {
        ClientError::Usage(format!(
            "{flag} {raw:?} contains characters not allowed in an HTTP header"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Url {
        parse_base_url("http://127.0.0.1:8080").expect("base")
    }

    #[test]
    fn dtmis_and_odd_ids_are_percent_encoded_in_paths() {
        let url = endpoint_url(
            &base(),
            &["models", "dtmi:com:ex:Room;1"],
            &[],
            "2023-10-31",
        )
        .expect("url");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/models/dtmi%3Acom%3Aex%3ARoom%3B1?api-version=2023-10-31"
        );
        let url =
            endpoint_url(&base(), &["digitaltwins", "a/b c@d.e~f_g-h%"], &[], "v").expect("url");
        assert_eq!(url.path(), "/digitaltwins/a%2Fb%20c%40d.e~f_g-h%25");
        let url = endpoint_url(&base(), &["digitaltwins", "zimmer-ä"], &[], "v").expect("url");
        assert_eq!(url.path(), "/digitaltwins/zimmer-%C3%A4");
    }

    #[test]
    fn query_values_are_form_encoded_after_api_version() {
        let url = endpoint_url(
            &base(),
            &["digitaltwins"],
            &[("model", "dtmi:a:b;1")],
            "2023-10-31",
        )
        .expect("url");
        assert_eq!(
            url.query(),
            Some("api-version=2023-10-31&model=dtmi%3Aa%3Ab%3B1")
        );
    }

    #[test]
    fn a_base_path_prefix_is_kept() {
        let base = parse_base_url("https://gw.example/doppel/?x=1#f").expect("base");
        let url = endpoint_url(&base, &["tokens"], &[], "v").expect("url");
        assert_eq!(
            url.as_str(),
            "https://gw.example/doppel/tokens?api-version=v"
        );
    }

    #[test]
    fn dot_and_empty_ids_are_refused() {
        for id in ["", ".", ".."] {
            let err = endpoint_url(&base(), &["digitaltwins", id], &[], "v").expect_err(id);
            assert_eq!(err.exit_code(), 2);
        }
        assert!(encode_segment("...").is_ok());
    }

    #[test]
    fn bad_base_urls_are_usage_errors() {
        for raw in ["127.0.0.1:8080", "ftp://h/", "not a url", "http://"] {
            assert!(parse_base_url(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn same_origin_next_links_are_followed_as_given() {
        let url = next_link_url(
            &base(),
            "http://127.0.0.1:8080/digitaltwins?api-version=2023-10-31&continuationToken=abc",
            "2023-10-31",
        )
        .expect("next");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/digitaltwins?api-version=2023-10-31&continuationToken=abc"
        );
    }

    #[test]
    fn foreign_next_links_are_rebased_onto_the_server_origin() {
        let url = next_link_url(
            &base(),
            "https://user:pw@0.0.0.0:9999/models?continuationToken=x",
            "v1",
        )
        .expect("next");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/models?continuationToken=x&api-version=v1"
        );
    }

    #[test]
    fn relative_next_links_resolve_against_the_base() {
        let url = next_link_url(&base(), "/tokens?page=2&api-version=v", "v").expect("next");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/tokens?page=2&api-version=v"
        );
    }

    #[test]
    fn documented_error_bodies_give_code_and_message() {
        let body = json!({"error": {"code": "DigitalTwinNotFound", "message": "no twin t1"}});
        let err = api_error(StatusCode::NOT_FOUND, body.to_string().as_bytes());
        assert_eq!(err.to_string(), "404 DigitalTwinNotFound: no twin t1");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn other_error_bodies_fall_back_to_the_status_name_and_text() {
        let err = api_error(StatusCode::BAD_GATEWAY, b"upstream down\n");
        assert_eq!(err.to_string(), "502 BadGateway: upstream down");
        let err = api_error(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(err.to_string(), "401 Unauthorized: (empty response body)");
        assert!(err.hint().is_some());
        let long = "x".repeat(1000);
        let err = api_error(StatusCode::INTERNAL_SERVER_ERROR, long.as_bytes());
        assert!(err.to_string().len() < 400);
    }

    #[test]
    fn tokens_with_newlines_are_rejected() {
        assert!(bearer_header("abc\ndef").is_err());
        assert!(bearer_header("abc.def").is_ok_and(|v| v.is_sensitive()));
    }

    #[test]
    fn https_without_a_ca_is_a_clear_usage_error() {
        let opts = ClientConfig {
            url: "https://127.0.0.1:8443".into(),
            token: Some("t".into()),
            ca_cert: None,
            api_version: "v".into(),
        };
        let err = ApiClient::new(&opts).expect_err("needs --ca-cert");
        assert!(err.to_string().contains("--ca-cert"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
