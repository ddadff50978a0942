//! The registry of Quiver's JSON actions: the [`JsonAction`] trait, what an action can reach
//! ([`ActionContext`]), how it fails ([`ActionError`]), and the names taken by Flight and Flight
//! SQL ([`RESERVED_ACTIONS`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_flight::ActionType;
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use quiver_catalog::CatalogError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;

use crate::auth::Caller;
use crate::error::{status_from_catalog, status_from_datafusion};
use crate::service::execution::Executor;

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
