//! `cordon status --live`: what AWS says now about what the journal flags.
//!
//! The journal flags an ENI as OPEN when it entered the allow-all untrack
//! group (isolation phase 1) and was never seen leaving it. Only AWS can say
//! whether it is still there: this reads each flagged ENI's groups back.

use aws_sdk_ec2::types::Filter;
use cordon_aws::client::AwsClients;
use cordon_aws::ops;
use serde::Serialize;

/// What AWS says about one ENI the journal flags as open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct LiveEni {
    pub network_interface_id: String,
    /// `open` (in an untrack group), `closed` (not in one), `gone` (deleted),
    /// or `unknown` (could not be read; see `detail`).
    pub state: String,
    /// The ENI's groups now (name and id), or the read error.
    pub detail: String,
}

/// Whether `id` looks like an ENI id (`eni-` and 8 or 17 lowercase hex), so a
/// tampered journal cannot widen the filter with a wildcard.
fn is_eni_id(id: &str) -> bool {
    id.strip_prefix("eni-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Reads the flagged ENIs' groups; an ENI in a group named `*-untrack` is open.
pub async fn open_enis(clients: &AwsClients, flagged: &[String]) -> Vec<LiveEni> {
    let ids: Vec<String> = flagged.iter().filter(|id| is_eni_id(id)).cloned().collect();
    let mut out: Vec<LiveEni> = flagged
        .iter()
        .filter(|id| !is_eni_id(id))
        .map(|id| LiveEni {
            network_interface_id: id.clone(),
            state: "unknown".to_string(),
            detail: "not an ENI id; the journal may have been edited".to_string(),
        })
        .collect();
    if ids.is_empty() {
        return out;
    }
    let request = clients.ec2.describe_network_interfaces().filters(
        Filter::builder()
            .name("network-interface-id")
            .set_values(Some(ids.clone()))
            .build(),
    );
    let found = match clients
        .call(
            &ops::EC2_DESCRIBE_NETWORK_INTERFACES,
            &ids.join(","),
            request,
        )
        .await
    {
        Ok(found) => found,
        Err(e) => {
            out.extend(ids.iter().map(|id| LiveEni {
                network_interface_id: id.clone(),
                state: "unknown".to_string(),
                detail: e.to_string(),
            }));
            return out;
        }
    };
    for id in &ids {
        let eni = found
            .network_interfaces()
            .iter()
            .find(|n| n.network_interface_id() == Some(id.as_str()));
        let entry = match eni {
            None => LiveEni {
                network_interface_id: id.clone(),
                state: "gone".to_string(),
                detail: "no such network interface any more".to_string(),
            },
            Some(eni) => {
                let groups: Vec<String> = eni
                    .groups()
                    .iter()
                    .map(|g| {
                        format!(
                            "{} ({})",
                            g.group_name().unwrap_or("?"),
                            g.group_id().unwrap_or("?")
                        )
                    })
                    .collect();
                let open = eni
                    .groups()
                    .iter()
                    .any(|g| g.group_name().is_some_and(|n| n.ends_with("-untrack")));
                LiveEni {
                    network_interface_id: id.clone(),
                    state: if open { "open" } else { "closed" }.to_string(),
                    detail: groups.join(", "),
                }
            }
        };
        out.push(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_eni_ids_reach_the_filter() {
        assert!(is_eni_id("eni-0123abcd"));
        assert!(is_eni_id("eni-0123456789abcdef0"));
        assert!(!is_eni_id("eni-*"));
        assert!(!is_eni_id("eni-0123ABCD"));
        assert!(!is_eni_id("i-0123abcd"));
    }
}
