//! HTTP for backends: the inbound requests a gateway sends to
//! `/backends/<name>/...` ([`HttpRequest`], [`HttpResponse`]), form and query
//! encoding, and (with the `backend` feature) an outbound `client` over
//! `wasi:http`.
//!
//! The host only lets a backend reach the hosts listed in its
//! `allowed_hosts` configuration; any other request fails with
//! [`HttpError::Denied`](client::HttpError::Denied).

#[cfg(feature = "http-client")]
pub mod client;
mod inbound;

pub use inbound::{HttpRequest, HttpResponse};

/// Decode `application/x-www-form-urlencoded` text (a query string or a
/// form body) into name/value pairs; invalid UTF-8 is replaced.
pub fn decode_form(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Decode a form into name/raw-byte pairs, for values whose charset is
/// not UTF-8 (Kannel's `charset` parameter says which it is).
pub fn decode_form_bytes(input: &[u8]) -> Vec<(String, Vec<u8>)> {
    input
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = match part.iter().position(|&b| b == b'=') {
                Some(eq) => (&part[..eq], &part[eq + 1..]),
                None => (part, &[][..]),
            };
            (String::from_utf8_lossy(&percent_decode(name)).into_owned(), percent_decode(value))
        })
        .collect()
}

/// Encode name/value pairs as `application/x-www-form-urlencoded`.
pub fn encode_form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        out.append_pair(name, value);
    }
    out.finish()
}

/// Percent-encode raw bytes for a query value (`+` for space), as Python's
/// `urlencode` does for `bytes` values.
pub fn encode_form_bytes(value: &[u8]) -> String {
    form_urlencoded::byte_serialize(value).collect()
}

/// The `Authorization` header value of HTTP Basic authentication.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Compare a secret a request carries with the expected one, in time that
/// does not depend on where they differ.
pub fn same_secret(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Base64 (standard alphabet, padded), as signatures and Basic
/// authentication use it.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Undo `%XX` escapes and `+` for space.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match hex_pair(input[i + 1], input[i + 2]) {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    out
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(digit(high)? << 4 | digit(low)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_round_trip() {
        let encoded = encode_form([("text", "héllo wörld & more"), ("to", "+256 700")]);
        assert_eq!(encoded, "text=h%C3%A9llo+w%C3%B6rld+%26+more&to=%2B256+700");
        assert_eq!(
            decode_form(encoded.as_bytes()),
            vec![("text".into(), "héllo wörld & more".into()), ("to".into(), "+256 700".into())]
        );
    }

    #[test]
    fn raw_values_keep_their_bytes() {
        let pairs = decode_form_bytes(b"id=123&text=%00h%00i&bad=%zz&tail=%4");
        assert_eq!(pairs[1], ("text".into(), vec![0, b'h', 0, b'i']));
        assert_eq!(pairs[2], ("bad".into(), b"%zz".to_vec()));
        assert_eq!(pairs[3], ("tail".into(), b"%4".to_vec()));
        assert_eq!(encode_form_bytes(&[0, b'h', b' ']), "%00h+");
    }

    #[test]
    fn basic_auth_and_secrets() {
        assert_eq!(basic_auth("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
