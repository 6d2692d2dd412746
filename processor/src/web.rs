//! The web dashboard's files (`processor/web`), compiled into the binary:
//! `GET /` is the page, `GET /assets/{name}` its scripts, styles and the
//! chart library (uPlot, copied from npm into `web/vendor` by
//! `scripts/web-vendor.sh`). Nothing is fetched from anywhere else at run
//! time, so the dashboard works offline and on an isolated network.
//!
//! Every answer carries a Content-Security-Policy that allows this origin
//! only, no inline script and no inline style attribute: a device owner's
//! name or an applet's log line shown on a page cannot run as code even if
//! a rendering bug let it through as markup. Files are answered with an
//! ETag, so a browser revalidates with a 304 instead of downloading again.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

macro_rules! file {
    ($name:literal, $dir:literal, $kind:literal) => {
        (
            $name,
            $kind,
            include_bytes!(concat!("../web/", $dir, "/", $name)) as &[u8],
        )
    };
}

/// (name, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    file!("index.html", "src", "text/html; charset=utf-8"),
    file!("app.js", "src", "text/javascript; charset=utf-8"),
    file!("api.js", "src", "text/javascript; charset=utf-8"),
    file!("ui.js", "src", "text/javascript; charset=utf-8"),
    file!("verify.js", "src", "text/javascript; charset=utf-8"),
    file!("fleet.js", "src", "text/javascript; charset=utf-8"),
    file!("device.js", "src", "text/javascript; charset=utf-8"),
    file!("applets.js", "src", "text/javascript; charset=utf-8"),
    file!("epochs.js", "src", "text/javascript; charset=utf-8"),
    file!("app.css", "src", "text/css; charset=utf-8"),
    file!("uPlot.iife.min.js", "vendor", "text/javascript; charset=utf-8"),
    file!("uPlot.min.css", "vendor", "text/css; charset=utf-8"),
    file!("uPlot.LICENSE", "vendor", "text/plain; charset=utf-8"),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Each file's ETag, computed once.
fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, bytes)| format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..12])))
            .collect()
    })
}

fn answer(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = FILES.iter().position(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let (_, kind, bytes) = FILES[i];
    let etag = &etags()[i];
    let fixed = [
        (header::ETAG, HeaderValue::from_str(etag).expect("hex etag")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, fixed).into_response();
    }
    (fixed, [(header::CONTENT_TYPE, kind)], bytes).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    answer("index.html", &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    if name == "index.html" {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    answer(&name, &headers)
}

/// The dashboard's routes, for merging into the API's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_there_and_the_page_loads_only_what_is_served() {
        let page = std::str::from_utf8(FILES[0].2).unwrap();
        for (name, _, bytes) in FILES {
            assert!(!bytes.is_empty(), "{name}");
        }
        // Every script and stylesheet the page or a module names is served.
        for (name, kind, bytes) in FILES {
            if !kind.starts_with("text/javascript") && *name != "index.html" {
                continue;
            }
            let text = std::str::from_utf8(bytes).unwrap();
            for cut in text
                .split("/assets/")
                .skip(1)
                .chain(text.split("from './").skip(1))
            {
                let wanted: String = cut.chars().take_while(|c| !matches!(c, '"' | '\'')).collect();
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == wanted),
                    "{name} loads {wanted}, which is not served"
                );
            }
        }
        assert!(page.contains("/assets/app.js"));
    }

    #[test]
    fn a_known_etag_is_answered_304_and_an_unknown_file_404() {
        let first = answer("app.css", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        assert!(
            first.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(answer("app.css", &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(answer("app.css", &h).status(), StatusCode::OK);
        assert_eq!(
            answer("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
