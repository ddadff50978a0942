//! Flight's session actions: `SetSessionOptions`, `GetSessionOptions` and `CloseSession`, with
//! their messages (arrow-flight does not generate them; these follow `Flight.proto`).
//!
//! The options are the session's settings: `catalog` (always `quiver`), `schema` (the current
//! database) and every setting `SET` takes, by the same name (`quiver.ef`, ...). Setting one is
//! the same as running `SET`; an option sent without a value is reset to its default.

use std::collections::HashMap;

use prost::Message;
use quiver_planner::settings::{SettingError, DATABASE_SETTING};
use quiver_planner::QuiverSession;
use tonic::Status;

use crate::error::FlightServerError;

/// The action that sets session options (opening a session if there is none).
pub const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
/// The action that lists the session's options.
pub const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
/// The action that closes the session.
pub const CLOSE_SESSION: &str = "CloseSession";

/// The session option naming the catalog.
const CATALOG_OPTION: &str = "catalog";
/// The session option naming the current database.
const SCHEMA_OPTION: &str = "schema";

/// A session option's value (`Flight.proto` `SessionOptionValue`); no value means "reset".
#[derive(Clone, PartialEq, Message)]
pub struct SessionOptionValue {
    /// The value.
    #[prost(oneof = "session_option_value::OptionValue", tags = "1, 2, 3, 4, 5")]
    pub option_value: Option<session_option_value::OptionValue>,
}

/// The kinds of [`SessionOptionValue`].
pub mod session_option_value {
    /// A list of strings.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringListValue {
        /// The strings.
        #[prost(string, repeated, tag = "1")]
        pub values: Vec<String>,
    }

    /// One value.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum OptionValue {
        /// A string.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// A boolean.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// An integer.
        #[prost(sfixed64, tag = "3")]
        Int64Value(i64),
        /// A floating-point number.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// A list of strings.
        #[prost(message, tag = "5")]
        StringListValue(StringListValue),
    }
}

/// `Flight.proto` `SetSessionOptionsRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct SetSessionOptionsRequest {
    /// The options to set, by name.
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

/// `Flight.proto` `SetSessionOptionsResult`: the options that could not be set.
#[derive(Clone, PartialEq, Message)]
pub struct SetSessionOptionsResult {
    /// Why each refused option was refused.
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionError>,
}

/// `Flight.proto` `SetSessionOptionsResult.Error`.
#[derive(Clone, PartialEq, Message)]
pub struct SetSessionOptionError {
    /// A [`SetSessionOptionErrorValue`].
    #[prost(enumeration = "SetSessionOptionErrorValue", tag = "1")]
    pub value: i32,
}

/// `Flight.proto` `SetSessionOptionsResult.ErrorValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SetSessionOptionErrorValue {
    /// Unknown.
    Unspecified = 0,
    /// No option has this name.
    InvalidName = 1,
    /// The option does not take this value.
    InvalidValue = 2,
    /// The option cannot be set.
    Error = 3,
}

/// `Flight.proto` `GetSessionOptionsRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct GetSessionOptionsRequest {}

/// `Flight.proto` `GetSessionOptionsResult`.
#[derive(Clone, PartialEq, Message)]
pub struct GetSessionOptionsResult {
    /// Every option with its value.
    #[prost(map = "string, message", tag = "1")]
    pub session_options: HashMap<String, SessionOptionValue>,
}

/// `Flight.proto` `CloseSessionRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct CloseSessionRequest {}

/// `Flight.proto` `CloseSessionResult`.
#[derive(Clone, PartialEq, Message)]
pub struct CloseSessionResult {
    /// A [`CloseSessionStatus`].
    #[prost(enumeration = "CloseSessionStatus", tag = "1")]
    pub status: i32,
}

/// `Flight.proto` `CloseSessionResult.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CloseSessionStatus {
    /// Unknown.
    Unspecified = 0,
    /// The session is closed.
    Closed = 1,
    /// The session is closing.
    Closing = 2,
    /// The session cannot be closed.
    NotCloseable = 3,
}

/// Decodes an action's body as `M`, naming the message when it is malformed.
pub fn decode_body<M: Message + Default>(body: &[u8], what: &str) -> Result<M, Status> {
    M::decode(body)
        .map_err(|e| FlightServerError::InvalidRequest(format!("malformed {what}: {e}")).into())
}

/// Applies `request` to `session`; the result names each option that was not set.
pub async fn set_options(
    session: &QuiverSession,
    request: SetSessionOptionsRequest,
) -> SetSessionOptionsResult {
    let mut errors = HashMap::new();
    let mut names: Vec<_> = request.session_options.into_iter().collect();
    // The current database first, so that other options see it.
    names.sort_by_key(|(name, _)| name != SCHEMA_OPTION);
    for (name, value) in names {
        if let Err(refused) = set_option(session, &name, value).await {
            tracing::debug!("session option '{name}' refused: {refused}");
            let value = match refused {
                SettingError::UnknownName(_) => SetSessionOptionErrorValue::InvalidName,
                SettingError::InvalidValue { .. } => SetSessionOptionErrorValue::InvalidValue,
            };
            errors.insert(
                name,
                SetSessionOptionError {
                    value: value as i32,
                },
            );
        }
    }
    SetSessionOptionsResult { errors }
}

