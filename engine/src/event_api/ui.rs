//! The runs page: `GET /ui`, one read-only HTML page over the runs API
//! (recent runs, a run's steps as a timeline, the function list).
//!
//! The page is static and holds no data, so serving it needs no token; its
//! script asks `/v1` for everything with the bearer token the user gives it
//! (in the URL fragment, `/ui#token=...`, which browsers never send to the
//! server, or in its form), kept in `sessionStorage`. It is disabled, like
//! the runs API, when no `api_token` is configured.
//!
//! Everything is embedded in the binary and nothing is loaded from anywhere
//! else: the Content-Security-Policy allows only the page's own inline
//! script and style (by hash) and requests to this origin.

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};

const TEMPLATE: &str = include_str!("ui/page.html");
const SCRIPT: &str = include_str!("ui/page.js");
const STYLE: &str = include_str!("ui/page.css");

/// The assembled page and its Content-Security-Policy.
struct Page {
    html: String,
    csp: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    // The hashes cover exactly the text between the tags, so the script and
    // style are inserted verbatim from the files they are hashed from.
    let html = TEMPLATE
        .replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT);
    let csp = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
         img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_source(SCRIPT),
        sha256_source(STYLE),
    );
    Page {
        html,
        csp: HeaderValue::from_str(&csp).expect("the CSP is ASCII"),
    }
});

fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `GET /ui`.
pub(super) async fn page(State(st): State<Arc<ApiState>>) -> Response {
    if st.config.api_token.is_none() {
        return ApiError::not_found("the runs page is disabled: no api_token is configured")
            .into_response();
    }
    let page = &*PAGE;
    let mut resp = page.html.clone().into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, page.csp.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_embeds_its_script_and_style_under_the_hashes_the_csp_allows() {
        let page = &*PAGE;
        assert!(!page.html.contains("/*SCRIPT*/") && !page.html.contains("/*STYLE*/"));
        assert!(page.html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(page.html.contains(&format!("<style>{STYLE}</style>")));
        let csp = page.csp.to_str().unwrap();
        assert!(csp.contains(&sha256_source(SCRIPT)), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        // Nothing loaded from elsewhere.
        for needle in ["http://", "https://", "src=", "href=\"/"] {
            assert!(!page.html.contains(needle), "the page has `{needle}`");
        }
    }
}
