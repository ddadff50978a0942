//! Quiver's custom Flight actions (`DoAction` / `ListActions`): JSON in, JSON out.
//!
//! An action is a type implementing [`JsonAction`]: a name, a description, a request type and a
//! response type (both serde), and an async `run`. [`ActionRegistry::standard`] lists the
//! actions the server offers; adding one is one `register` line there.
//!
//! Invariants:
//! - The body of an action is one JSON document (an empty body means `{}`); a body that is not
//!   valid JSON for the action's request type is refused with `InvalidArgument` naming the
//!   action and the problem, before the action runs.
//! - The result stream holds exactly one `Result` whose body is the response as JSON.
//! - Action names are unique and never shadow a Flight or Flight SQL action
//!   ([`RESERVED_ACTIONS`]); registering one that does is an error at start-up.
//! - Actions run with the caller already authenticated ([`ActionContext::caller`]).
//!
//! - [`registry`]: the [`JsonAction`] trait and the [`ActionRegistry`];
//! - [`server_info`]: the `GetServerInfo` action;
//! - [`snapshots`]: snapshots, restores and jobs (`CreateSnapshot`, `RestoreSnapshot`, `GetJob`,
//!   ...).

pub mod registry;
pub mod server_info;
pub mod snapshots;

pub use registry::{
    ActionContext, ActionError, ActionRegistry, JsonAction, RegistryError, RESERVED_ACTIONS,
};
pub use server_info::{GetServerInfo, GetServerInfoRequest, ServerInfo};

impl ActionRegistry {
    /// The actions `quiver serve` offers.
    pub fn standard() -> Result<Self, RegistryError> {
        let mut registry = Self::default();
        registry.register(GetServerInfo)?;
        snapshots::register(&mut registry)?;
        Ok(registry)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::auth::Caller;
    use crate::service::execution::Executor;

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
            executor: Executor::new(
                catalog,
                Default::default(),
                Default::default(),
                Default::default(),
            )
            .expect("executor"),
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
