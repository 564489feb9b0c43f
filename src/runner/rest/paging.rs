//! The pagination styles of a REST source (none, `Link` header, next URL in the body,
//! page number, offset, cursor) and the page position they keep during a run.

use reqwest::Url;
use serde_json::Value;
use serde_json_path::JsonPath;

use super::{Page, json_path};
use crate::connector::Pagination;
use crate::runner::FetchError;

pub(super) enum Paging {
    Single,
    LinkHeader,
    NextUrl {
        path: JsonPath,
        text: String,
    },
    Page {
        param: String,
        number: u64,
    },
    Offset {
        param: String,
        offset: u64,
    },
    Cursor {
        path: JsonPath,
        text: String,
        param: String,
    },
}

impl Paging {
    pub(super) fn new(pagination: Option<&Pagination>) -> Result<Self, FetchError> {
        let field = "source.pagination.path";
        Ok(match pagination {
            None => Self::Single,
            Some(Pagination::LinkHeader {}) => Self::LinkHeader,
            Some(Pagination::NextUrl { path }) => Self::NextUrl {
                path: json_path(field, path)?,
                text: path.clone(),
            },
            Some(Pagination::Page { param, start }) => Self::Page {
                param: param.clone(),
                number: *start,
            },
            Some(Pagination::Offset { param }) => Self::Offset {
                param: param.clone(),
                offset: 0,
            },
            Some(Pagination::Cursor { path, param }) => Self::Cursor {
                path: json_path(field, path)?,
                text: path.clone(),
                param: param.clone(),
            },
        })
    }

    /// Puts the first page's number or offset in the first URL.
    pub(super) fn start(&self, url: &mut Url) {
        match self {
            Self::Page { param, number } => *url = with_param(url, param, &number.to_string()),
            Self::Offset { param, offset } => *url = with_param(url, param, &offset.to_string()),
            _ => {}
        }
    }

    /// The URL of the page after `page` (fetched from `url`, `count` records), if any.
    pub(super) fn next(
        &mut self,
        url: &Url,
        page: &Page,
        count: usize,
        what: &str,
    ) -> Result<Option<Url>, FetchError> {
        let join = |link: &str| {
            page.url.join(link).map(Some).map_err(|e| {
                FetchError::permanent(format!(
                    "the next-page URL of {what} is not a valid URL ({e})"
                ))
            })
        };
        match self {
            Self::Single => Ok(None),
            Self::LinkHeader => page.next_link.as_deref().map_or(Ok(None), join),
            Self::NextUrl { path, text } => {
                match token_text(path.query(&page.body).first(), text, what)? {
                    Some(link) => join(&link),
                    None => Ok(None),
                }
            }
            Self::Page { param, number } => {
                *number += 1;
                Ok(Some(with_param(url, param, &number.to_string())))
            }
            Self::Offset { param, offset } => {
                *offset += count as u64;
                Ok(Some(with_param(url, param, &offset.to_string())))
            }
            Self::Cursor { path, text, param } => {
                let token = token_text(path.query(&page.body).first(), text, what)?;
                Ok(token.map(|token| with_param(url, param, &token)))
            }
        }
    }
}

/// A next URL or cursor token found in a body: a string or number (its exact text), or
/// `None` when it is missing, null, `false` or empty (the last page).
fn token_text(value: Option<&Value>, path: &str, what: &str) -> Result<Option<String>, FetchError> {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(FetchError::permanent(format!(
            "the value at {path} in the response to {what} is neither a string nor a number"
        ))),
    }
}

/// `url` with query parameter `name` set to `value` (replacing any it had).
pub(super) fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let mut url = url.clone();
    if url.query_pairs().any(|(key, _)| key == name) {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| key != name)
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url.query_pairs_mut().append_pair(name, value);
    url
}

/// The target of the `rel="next"` link of one `Link` header value (RFC 8288).
pub(super) fn next_link(header: &str) -> Option<&str> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = rest[start..].find('>')? + start;
        let target = &rest[start + 1..end];
        rest = &rest[end + 1..];
        // The link's parameters run to the next comma outside a quoted string.
        let mut quoted = false;
        let stop = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == ',' && !quoted
            })
            .map_or(rest.len(), |(i, _)| i);
        if rest[..stop].split(';').any(is_rel_next) {
            return Some(target);
        }
        rest = &rest[stop..];
    }
}

