//! A session's settings by name, as `SET` changes them: set, reset to the default, listed.
//! Flight SQL session options (`SetSessionOptions`, `GetSessionOptions`) go through here, so an
//! option and the `SET` of the same name are one thing.

use datafusion::common::config::ExtensionOptions;
use datafusion::common::DataFusionError;
use datafusion::logical_expr::{LogicalPlan, ResetVariable, SetVariable, Statement};
use quiver_catalog::DEFAULT_DATABASE;

use crate::catalog::provider::CATALOG_NAME;
use crate::config::QuiverConfig;
use crate::error::external;
use crate::session::QuiverSession;

/// The setting that names the session's current database.
pub const DATABASE_SETTING: &str = "datafusion.catalog.default_schema";

/// Why a setting could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// No setting has this name.
    #[error("unknown setting '{0}'")]
    UnknownName(String),
    /// The setting exists but does not take this value.
    #[error("invalid value for '{name}': {message}")]
    InvalidValue {
        /// The setting.
        name: String,
        /// Why the value was refused.
        message: String,
    },
}

impl From<SettingError> for DataFusionError {
    fn from(e: SettingError) -> Self {
        DataFusionError::Plan(e.to_string())
    }
}

impl QuiverSession {
    /// Whether `name` is a setting of this session (`quiver.*` or DataFusion's own).
    pub fn has_setting(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if name.starts_with("quiver.") {
            return self.quiver_settings().iter().any(|(key, _)| *key == name);
        }
        name.starts_with("datafusion.runtime.")
            || self
                .context()
                .state()
                .config_options()
                .entries()
                .iter()
                .any(|entry| entry.key == name)
    }

    /// Sets `name` to `value`, exactly as `SET name = value` does.
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), SettingError> {
        if !self.has_setting(name) {
            return Err(SettingError::UnknownName(name.to_string()));
        }
        let plan = LogicalPlan::Statement(Statement::SetVariable(SetVariable {
            variable: name.to_ascii_lowercase(),
            value: value.to_string(),
        }));
        self.run_setting(name, plan).await
    }

    /// Sets `name` back to the value a new session has.
    pub async fn reset_setting(&self, name: &str) -> Result<(), SettingError> {
        let lower = name.to_ascii_lowercase();
        if lower == DATABASE_SETTING {
            return self.set_setting(&lower, DEFAULT_DATABASE).await;
        }
        if let Some(key) = lower.strip_prefix("quiver.") {
            let default = QuiverConfig::default()
                .entries()
                .into_iter()
                .find(|entry| entry.key == key)
                .and_then(|entry| entry.value)
                .ok_or_else(|| SettingError::UnknownName(name.to_string()))?;
            return self.set_setting(&lower, &default).await;
        }
        if !self.has_setting(&lower) {
            return Err(SettingError::UnknownName(name.to_string()));
        }
        let plan =
            LogicalPlan::Statement(Statement::ResetVariable(ResetVariable { variable: lower }));
        self.run_setting(name, plan).await
    }

    /// Makes `database` the current database (the Flight SQL session option `schema`); it must
    /// exist.
    pub async fn use_database(&self, database: &str) -> Result<(), SettingError> {
        let invalid = |message: String| SettingError::InvalidValue {
            name: DATABASE_SETTING.to_string(),
            message,
        };
        let state = self
            .catalog()
            .state()
            .await
            .map_err(|e| invalid(crate::user_message(&external(e))))?;
        state
            .require_database(database)
            .map_err(|e| invalid(e.to_string()))?;
        self.set_setting(DATABASE_SETTING, database).await
    }

    /// The catalog every name resolves in; Quiver has one.
    pub fn current_catalog(&self) -> &'static str {
        CATALOG_NAME
    }

    /// Quiver's own settings (`quiver.*`) with their current values.
    pub fn quiver_settings(&self) -> Vec<(String, Option<String>)> {
        self.context()
            .state()
            .config_options()
            .extensions
            .get::<QuiverConfig>()
            .map(ExtensionOptions::entries)
            .unwrap_or_default()
            .into_iter()
            .map(|entry| (format!("quiver.{}", entry.key), entry.value))
            .collect()
    }

    async fn run_setting(&self, name: &str, plan: LogicalPlan) -> Result<(), SettingError> {
        self.context()
            .execute_logical_plan(plan)
            .await
            .map(|_| ())
            .map_err(|e| SettingError::InvalidValue {
                name: name.to_string(),
                message: crate::user_message(&e),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use quiver_catalog::location::DataRoot;
    use quiver_catalog::Catalog;

    use super::*;

    async fn session() -> (tempfile::TempDir, QuiverSession) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = DataRoot::open(dir.path().to_str().expect("utf-8"))
            .await
            .expect("root");
        let catalog = Catalog::open(root).await.expect("catalog");
        (dir, QuiverSession::new(Arc::new(catalog)))
    }

    fn setting(session: &QuiverSession, name: &str) -> Option<String> {
        session
            .quiver_settings()
            .into_iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value)
    }

    #[tokio::test]
    async fn settings_are_set_reset_and_checked_by_name() {
        let (_dir, session) = session().await;
        session.set_setting("quiver.ef", "64").await.expect("set");
        assert_eq!(setting(&session, "quiver.ef").as_deref(), Some("64"));
        session.reset_setting("quiver.ef").await.expect("reset");
        assert_eq!(
            setting(&session, "quiver.ef"),
            QuiverConfig::default()
                .entries()
                .into_iter()
                .find(|e| e.key == "ef")
                .and_then(|e| e.value)
        );
        assert!(matches!(
            session.set_setting("quiver.nope", "1").await,
            Err(SettingError::UnknownName(_))
        ));
        assert!(matches!(
            session.set_setting("quiver.ef", "many").await,
            Err(SettingError::InvalidValue { .. })
        ));
        session
            .set_setting("datafusion.execution.batch_size", "1024")
            .await
            .expect("a DataFusion setting");
        session
            .reset_setting("datafusion.execution.batch_size")
            .await
            .expect("reset a DataFusion setting");
    }

    #[tokio::test]
    async fn the_current_database_must_exist() {
        let (_dir, session) = session().await;
        assert!(matches!(
            session.use_database("nowhere").await,
            Err(SettingError::InvalidValue { .. })
        ));
        session.sql("CREATE DATABASE shop").await.expect("create");
        session.use_database("shop").await.expect("use");
        assert_eq!(session.current_database(), "shop");
        session
            .reset_setting(DATABASE_SETTING)
            .await
            .expect("reset");
        assert_eq!(session.current_database(), DEFAULT_DATABASE);
    }
}
