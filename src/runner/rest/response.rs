//! What is read out of a REST response: the error a status or a failed request means
//! (transient or permanent, with `Retry-After`), the body within its size limit, and
//! short excerpts of bodies for error messages with secrets masked.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode};

use crate::runner::FetchError;

/// Longest excerpt of a response body quoted in an error, in characters.
const EXCERPT_CHARS: usize = 200;
/// Bytes of an error response read to quote from it.
const ERROR_BODY_BYTES: u64 = 4096;

pub(super) async fn status_error(what: &str, response: Response, masks: &[&str]) -> FetchError {
    let status = response.status();
    let wait = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            retry_after(response.headers())
        }
        _ => None,
    };
    if status.is_redirection() {
        return FetchError::permanent(format!(
            "{what} answered {status}, a redirect kpistream does not follow: the source's \
             credentials stay on its own scheme, host and port"
        ));
    }
    let body = read_prefix(response, ERROR_BODY_BYTES).await;
    let excerpt = excerpt(&body, masks);
    let message = if excerpt.is_empty() {
        format!("{what} answered {status}")
    } else {
        format!("{what} answered {status}: {excerpt}")
    };
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        FetchError::Transient {
            message,
            retry_after: wait,
        }
    } else {
        FetchError::permanent(message)
    }
}

/// A `Retry-After` in seconds or as an HTTP date (IMF-fixdate, RFC 9110).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text)
        .ok()?;
    Some(Duration::try_from(at.duration_since(jiff::Timestamp::now())).unwrap_or(Duration::ZERO))
}

/// The error of a request that got no (complete) response. Its URL is dropped: it may
/// hold an API key or an `{{env.NAME}}` value.
pub(super) fn request_error(what: &str, timeout: Duration, error: reqwest::Error) -> FetchError {
    let error = error.without_url();
    if error.is_timeout() {
        return FetchError::transient(format!("{what} timed out after {timeout:?}"));
    }
    let mut message = format!("{what} failed: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if error.is_builder() || error.is_redirect() || error.is_decode() {
        FetchError::permanent(message)
    } else {
        FetchError::transient(message)
    }
}

pub(super) fn content_type(response: &Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "no content type".to_owned(),
            |t| format!("content type {t}"),
        )
}

/// The whole body, counted after decompression as it streams in; more than `limit`
/// bytes is a permanent error, reading stopped there.
pub(super) async fn read_body(
    mut response: Response,
    limit: u64,
    what: &str,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || {
        FetchError::permanent(format!(
            "the response to {what} is larger than max_response_bytes ({limit} bytes, counted \
             after decompression); raise it or ask for smaller pages"
        ))
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_error(what, timeout, e))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Up to about `limit` bytes of an error response, read errors ignored.
async fn read_prefix(mut response: Response, limit: u64) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() as u64 >= limit {
            break;
        }
    }
    body
}

