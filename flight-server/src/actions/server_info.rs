//! `GetServerInfo`: the server's name and version, for clients to check they reached Quiver, and
//! counts an operator watches (open sessions, plans made and reused).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::registry::{ActionContext, ActionError, JsonAction};

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
    /// Client sessions open now.
    pub sessions: usize,
    /// Statements planned since the server started.
    pub plans_made: u64,
    /// Executions of prepared statements (and cached ad-hoc queries) that reused their plan
    /// since the server started.
    pub plans_reused: u64,
    /// Of those, executions that ran a physical plan kept from an earlier execution.
    pub physical_plans_reused: u64,
}

#[async_trait]
impl JsonAction for GetServerInfo {
    type Request = GetServerInfoRequest;
    type Response = ServerInfo;
    const NAME: &'static str = "GetServerInfo";
    const DESCRIPTION: &'static str = "The server's name and version. Request: {} (or an empty \
        body). Response: {\"name\", \"version\", \"data_root\", \"user\", \"sessions\", \
        \"plans_made\", \"plans_reused\", \"physical_plans_reused\"}.";

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
            sessions: context.executor.sessions().len(),
            plans_made: context.executor.plans().made(),
            plans_reused: context.executor.plans().reused(),
            physical_plans_reused: context.executor.plans().physical(),
        })
    }
}
