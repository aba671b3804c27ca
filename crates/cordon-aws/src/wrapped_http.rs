//! An HTTP client that is another one with every connector it builds
//! wrapped: how cordon's attempt budgets ([`crate::attempts`]) and injected
//! faults ([`crate::faults`]) sit under the SDK on the one call path, each
//! adding only its connector and delegating the rest to the client it wraps.

use std::fmt;
use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;

/// Builds the connector that goes in front of the wrapped client's own.
type Wrap = Arc<dyn Fn(SharedHttpConnector) -> SharedHttpConnector + Send + Sync>;

/// `inner`, with each of its connectors passed through `wrap`.
pub(crate) fn wrapped(
    inner: SharedHttpClient,
    wrap: impl Fn(SharedHttpConnector) -> SharedHttpConnector + Send + Sync + 'static,
) -> SharedHttpClient {
    SharedHttpClient::new(WrappedClient {
        inner,
        wrap: Arc::new(wrap),
    })
}

struct WrappedClient {
    inner: SharedHttpClient,
    wrap: Wrap,
}

impl fmt::Debug for WrappedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedClient")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl HttpClient for WrappedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        (self.wrap)(self.inner.http_connector(settings, components))
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner
            .validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}
