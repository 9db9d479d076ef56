//! RapidSMS's `contrib.handlers`: keyword and pattern handlers, with
//! RapidSMS's exact matching rules.
//!
//! A handler answers one kind of message. Collect handlers into an app with
//! [`handlers_app!`](crate::handlers_app): its `handle` phase offers each
//! message to the handlers in order and the first that accepts it wins.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use crate::app::IncomingMessage;
use crate::host::{HostError, log};

/// What a handler's methods return: `?` passes host errors on, and the
/// handlers app logs them.
pub type HandlerResult = Result<(), HostError>;

/// A handler: RapidSMS's `BaseHandler`. `dispatch` returns true when it took
/// the message.
pub trait Handler {
    /// Take the message (and respond to it) or leave it to the next handler.
    fn dispatch(&self, msg: &IncomingMessage) -> bool;
}

/// RapidSMS's `KeywordHandler`: answers messages that start with a keyword.
///
/// `keyword` is a regular expression (alternatives such as `register|reg`).
/// A message matches `^\s*(?:KEYWORD)[\s,;:]*([^\s,;:].*)?$`, case-insensitive,
/// `.` matching newlines, in verbose mode (white space in the keyword is
/// ignored), exactly as RapidSMS builds it. With text after the keyword
/// `handle` runs with that text (trailing spaces kept), otherwise `help`.
/// There is no word boundary: as in RapidSMS, `echoes` gives `handle("es")`.
///
/// Wrap it in [`Keyword`] to use it as a [`Handler`].
pub trait KeywordHandler {
    /// The keyword, a regular expression.
    fn keyword(&self) -> &str;
    /// The message was the bare keyword: explain how to use it.
    fn help(&self, msg: &IncomingMessage) -> HandlerResult;
    /// The message was the keyword followed by `text`.
    fn handle(&self, msg: &IncomingMessage, text: &str) -> HandlerResult;
}

/// RapidSMS's `PatternHandler`: answers messages matching a regular
/// expression, case-insensitive, anchored at the start (not at the end unless
/// the pattern says `$`). The pattern's groups are passed to `handle`.
///
/// Wrap it in [`Pattern`] to use it as a [`Handler`].
pub trait PatternHandler {
    /// The pattern, a regular expression.
    fn pattern(&self) -> &str;
    /// The message matched; `groups` are the pattern's capture groups.
    fn handle(&self, msg: &IncomingMessage, groups: &[Option<&str>]) -> HandlerResult;
}

/// A [`KeywordHandler`] as a [`Handler`].
#[derive(Debug, Default, Clone)]
pub struct Keyword<H>(pub H);

/// A [`PatternHandler`] as a [`Handler`].
#[derive(Debug, Default, Clone)]
pub struct Pattern<H>(pub H);

/// What a keyword handler does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeywordMatch<'t> {
    /// The keyword alone (or followed only by separators): `help`.
    Help,
    /// The keyword and this text: `handle(text)`.
    Handle(&'t str),
}

/// Why a handler cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// The keyword is empty.
    MissingKeyword,
    /// The pattern is empty.
    MissingPattern,
    /// The keyword or pattern is not a valid regular expression.
    InvalidRegex(String),
}

impl core::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandlerError::MissingKeyword => f.write_str("KeywordHandler must define a keyword."),
            HandlerError::MissingPattern => f.write_str("PatternHandler must define a pattern."),
            HandlerError::InvalidRegex(why) => write!(f, "invalid regular expression: {why}"),
        }
    }
}

impl std::error::Error for HandlerError {}

thread_local! {
    /// Keyword handlers' expressions, by keyword.
    static KEYWORDS: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
    /// Pattern handlers' expressions, by pattern.
    static PATTERNS: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// Run `f` with the expression `cache` keeps for `key`, compiling
/// `source(key)` the first time (once per instance).
fn with_regex<R>(
    cache: &'static std::thread::LocalKey<RefCell<HashMap<String, Regex>>>,
    key: &str,
    source: impl FnOnce(&str) -> String,
    f: impl FnOnce(&Regex) -> R,
) -> Result<R, HandlerError> {
    cache.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(regex) = cache.get(key) {
            return Ok(f(regex));
        }
        let regex = RegexBuilder::new(&source(key)).build().map_err(|e| HandlerError::InvalidRegex(e.to_string()))?;
        let result = f(&regex);
        cache.insert(key.to_owned(), regex);
        Ok(result)
    })
}

/// How a keyword handler with `keyword` treats `text`; `None` when the
/// message is not for it.
pub fn keyword_match<'t>(keyword: &str, text: &'t str) -> Result<Option<KeywordMatch<'t>>, HandlerError> {
    if keyword.is_empty() {
        return Err(HandlerError::MissingKeyword);
    }
    let source = |keyword: &str| format!(r"(?isx)^\s*(?:{keyword})[\s,;:]*([^\s,;:].*)?$");
    with_regex(&KEYWORDS, keyword, source, |re| {
        re.captures(text).map(|caps| match caps.get(1) {
            Some(rest) if !rest.as_str().trim().is_empty() => KeywordMatch::Handle(rest.as_str()),
            _ => KeywordMatch::Help,
        })
    })
}

