//! Subcommands with their own flags.

pub mod device;