fn is_rel_next(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::extract::Request;
    use axum::http::header;
    use axum::response::Response as Answer;

    use super::next_link;
    use crate::runner::rest::test_api::{
        Log, json, numbers, param, params, run_alone, serve_get, slice, source_at, with_header,
    };

    /// Runs a source of `/items` with the TOML lines `paging` against an API answering
    /// `answer(query parameters)`; returns the numbers read and the value of the query
    /// parameter `asked` in each request (empty when absent).
    async fn paged_run<F>(paging: &str, asked: &'static str, answer: F) -> (Vec<u64>, Vec<String>)
    where
        F: Fn(&HashMap<String, String>) -> Answer + Clone + Send + Sync + 'static,
    {
        let log = Log::default();
        let seen = log.clone();
        let base = serve_get("/items", move |request: Request| async move {
            let params = params(&request);
            seen.push(params.get(asked).cloned().unwrap_or_default());
            answer(&params)
        })
        .await;
        let records = run_alone(&source_at(&base, "/items", paging))
            .await
            .unwrap();
        (numbers(&records), log.entries())
    }

    fn number(params: &HashMap<String, String>, name: &str) -> u64 {
        params.get(name).map_or(1, |v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn link_header_pages_are_followed_until_there_is_no_next_link() {
        let paging = "pagination = { type = \"link_header\" }";
        let (read, asked) = paged_run(paging, "p", |params| {
            let page = number(params, "p");
            let answer = json(200, slice((page - 1) * 2, 2));
            if page >= 3 {
                return answer;
            }
            let link = format!(
                "</items?p=3>; rel=\"last\"; title=\"a, b\", </items?p={}>; rel=\"next\"",
                page + 1
            );
            with_header(answer, header::LINK, &link)
        })
        .await;
        assert_eq!(read, [0, 1, 2, 3, 4]);
        assert_eq!(asked, ["", "2", "3"]);
    }

    #[tokio::test]
    async fn next_url_pages_follow_relative_urls_from_the_body() {
        let base = serve_get("/api/items", |request: Request| async move {
            let page = param(&request, "p").unwrap_or(1);
            let next = if page < 3 {
                format!("\"items?p={}\"", page + 1)
            } else {
                "null".into()
            };
            let data = slice((page - 1) * 2, 2);
            json(
                200,
                format!("{{\"data\":{data},\"links\":{{\"next\":{next}}}}}"),
            )
        })
        .await;
        let source = source_at(
            &base,
            "/api/items",
            "records = \"$.data[*]\"\n\
             pagination = { type = \"next_url\", path = \"$.links.next\" }",
        );
        let records = run_alone(&source).await.unwrap();
        assert_eq!(numbers(&records), [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn page_numbers_advance_until_an_empty_page() {
        let paging = "pagination = { type = \"page\", param = \"page\", start = 0 }";
        let (read, asked) = paged_run(paging, "page", |params| {
            json(200, slice(number(params, "page") * 2, 2))
        })
        .await;
        assert_eq!(read, [0, 1, 2, 3, 4]);
        assert_eq!(asked, ["0", "1", "2", "3"]);
    }

    #[tokio::test]
    async fn offsets_advance_by_the_records_received_until_an_empty_page() {
        let paging =
            "query = { limit = \"2\" }\npagination = { type = \"offset\", param = \"offset\" }";
        let (read, asked) = paged_run(paging, "offset", |params| {
            json(
                200,
                slice(number(params, "offset"), number(params, "limit")),
            )
        })
        .await;
        assert_eq!(read, [0, 1, 2, 3, 4]);
        assert_eq!(asked, ["0", "2", "4", "5"]);
    }

    #[tokio::test]
    async fn cursor_tokens_are_sent_back_exactly_until_the_response_has_none() {
        let paging = "records = \"$.items[*]\"\n\
             pagination = { type = \"cursor\", path = \"$.next\", param = \"after\" }";
        let (read, asked) = paged_run(paging, "after", |params| {
            let (data, next) = match params.get("after").map(String::as_str) {
                None => (slice(0, 2), "\"b\""),
                Some("b") => (slice(2, 2), "12345678901234567890123"),
                Some("12345678901234567890123") => (slice(4, 2), "null"),
                Some(other) => panic!("unexpected cursor {other}"),
            };
            json(200, format!("{{\"items\":{data},\"next\":{next}}}"))
        })
        .await;
        assert_eq!(read, [0, 1, 2, 3, 4]);
        assert_eq!(asked, ["", "b", "12345678901234567890123"]);
    }

    #[test]
    fn the_next_link_is_found_among_several_and_only_there() {
        let header =
            r#"<https://a.test/x?page=1>; rel="prev first", <https://a.test/x?page=3>; rel="next""#;
        assert_eq!(next_link(header), Some("https://a.test/x?page=3"));
        assert_eq!(next_link("</x?p=2>; REL=next"), Some("/x?p=2"));
        assert_eq!(next_link(r#"</x?p=9>; rel="last""#), None);
        assert_eq!(next_link(r#"</x>; title="a, rel=next"; rel=last"#), None);
    }
}