/// The groups of `pattern` matched at the start of `text`; `None` when it
/// does not match.
pub fn pattern_match<'t>(pattern: &str, text: &'t str) -> Result<Option<Vec<Option<&'t str>>>, HandlerError> {
    if pattern.is_empty() {
        return Err(HandlerError::MissingPattern);
    }
    let source = |pattern: &str| format!(r"(?i)\A(?:{pattern})");
    with_regex(&PATTERNS, pattern, source, |re| {
        re.captures(text).map(|caps| caps.iter().skip(1).map(|g| g.map(|m| m.as_str())).collect())
    })
}

fn report(kind: &str, result: HandlerResult) {
    if let Err(err) = result {
        log::error(&format!("{kind} failed: {err}"));
    }
}

impl<H: KeywordHandler> Handler for Keyword<H> {
    fn dispatch(&self, msg: &IncomingMessage) -> bool {
        match keyword_match(self.0.keyword(), &msg.text) {
            Ok(None) => false,
            Ok(Some(KeywordMatch::Help)) => {
                report("help", self.0.help(msg));
                true
            }
            Ok(Some(KeywordMatch::Handle(text))) => {
                report("handle", self.0.handle(msg, text));
                true
            }
            Err(err) => {
                log::error(&err.to_string());
                false
            }
        }
    }
}

impl<H: PatternHandler> Handler for Pattern<H> {
    fn dispatch(&self, msg: &IncomingMessage) -> bool {
        match pattern_match(self.0.pattern(), &msg.text) {
            Ok(None) => false,
            Ok(Some(groups)) => {
                report("handle", self.0.handle(msg, &groups));
                true
            }
            Err(err) => {
                log::error(&err.to_string());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(keyword: &str, text: &str) -> Option<KeywordMatch<'static>> {
        let text: &'static str = Box::leak(text.to_owned().into_boxed_str());
        keyword_match(keyword, text).expect("valid keyword")
    }

    #[test]
    fn keyword_with_text_hands_the_rest_over() {
        assert_eq!(kw("echo", "echo hello"), Some(KeywordMatch::Handle("hello")));
        assert_eq!(kw("echo", "ECHO Hello"), Some(KeywordMatch::Handle("Hello")));
        assert_eq!(kw("echo", "  echo   x  "), Some(KeywordMatch::Handle("x  ")));
        assert_eq!(kw("echo", "echo,;: x"), Some(KeywordMatch::Handle("x")));
    }

    #[test]
    fn bare_keyword_asks_for_help() {
        assert_eq!(kw("echo", "echo"), Some(KeywordMatch::Help));
        assert_eq!(kw("echo", "echo   "), Some(KeywordMatch::Help));
        assert_eq!(kw("echo", "echo ,;:"), Some(KeywordMatch::Help));
    }

    #[test]
    fn rapidsms_quirks_are_kept() {
        // No word boundary.
        assert_eq!(kw("echo", "echoes"), Some(KeywordMatch::Handle("es")));
        assert_eq!(kw("echo", "echo-hi"), Some(KeywordMatch::Handle("-hi")));
        assert_eq!(kw("echo", "xecho hi"), None);
        // Verbose mode: white space inside the keyword is ignored.
        assert_eq!(kw("hello world", "helloworld x"), Some(KeywordMatch::Handle("x")));
        assert_eq!(kw("hello world", "hello world"), None);
        // A newline right after the keyword is a separator; dot matches newlines.
        assert_eq!(kw("echo", "echo\nhi\nthere"), Some(KeywordMatch::Handle("hi\nthere")));
    }

    #[test]
    fn alternatives_and_unicode_case() {
        assert_eq!(kw("register|reg|join", "JOIN Ann"), Some(KeywordMatch::Handle("Ann")));
        assert_eq!(kw("émission", "ÉMISSION x"), Some(KeywordMatch::Handle("x")));
        assert_eq!(kw("register|reg|join", "hello"), None);
    }

    #[test]
    fn missing_or_bad_keyword_is_an_error() {
        assert_eq!(keyword_match("", "x"), Err(HandlerError::MissingKeyword));
        assert!(matches!(keyword_match("(", "x"), Err(HandlerError::InvalidRegex(_))));
    }

    #[test]
    fn pattern_is_anchored_at_start_only_and_case_insensitive() {
        let groups = pattern_match(r"add (\d+) (\d+)", "ADD 1 2 please").expect("valid");
        assert_eq!(groups, Some(vec![Some("1"), Some("2")]));
        assert_eq!(pattern_match(r"add (\d+)", "please add 1").expect("valid"), None);
        assert_eq!(pattern_match(r"a(x)?b", "ab").expect("valid"), Some(vec![None]));
        assert_eq!(pattern_match("", "x"), Err(HandlerError::MissingPattern));
    }
}
