//! RapidSMS's `contrib.default`: answers every message no app handled with
//! the configured default response, sent as an `ErrorMessage`.
//!
//! Settings: `default_response` (`%(project_name)s` is replaced; an empty
//! text sends nothing) and `project_name`.

use rapidwasm_guest::{App, IncomingMessage, Settings, log};

const DEFAULT_RESPONSE: &str = "Sorry, %(project_name)s could not understand your message.";
const PROJECT_NAME: &str = "RapidSMS";

/// The default-response app; put it last in the app list.
pub struct DefaultApp {
    /// The response text, placeholders already filled in; `None` sends nothing.
    response: Option<String>,
}

impl Default for DefaultApp {
    fn default() -> Self {
        DefaultApp { response: Some(DEFAULT_RESPONSE.replace("%(project_name)s", PROJECT_NAME)) }
    }
}

rapidwasm_guest::app! {
    impl App for DefaultApp {
        fn configure(&mut self, settings: &Settings) -> Result<(), String> {
            let template = settings.get_or("default_response", DEFAULT_RESPONSE);
            let project = settings.get_or("project_name", PROJECT_NAME);
            self.response = (!template.is_empty()).then(|| template.replace("%(project_name)s", project));
            Ok(())
        }

        fn default(&self, msg: &IncomingMessage) -> bool {
            if let Some(response) = &self.response
                && let Err(err) = msg.error(response)
            {
                log::error(&format!("could not queue the default response: {err:?}"));
            }
            false
        }
    }
}
