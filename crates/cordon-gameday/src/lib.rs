//! Game Day fixtures: environments described declaratively, built in an
//! AWS account (in practice the local emulator, or a Game Day sandbox), and
//! everything needed around them: findings about the built resources, a
//! deterministic snapshot of what cordon's playbooks can change with a
//! field-by-field diff, and cleanup.
//!
//! ```no_run
//! # async fn example(clients: &cordon_aws::client::AwsClients) -> Result<(), Box<dyn std::error::Error>> {
//! use cordon_gameday::{EnvironmentSpec, diff_states, provision, snapshot_state};
//! let fixture = provision(clients, &EnvironmentSpec::compromised_instance()).await?;
//! let finding = fixture.instance_finding("web-01")?.detail();
//! let before = snapshot_state(clients, &fixture).await?;
//! // … run cordon on `finding`, roll it back …
//! assert!(diff_states(&before, &snapshot_state(clients, &fixture).await?).is_empty());
//! fixture.cleanup(clients).await;
//! # Ok(()) }
//! ```
//!
//! On top of the fixtures, Game Days: [`scenario`] files (environment,
//! findings, faults, approvals, expectations), [`run::run_scenario`] (which
//! `cordon gameday run` calls: it runs cordon as a child process against the
//! emulator it starts) and the [`scorecard`] with its KPIs.
//!
//! Tests and the `cordon-gameday` binary (which `scripts/demo` runs) build
//! their environments here, so there is one builder to trust. Every
//! resource it creates carries the [`OWNER_TAG`], so a run's resources can
//! be found again ([`discover`]) and deleted ([`cleanup`]) even after a
//! crash lost the [`Fixture`].

mod cleanup;
pub mod emulator;
mod error;
mod finding;
mod fixture;
pub mod ledger;
mod principal;
mod provision;
pub mod run;
pub mod scenario;
pub mod scorecard;
pub mod spec;
mod state;

pub use cleanup::{CleanupReport, cleanup, cleanup_journaled, discover};
pub use error::{FixtureError, GamedayError, ProvisionError, ScenarioError};
pub use finding::{
    AccessKeyFinding, DEFAULT_FINDING_TYPE, DEFAULT_KEY_FINDING_TYPE, FindingInterface,
    InstanceFinding,
};
pub use fixture::{
    AccessKey, AutoScalingGroup, Eni, Fixture, Group, Instance, InstanceProfile, LoadBalancer,
    OwnedResource, ResourceKind, Role, SecretAccessKey, SecurityGroup, Subnet, TargetGroup, User,
    Volume, Vpc,
};
pub use provision::{ProvisionOptions, provision, provision_journaled, provision_with};
pub use spec::EnvironmentSpec;
pub use state::{diff_states, side_effects, snapshot_state, volume_snapshots};

/// The tag on every resource the builder creates; its value is the run's
/// owner id ([`Fixture::owner`]). Game Days on a real account refuse to
/// touch what does not carry it.
pub const OWNER_TAG: &str = "cordon:gameday";
/// The IAM path under which each run puts its roles, profiles and users
/// (`/cordon-gameday/<owner>/`), so a run's IAM resources can be listed
/// without reading every tag of the account.
pub const IAM_PATH_PREFIX: &str = "/cordon-gameday/";

/// The IAM path of the run `owner`.
pub fn iam_path(owner: &str) -> String {
    format!("{IAM_PATH_PREFIX}{owner}/")
}
/// AMI used when the account lists none (moto ships this id).
pub const FALLBACK_AMI: &str = "ami-12c6146b";
