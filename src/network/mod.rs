//! The ramdisk's network before the agent starts (issue 18): what IPA's
//! DIB images get from `copy_config_from_vmedia`, glean and
//! `dhcp-all-interfaces`, done by this binary through the kernel
//! (rtnetlink, [`crate::sys::netlink`]) instead of shell tools.
//!
//! - [`data`]: `network_data.json`, parsed leniently (bad items dropped
//!   with a reason);
//! - [`apply`]: bonds, VLANs, addresses and routes on the NICs present,
//!   DHCP given back to whatever could not be configured;
//! - [`vmedia`]: the virtual media found by label, read with the agent's
//!   ISO 9660 reader; IPA's configuration copied from it;
//! - [`setup`]: `ironic-agent network-setup`, run by /init before DHCP;
//! - [`dhcp6`]: `ironic-agent dhcp6 IFACE`, the stateful DHCPv6 client
//!   /init runs next to udhcpc.

pub mod apply;
pub mod data;
pub mod dhcp6;
pub mod setup;
pub mod vmedia;
