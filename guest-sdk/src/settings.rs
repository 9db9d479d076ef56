//! A plugin's settings, from the host's configuration file.

/// The settings handed to `configure`: key/value pairs, keys lower-cased.
///
/// Nested TOML tables arrive flattened with dots (`sendsms_params.username`);
/// numbers and booleans arrive as their TOML text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pairs: Vec<(String, String)>,
}

impl Settings {
    /// Settings from key/value pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Settings { pairs }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when it is not set.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key` parsed as a boolean (`true`/`false`).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(format!("setting `{key}` must be true or false, not `{other}`")),
        }
    }

    /// All pairs, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The pairs under `prefix` (`sendsms_params.` gives `username`,
    /// `password`, ...), with the prefix removed.
    pub fn prefixed(&self, prefix: &str) -> Vec<(String, String)> {
        self.pairs.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone()))).collect()
    }

    /// The value of `key` parsed as a whole number.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, String> {
        self.get(key)
            .map(|v| v.parse().map_err(|_| format!("setting `{key}` must be a whole number, not `{v}`")))
            .transpose()
    }

    /// A backend's own configured name (the host sets `backend_name`), for
    /// the connections it receives messages on.
    pub fn backend_name(&self) -> Result<String, String> {
        self.get("backend_name").map(str::to_owned).ok_or_else(|| "the host did not set `backend_name`".to_owned())
    }
}
