//! Quiver's custom Flight actions (`DoAction` / `ListActions`): JSON in, JSON out.
//!
//! An action is a type implementing [`JsonAction`]: a name, a description, a request type and a
//! response type (both serde), and an async `run`. [`ActionRegistry::standard`] lists the
//! actions the server offers; adding one is one `register` line there. Snapshot and job
//! operations plug in the same way.
//!
//! Invariants:
//! - The body of an action is one JSON document (an empty body means `{}`); a body that is not
//!   valid JSON for the action's request type is refused with `InvalidArgument` naming the
//!   action and the problem, before the action runs.
//! - The result stream holds exactly one `Result` whose body is the response as JSON.
//! - Action names are unique and never shadow a Flight or Flight SQL action
//!   ([`RESERVED_ACTIONS`]); registering one that does is an error at start-up.
//! - Actions run with the caller already authenticated ([`ActionContext::caller`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_flight::ActionType;
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use quiver_catalog::CatalogError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::auth::Caller;
use crate::error::{status_from_catalog, status_from_datafusion};
use crate::execution::Executor;

/// Action names that belong to Flight and Flight SQL.
pub const RESERVED_ACTIONS: &[&str] = &[
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "CancelQuery",
    "CancelFlightInfo",
    "RenewFlightEndpoint",
    "SetSessionOptions",
    "GetSessionOptions",
    "CloseSession",
];

/// What an action can reach.
#[derive(Debug, Clone)]
pub struct ActionContext {
    /// Runs SQL and reaches the catalog (`executor.catalog()`).
    pub executor: Executor,
    /// Who called.
    pub caller: Caller,
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// SQL planning or execution failed.
    #[error(transparent)]
    Sql(#[from] DataFusionError),
    /// The request is wrong in a way its JSON shape cannot express.
    #[error("{0}")]
    InvalidRequest(String),
}

impl From<ActionError> for Status {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Catalog(e) => status_from_catalog(&e),
            ActionError::Sql(e) => status_from_datafusion(&e),
            ActionError::InvalidRequest(m) => Status::invalid_argument(m),
        }
    }
}

/// A custom action with a JSON request and response.
#[async_trait]
pub trait JsonAction: Send + Sync + 'static {
    /// The request body's type.
    type Request: DeserializeOwned + Send;
    /// The response body's type.
    type Response: Serialize + Send;
    /// The action type clients send.
    const NAME: &'static str;
    /// What `ListActions` says about it: what it does, its request and its response.
    const DESCRIPTION: &'static str;

    /// Runs the action.
    async fn run(
        &self,
        context: &ActionContext,
        request: Self::Request,
    ) -> Result<Self::Response, ActionError>;
}

/// A [`JsonAction`] with its types erased, so that actions of different types share a registry.
#[async_trait]
trait RegisteredAction: Send + Sync {
    fn description(&self) -> &'static str;
    async fn call(&self, context: &ActionContext, body: &[u8]) -> Result<Vec<u8>, Status>;
}

#[async_trait]
impl<A: JsonAction> RegisteredAction for A {
    fn description(&self) -> &'static str {
        A::DESCRIPTION
    }

    async fn call(&self, context: &ActionContext, body: &[u8]) -> Result<Vec<u8>, Status> {
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            body
        };
        let request: A::Request = serde_json::from_slice(body).map_err(|e| {
            Status::invalid_argument(format!("invalid JSON body for action '{}': {e}", A::NAME))
        })?;
        let response = self.run(context, request).await?;
        serde_json::to_vec(&response).map_err(|e| {
            Status::internal(format!("encoding the result of '{}' failed: {e}", A::NAME))
        })
    }
}

/// A registration that cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Two actions with one name, or a name Flight SQL already uses.
    #[error("action name '{0}' is already taken")]
    DuplicateName(&'static str),
}

/// The custom actions the server offers, by name.
#[derive(Default)]
pub struct ActionRegistry {
    actions: BTreeMap<&'static str, Arc<dyn RegisteredAction>>,
}

impl std::fmt::Debug for ActionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.actions.keys()).finish()
    }
}

impl ActionRegistry {
    /// The actions `quiver serve` offers.
    pub fn standard() -> Result<Self, RegistryError> {
        let mut registry = Self::default();
        registry.register(GetServerInfo)?;
        crate::snapshot_actions::register(&mut registry)?;
        Ok(registry)
    }

    /// Adds an action.
    pub fn register<A: JsonAction>(&mut self, action: A) -> Result<(), RegistryError> {
        if RESERVED_ACTIONS.contains(&A::NAME) || self.actions.contains_key(A::NAME) {
            return Err(RegistryError::DuplicateName(A::NAME));
        }
        self.actions.insert(A::NAME, Arc::new(action));
        Ok(())
    }

    /// The registered actions, for `ListActions`.
    pub fn action_types(&self) -> Vec<ActionType> {
        self.actions
            .iter()
            .map(|(name, action)| ActionType {
                r#type: name.to_string(),
                description: action.description().to_string(),
            })
            .collect()
    }

