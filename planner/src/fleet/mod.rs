//! Fleets (issue #18): many devices measured at once. A fleet is an Ansible inventory
//! ([`inventory`]): the convention the people who run fleets already keep.

pub mod hardware;
pub mod inventory;
pub mod measure;

pub use inventory::{FleetHost, Inventory, InventoryError};
pub mod run;

#[cfg(test)]
pub(crate) mod tests {
    use super::FleetHost;
    use crate::device::{DeviceSpec, Transport};

    /// A device on this host (nothing is started until it is used).
    pub(crate) fn local_host(name: &str, class: &str) -> FleetHost {
        FleetHost {
            name: name.into(),
            spec: DeviceSpec {
                transport: Transport::Local { exec_prefix: None },
                runtime_target: None,
                runtime: None,
                timeout: std::time::Duration::from_secs(1),
            },
            profile: None,
            class: class.into(),
            groups: vec!["all".into()],
        }
    }
}