/// A body as a short one-line text for an error: whitespace collapsed, `masks` replaced
/// by `[REDACTED]`, at most 200 characters.
pub(super) fn excerpt(body: &[u8], masks: &[&str]) -> String {
    let mut text = String::from_utf8_lossy(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for mask in masks.iter().filter(|m| !m.is_empty()) {
        text = text.replace(mask, "[REDACTED]");
    }
    if text.chars().count() > EXCERPT_CHARS {
        text = text.chars().take(EXCERPT_CHARS - 1).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::{Duration, Instant};

    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;
    use crate::runner::Source as _;
    use crate::runner::rest::test_api::{
        json, open_source, run_alone, serve_counted, serve_get, slice, source_at, with_header,
    };

    #[tokio::test]
    async fn a_503_twice_then_a_200_succeeds_on_the_third_attempt() {
        let (base, calls) = serve_counted("/items", |call| match call {
            1 | 2 => json(503, "busy"),
            _ => json(200, slice(0, 5)),
        })
        .await;
        let records = run_alone(&source_at(&base, "/items", "")).await.unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn a_400_fails_at_once_with_the_status_and_an_excerpt_of_the_body() {
        let long = "x".repeat(500);
        let body = format!("{{\"error\": \"bad filter\",\n \"detail\": \"{long}\"}}");
        let (base, calls) = serve_counted("/v1/items", move |_| json(400, body.clone())).await;
        let source = source_at(&base, "/v1/items?kind=a", "");
        let error = run_alone(&source).await.unwrap_err();
        assert_eq!(calls.get(), 1, "a 400 is not retried");
        assert!(!error.is_transient());
        let message = error.to_string();
        assert!(
            message.starts_with(
                "GET /v1/items page 1 answered 400 Bad Request: {\"error\": \"bad filter\", \"detail\""
            ),
            "{message}"
        );
        let excerpt = message.split_once(": ").unwrap().1;
        assert_eq!(excerpt.chars().count(), 200);
        assert!(excerpt.ends_with('…'));
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_waited_for() {
        let (base, calls) = serve_counted("/items", |call| match call {
            1 => with_header(json(429, "slow down"), header::RETRY_AFTER, "1"),
            _ => json(200, slice(0, 1)),
        })
        .await;
        let started = Instant::now();
        let records = run_alone(&source_at(&base, "/items", "")).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(calls.get(), 2);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_an_http_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        headers.insert(RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    /// Serves, gzip-compressed, one record `{"v": "aaa…"}` of `length` letters; returns
    /// the base URL and the size of the body on the wire.
    async fn serve_gzipped_record(length: usize) -> (String, usize) {
        let plain = format!(r#"[{{"v":"{}"}}]"#, "a".repeat(length));
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(plain.as_bytes()).unwrap();
        let body = encoder.finish().unwrap();
        let size = body.len();
        let answer = move || async move {
            let headers = [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_ENCODING, "gzip"),
            ];
            (headers, body).into_response()
        };
        (serve_get("/items", answer).await, size)
    }

    #[tokio::test]
    async fn a_gzip_response_is_decompressed() {
        let (base, _) = serve_gzipped_record(1 + 4 * 258).await;
        let records = run_alone(&source_at(&base, "/items", "")).await.unwrap();
        assert_eq!(records[0]["v"].as_str().unwrap(), "a".repeat(1 + 4 * 258));
    }

    #[tokio::test]
    async fn a_response_over_max_response_bytes_once_decompressed_is_refused() {
        let (base, size) = serve_gzipped_record(1 + 100 * 258).await;
        assert!(size < 1000, "{size} bytes on the wire");
        let source = source_at(&base, "/items", "max_response_bytes = 2000");
        let error = run_alone(&source).await.unwrap_err();
        assert!(!error.is_transient());
        assert!(
            error
                .to_string()
                .contains("GET /items page 1 is larger than max_response_bytes (2000 bytes"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_refused_naming_its_content() {
        let base = serve_get("/items", || async {
            let page = "<html><body>Sign in</body></html>";
            ([(header::CONTENT_TYPE, "text/html")], page).into_response()
        })
        .await;
        let error = run_alone(&source_at(&base, "/items", ""))
            .await
            .unwrap_err();
        assert!(!error.is_transient());
        let message = error.to_string();
        assert!(
            message.starts_with(
                "the response to GET /items page 1 is not JSON (content type text/html"
            ),
            "{message}"
        );
        assert!(
            message.ends_with(": <html><body>Sign in</body></html>"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_request_that_times_out_is_a_transient_error() {
        let base = serve_get("/slow", || async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json(200, "[]")
        })
        .await;
        let mut pages = open_source(&source_at(&base, "/slow", "timeout = \"200ms\""), 2);
        let started = Instant::now();
        let error = pages.next_page().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(error.is_transient());
        assert_eq!(
            error.to_string(),
            "GET /slow page 1 timed out after 200ms (gave up after 2 attempts)"
        );
    }
}