    /// Runs the action `name` with a JSON `body`; returns its JSON response.
    pub async fn call(
        &self,
        name: &str,
        context: &ActionContext,
        body: &[u8],
    ) -> Result<Vec<u8>, Status> {
        let action = self.actions.get(name).ok_or_else(|| {
            Status::unimplemented(format!(
                "unknown action '{name}': ListActions shows the actions this server offers"
            ))
        })?;
        action.call(context, body).await
    }
}

/// `GetServerInfo`: the server's name and version, for clients to check they reached Quiver.
#[derive(Debug)]
pub struct GetServerInfo;

/// The (empty) request of [`GetServerInfo`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetServerInfoRequest {}

/// The response of [`GetServerInfo`].
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerInfo {
    /// Always `"Quiver"`.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// The data root the server serves.
    pub data_root: String,
    /// The authenticated user, if auth is on.
    pub user: Option<String>,
}

#[async_trait]
impl JsonAction for GetServerInfo {
    type Request = GetServerInfoRequest;
    type Response = ServerInfo;
    const NAME: &'static str = "GetServerInfo";
    const DESCRIPTION: &'static str = "The server's name and version. Request: {} (or an empty \
        body). Response: {\"name\", \"version\", \"data_root\", \"user\"}.";

    async fn run(
        &self,
        context: &ActionContext,
        _request: GetServerInfoRequest,
    ) -> Result<ServerInfo, ActionError> {
        Ok(ServerInfo {
            name: "Quiver".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_root: context.executor.catalog().root().display().to_string(),
            user: context.caller.user.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    #[derive(Deserialize, Serialize)]
    struct EchoBody {
        text: String,
    }

    #[async_trait]
    impl JsonAction for Echo {
        type Request = EchoBody;
        type Response = EchoBody;
        const NAME: &'static str = "Echo";
        const DESCRIPTION: &'static str = "echo";

        async fn run(&self, _: &ActionContext, request: EchoBody) -> Result<EchoBody, ActionError> {
            if request.text.is_empty() {
                return Err(ActionError::InvalidRequest("text is empty".into()));
            }
            Ok(request)
        }
    }

    #[test]
    fn names_are_unique_and_never_shadow_flight_sql() {
        let mut registry = ActionRegistry::standard().expect("standard");
        registry.register(Echo).expect("new name");
        assert!(matches!(
            registry.register(Echo),
            Err(RegistryError::DuplicateName("Echo"))
        ));
        struct Shadow;
        #[async_trait]
        impl JsonAction for Shadow {
            type Request = GetServerInfoRequest;
            type Response = ();
            const NAME: &'static str = "CancelFlightInfo";
            const DESCRIPTION: &'static str = "";
            async fn run(
                &self,
                _: &ActionContext,
                _: GetServerInfoRequest,
            ) -> Result<(), ActionError> {
                Ok(())
            }
        }
        assert!(registry.register(Shadow).is_err());
        let names: Vec<_> = registry
            .action_types()
            .into_iter()
            .map(|a| a.r#type)
            .collect();
        assert!(names.iter().any(|n| n == "Echo"), "{names:?}");
        assert!(names.iter().any(|n| n == "GetServerInfo"), "{names:?}");
        assert!(names.iter().any(|n| n == "RestoreSnapshot"), "{names:?}");
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "sorted and unique: {names:?}"
        );
    }

    #[tokio::test]
    async fn bodies_are_checked_before_the_action_runs() {
        let dir = tempfile::tempdir().expect("dir");
        let root = quiver_catalog::location::DataRoot::open(&dir.path().to_string_lossy())
            .await
            .expect("root");
        let catalog = Arc::new(quiver_catalog::Catalog::open(root).await.expect("catalog"));
        let context = ActionContext {
            executor: Executor::new(catalog, Default::default()),
            caller: Caller { user: None },
        };
        let mut registry = ActionRegistry::standard().expect("standard");
        registry.register(Echo).expect("register");

        let out = registry
            .call("Echo", &context, br#"{"text":"hi"}"#)
            .await
            .expect("valid body");
        assert_eq!(out, br#"{"text":"hi"}"#);
        let err = registry
            .call("Echo", &context, b"{not json")
            .await
            .expect_err("bad json");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message()
                .starts_with("invalid JSON body for action 'Echo'"),
            "{}",
            err.message()
        );
        let err = registry
            .call("Echo", &context, br#"{"text":""}"#)
            .await
            .expect_err("empty");
        assert_eq!(err.message(), "text is empty");
        let err = registry
            .call("Nope", &context, b"")
            .await
            .expect_err("unknown");
        assert_eq!(err.code(), tonic::Code::Unimplemented);

        let info = registry
            .call("GetServerInfo", &context, b"")
            .await
            .expect("info");
        let info: ServerInfo = serde_json::from_slice(&info).expect("json");
        assert_eq!(info.name, "Quiver");
        let err = registry
            .call("GetServerInfo", &context, br#"{"extra":1}"#)
            .await
            .expect_err("unknown field");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
