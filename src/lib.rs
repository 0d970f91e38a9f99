//! ironic-agent: the OpenStack Ironic Python Agent protocol in one small
//! static binary. See README.md for what it does and how to run it, and
//! ARCHITECTURE.md for the layers below; the wire contract is IPA's
//! (`ironic_python_agent/`), cited module by module.
//!
//! Modules are layered; each imports only from layers below it (checked by
//! `scripts/check-layers` in the lint suite):
//!
//! 1. `sys` (the only `unsafe`), `error`, `util`, `root`;
//! 2. `config`, `tls`, `logbuf`;
//! 3. `disk` (block devices, partition tables, signatures), `fs` (FAT,
//!    ISO 9660), `efi` (NVRAM variables and boot entries), `network` (the
//!    ramdisk's network before the agent: virtual media, network_data,
//!    DHCPv6);
//! 4. `image`: the deploy pipeline, download to the disk's last byte;
//! 5. `hardware`: the managers, inventory, erase, RAID and their steps;
//! 6. `agent`: the state every thread shares, the command results;
//! 7. `commands`: IPA's extensions;
//! 8. `api` and `ironic`: the REST API and the Ironic client;
//! 9. `main.rs`: start-up.

#![deny(unsafe_code)]

pub mod error;
pub mod root;
pub mod sys;
pub mod util;

pub mod config;
pub mod logbuf;
pub mod tls;

pub mod disk;
pub mod efi;
pub mod fs;
pub mod network;

pub mod image;

pub mod hardware;

pub mod agent;

pub mod commands;

pub mod api;
pub mod ironic;