async fn set_option(
    session: &QuiverSession,
    name: &str,
    value: SessionOptionValue,
) -> Result<(), SettingError> {
    let invalid = |message: &str| SettingError::InvalidValue {
        name: name.to_string(),
        message: message.to_string(),
    };
    let text = match value.option_value {
        None => None,
        Some(value) => Some(option_text(value).ok_or_else(|| invalid("lists are not taken"))?),
    };
    match (name, text) {
        (CATALOG_OPTION, None) => Ok(()),
        (CATALOG_OPTION, Some(catalog)) if catalog == session.current_catalog() => Ok(()),
        (CATALOG_OPTION, Some(_)) => Err(invalid("Quiver has one catalog, 'quiver'")),
        (SCHEMA_OPTION, None) => session.reset_setting(DATABASE_SETTING).await,
        (SCHEMA_OPTION, Some(database)) => session.use_database(&database).await,
        (name, None) => session.reset_setting(name).await,
        (name, Some(text)) => session.set_setting(name, &text).await,
    }
}

/// A value as the text `SET` takes; `None` for a list.
fn option_text(value: session_option_value::OptionValue) -> Option<String> {
    use session_option_value::OptionValue;
    match value {
        OptionValue::StringValue(s) => Some(s),
        OptionValue::BoolValue(b) => Some(b.to_string()),
        OptionValue::Int64Value(i) => Some(i.to_string()),
        OptionValue::DoubleValue(d) => Some(d.to_string()),
        OptionValue::StringListValue(_) => None,
    }
}

/// The options of `session`: `catalog`, `schema` and the `quiver.*` settings, each typed as its
/// value reads (an integer, a boolean, or a string).
pub fn get_options(session: &QuiverSession) -> GetSessionOptionsResult {
    use session_option_value::OptionValue;
    let string = |s: String| SessionOptionValue {
        option_value: Some(OptionValue::StringValue(s)),
    };
    let mut options = HashMap::new();
    options.insert(
        CATALOG_OPTION.to_string(),
        string(session.current_catalog().to_string()),
    );
    options.insert(
        SCHEMA_OPTION.to_string(),
        string(session.current_database()),
    );
    for (name, value) in session.quiver_settings() {
        let value = value.map(|text| {
            if let Ok(i) = text.parse::<i64>() {
                OptionValue::Int64Value(i)
            } else if let Ok(b) = text.parse::<bool>() {
                OptionValue::BoolValue(b)
            } else {
                OptionValue::StringValue(text)
            }
        });
        options.insert(
            name,
            SessionOptionValue {
                option_value: value,
            },
        );
    }
    GetSessionOptionsResult {
        session_options: options,
    }
}

/// The result of a close that succeeded.
pub fn closed() -> CloseSessionResult {
    CloseSessionResult {
        status: CloseSessionStatus::Closed as i32,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use quiver_catalog::location::DataRoot;
    use quiver_catalog::Catalog;
    use session_option_value::OptionValue;

    use super::*;

    fn value(v: OptionValue) -> SessionOptionValue {
        SessionOptionValue {
            option_value: Some(v),
        }
    }

    #[tokio::test]
    async fn options_set_the_settings_and_refuse_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = DataRoot::open(dir.path().to_str().expect("utf-8"))
            .await
            .expect("root");
        let session = QuiverSession::new(Arc::new(Catalog::open(root).await.expect("catalog")));
        session.sql("CREATE DATABASE shop").await.expect("db");
        let request = SetSessionOptionsRequest {
            session_options: HashMap::from([
                ("quiver.ef".to_string(), value(OptionValue::Int64Value(64))),
                (
                    "quiver.use_index".to_string(),
                    value(OptionValue::StringValue("false".into())),
                ),
                (
                    "schema".to_string(),
                    value(OptionValue::StringValue("shop".into())),
                ),
                (
                    "quiver.nope".to_string(),
                    value(OptionValue::BoolValue(true)),
                ),
                (
                    "quiver.nprobes".to_string(),
                    value(OptionValue::StringValue("lots".into())),
                ),
                (
                    "catalog".to_string(),
                    value(OptionValue::StringValue("other".into())),
                ),
            ]),
        };
        // Through the wire format, as a client sends it.
        let request = decode_body::<SetSessionOptionsRequest>(&request.encode_to_vec(), "request")
            .expect("decode");
        let result = set_options(&session, request).await;
        let mut refused: Vec<_> = result
            .errors
            .iter()
            .map(|(name, e)| (name.as_str(), e.value))
            .collect();
        refused.sort();
        assert_eq!(
            refused,
            [
                ("catalog", SetSessionOptionErrorValue::InvalidValue as i32),
                (
                    "quiver.nope",
                    SetSessionOptionErrorValue::InvalidName as i32
                ),
                (
                    "quiver.nprobes",
                    SetSessionOptionErrorValue::InvalidValue as i32
                ),
            ]
        );
        let options = get_options(&session).session_options;
        assert_eq!(
            options["quiver.ef"].option_value,
            Some(OptionValue::Int64Value(64))
        );
        assert_eq!(
            options["quiver.use_index"].option_value,
            Some(OptionValue::BoolValue(false))
        );
        assert_eq!(
            options["schema"].option_value,
            Some(OptionValue::StringValue("shop".into()))
        );
        assert_eq!(
            options["catalog"].option_value,
            Some(OptionValue::StringValue("quiver".into()))
        );

        let reset = SetSessionOptionsRequest {
            session_options: HashMap::from([
                ("quiver.ef".to_string(), SessionOptionValue::default()),
                ("schema".to_string(), SessionOptionValue::default()),
            ]),
        };
        assert!(set_options(&session, reset).await.errors.is_empty());
        let options = get_options(&session).session_options;
        let fresh = QuiverSession::new(session.catalog().clone());
        assert_eq!(
            options["quiver.ef"],
            get_options(&fresh).session_options["quiver.ef"]
        );
        assert_eq!(session.current_database(), "default");
    }
}
