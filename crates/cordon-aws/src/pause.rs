//! The pause switch: one file, or one SSM parameter, that halts all automatic
//! action at once. The executor checks it before every step not yet run; a
//! case that meets it stops there, journaled, and resumes once it is off.

use std::path::PathBuf;
use std::pin::Pin;

use cordon_core::executor::{ErrorKind, PauseSwitch, Paused};

use crate::client::AwsClients;
use crate::ops;

/// The value of the SSM parameter that means "paused".
pub const PAUSED_VALUE: &str = "paused";

/// The switches a process obeys: a file that pauses by existing, and
/// optionally an SSM parameter whose value is [`PAUSED_VALUE`].
#[derive(Debug, Clone)]
pub struct PauseSwitches {
    /// Present means paused (`<journal dir>/PAUSE` by default).
    pub file: PathBuf,
    /// The parameter and the clients to read it with (the responder's
    /// account: one switch for every account cordon acts in).
    pub parameter: Option<(AwsClients, String)>,
}

impl PauseSwitches {
    async fn check(&self) -> Option<Paused> {
        if self.file.exists() {
            return Some(Paused {
                switch: format!("the pause file {}", self.file.display()),
                unpause: format!("remove {} to unpause", self.file.display()),
            });
        }
        let (clients, name) = self.parameter.as_ref()?;
        let request = clients.ssm.get_parameter().name(name);
        match clients.call(&ops::SSM_GET_PARAMETER, name, request).await {
            Ok(output) => {
                let value = output.parameter().and_then(|p| p.value()).unwrap_or("");
                (value.trim() == PAUSED_VALUE).then(|| Paused {
                    switch: format!("the SSM parameter {name} (value `{PAUSED_VALUE}`)"),
                    unpause: format!(
                        "set it to anything else to unpause (`aws ssm put-parameter --name {name} --value running --overwrite`)"
                    ),
                })
            }
            // No parameter: nobody pulled the switch.
            Err(e) if e.kind == ErrorKind::NotFound || e.code == "ParameterNotFound" => None,
            // A brake that cannot be read does not read as "go".
            Err(e) => Some(Paused {
                switch: format!(
                    "the SSM parameter {name}, which cannot be read ({})",
                    e.code
                ),
                unpause: format!(
                    "let cordon read it (`ssm:GetParameter` on {name}) or drop --pause-parameter"
                ),
            }),
        }
    }
}

impl PauseSwitch for PauseSwitches {
    fn paused(&self) -> Pin<Box<dyn Future<Output = Option<Paused>> + Send + '_>> {
        Box::pin(self.check())
    }
}
