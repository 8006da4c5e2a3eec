//! Stream names: `APP/NAME`, split from the query strings clients append to either part.
//!
//! Invariant: a [`StreamName`] holds decoded, query-free parts; the query parameters travel
//! beside it in [`QueryParams`] for later use by hooks.

use percent_encoding::percent_decode_str;
use std::fmt;

/// Identity of a live stream: the application and the stream name within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName {
    pub app: String,
    pub name: String,
}

impl StreamName {
    pub fn new(app: impl Into<String>, name: impl Into<String>) -> Self {
        StreamName {
            app: app.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

/// Decoded `key=value` pairs from a query string, in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryParams(pub Vec<(String, String)>);

impl QueryParams {
    /// Parses `a=1&b=x%20y&flag`; a key without `=` gets an empty value. `+` is a space.
    pub fn parse(query: &str) -> QueryParams {
        let pairs = query
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                (decode(key), decode(value))
            })
            .collect();
        QueryParams(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These pairs without `key` (e.g. a token, before the query is shown to anyone).
    pub fn without(&self, key: &str) -> QueryParams {
        QueryParams(self.0.iter().filter(|(k, _)| k != key).cloned().collect())
    }

    /// Adds the pairs of `other` after these.
    pub fn extend(&mut self, other: QueryParams) {
        self.0.extend(other.0);
    }
}

/// Percent-decodes one component; `+` means space as in forms. Invalid UTF-8 is replaced.
pub fn decode(component: &str) -> String {
    let spaced = component.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Splits `path?query` into the decoded path and its parameters.
pub fn split_query(raw: &str) -> (String, QueryParams) {
    match raw.split_once('?') {
        Some((path, query)) => (decode(path), QueryParams::parse(query)),
        None => (decode(raw), QueryParams::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_decodes_query() {
        let (path, query) = split_query("cam%201?token=a%2Bb&x=1+2&flag");
        assert_eq!(path, "cam 1");
        assert_eq!(query.get("token"), Some("a+b"));
        assert_eq!(query.get("x"), Some("1 2"));
        assert_eq!(query.get("flag"), Some(""));
        assert_eq!(query.get("missing"), None);
    }

    #[test]
    fn no_query_means_empty_params() {
        let (path, query) = split_query("live");
        assert_eq!(path, "live");
        assert!(query.is_empty());
    }

    #[test]
    fn displays_as_app_slash_name() {
        assert_eq!(StreamName::new("live", "test").to_string(), "live/test");
    }
}
