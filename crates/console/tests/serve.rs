//! The console's router on its own: content types, caching, the policy.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

async fn get(path: &str, if_none_match: Option<&str>) -> axum::response::Response {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    web_console::router()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible")
}

#[tokio::test]
async fn every_path_has_its_type_an_etag_and_the_policy() {
    let expected = [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
    ];
    assert_eq!(expected.map(|(path, _)| path), web_console::PATHS);
    for (path, content_type) in expected {
        let response = get(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            web_console::CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = headers[header::ETAG].to_str().expect("ascii").to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

        let again = get(path, Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        let other = get(path, Some("\"0\"")).await;
        assert_eq!(other.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_page_has_no_inline_script_or_style() {
    let index = include_str!("../assets/index.html");
    assert!(index.contains(r#"<script src="/console/app.js" defer></script>"#));
    assert!(!index.contains("<script>"), "inline script");
    assert!(!index.contains("<style"), "inline style element");
    assert!(!index.contains("style="), "inline style attribute");
    for handler in ["onclick=", "onload=", "onsubmit=", "onerror="] {
        assert!(!index.contains(handler), "inline event handler {handler}");
    }
    let script = include_str!("../assets/app.js");
    assert!(
        !script.contains(".innerHTML")
            && !script.contains(".outerHTML")
            && !script.contains("eval("),
        "the script builds the page with DOM calls only"
    );
}
