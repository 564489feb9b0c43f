//! Page tokens and page sizes of the listings.
//!
//! A listing answers at most a page of items and, when more follow, a
//! `next_page_token` the client passes back unchanged. The token names the last item
//! of the page by its sort key (a period, an audit entry's id, a stream's name and
//! id), so an item added or removed between two calls moves no other item to another
//! page: none is listed twice or skipped.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::ApiError;

/// The page size a request asks for, within the listing's `max` (0: `default`).
pub fn size(requested: u32, default: u32, max: u32) -> u32 {
    match requested {
        0 => default,
        n => n.min(max),
    }
}

/// The token of the page after the one that ended at the item with `key`; opaque to
/// clients.
pub fn token(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("after:{key}"))
}

/// The key a page token continues after; `None` for the empty token (the first page).
pub fn after(token: &str) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let key = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("after:").map(str::to_owned));
    key.map(Some).ok_or_else(not_ours)
}

/// The row id a page token continues after, for logs paged by id.
pub fn after_id(token: &str) -> Result<Option<i64>, ApiError> {
    after(token)?
        .map(|id| id.parse().map_err(|_| not_ours()))
        .transpose()
}

/// A key that `after` decoded but the listing cannot read.
pub fn not_ours() -> ApiError {
    ApiError::Invalid(
        "the page_token is not one this server gave: pass the next_page_token of the previous page unchanged".into(),
    )
}

/// The page of `items` after the item the token names, ordered by `key` (which must be
/// unique per item), with the next page's token when more follow. For listings the
/// server reads whole (an organisation's streams, users, tokens): it bounds what one
/// answer carries, not what the server reads.
pub fn page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    page_token: &str,
    size: u32,
) -> Result<(Vec<T>, String), ApiError> {
    let mut keyed: Vec<(String, T)> = items.drain(..).map(|item| (key(&item), item)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let start = match after(page_token)? {
        Some(last) => keyed.partition_point(|(k, _)| *k <= last),
        None => 0,
    };
    let mut rest = keyed.into_iter().skip(start);
    let page: Vec<(String, T)> = rest.by_ref().take(size as usize).collect();
    let next = match (rest.next(), page.last()) {
        (Some(_), Some((last, _))) => token(last),
        _ => String::new(),
    };
    Ok((page.into_iter().map(|(_, item)| item).collect(), next))
}

/// One sort key of several parts (a name, then an id): NUL never occurs in names or
/// ids, and sorts below every other character, so the keys sort as the tuples do.
pub fn key_of(parts: &[&str]) -> String {
    parts.join("\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_item_once_in_key_order() {
        let items: Vec<u32> = (0..25).rev().collect();
        let key = |n: &u32| format!("{n:03}");
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (page, next) = page(items.clone(), key, &token, 10).unwrap();
            assert!(page.len() <= 10);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn an_item_removed_between_pages_moves_nothing_else() {
        let key = |n: &u32| format!("{n:03}");
        let (first, next) = page((0..6).collect(), key, "", 3).unwrap();
        assert_eq!(first, [0, 1, 2]);
        // The page's last item is gone and a new one sorts before it.
        let (second, next) = page(vec![0, 1, 3, 4, 5], key, &next, 3).unwrap();
        assert_eq!((second, next.as_str()), (vec![3, 4, 5], ""));
    }

    #[test]
    fn tuple_keys_sort_as_tuples_and_foreign_tokens_are_refused() {
        assert!(key_of(&["ab", "z"]) < key_of(&["abc", "a"]));
        let err = after("not a token").unwrap_err().to_string();
        assert!(err.contains("next_page_token"), "{err}");
        assert_eq!(after(&token("x\0y")).unwrap().as_deref(), Some("x\0y"));
    }

    #[test]
    fn sizes_default_and_stop_at_the_maximum() {
        assert_eq!(size(0, 100, 1_000), 100);
        assert_eq!(size(5_000, 100, 1_000), 1_000);
        assert_eq!(size(7, 100, 1_000), 7);
    }
}
