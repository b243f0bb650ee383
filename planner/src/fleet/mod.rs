//! Fleets (issue #18): many devices measured at once. A fleet is an Ansible inventory
//! ([`inventory`]): the convention the people who run fleets already keep.

pub mod hardware;
pub mod inventory;
pub mod measure;

pub use inventory::{FleetHost, Inventory, InventoryError};
pub mod run;
