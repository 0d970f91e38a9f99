//! `network_data.json` from a config drive or virtual media as
//! `ironic-agent network-setup` reads it (`network::data::parse`), then
//! applied (`network::apply::apply`) to three NICs through a kernel that
//! records the calls and fails some of them (the input's last byte picks
//! which): every interface name handed to the kernel is a valid Linux
//! name, and every name the outcome lists for DHCP is one the kernel
//! knows.
#![no_main]

use ironic_agent::network::apply::{apply, valid_ifname, Kernel, Nic};
use ironic_agent::network::data::{parse, Route};
use ironic_agent::sys::netlink::{BondOptions, LinkChange};
use libfuzzer_sys::fuzz_target;
use std::io;
use std::net::IpAddr;

struct Fake {
    names: Vec<String>,
    fail: u8,
    n: u32,
}

impl Fake {
    fn call(&mut self, name: &str) -> io::Result<()> {
        assert!(valid_ifname(name), "{name:?} handed to the kernel");
        self.n += 1;
        if self.fail != 0 && self.n % u32::from(self.fail) == 0 {
            return Err(io::Error::other("refused"));
        }
        Ok(())
    }
    fn create(&mut self, name: &str) -> io::Result<()> {
        self.call(name)?;
        self.names.push(name.to_string());
        Ok(())
    }
}

impl Kernel for Fake {
    fn set_link(&mut self, dev: &str, _c: &LinkChange) -> io::Result<()> {
        self.call(dev)
    }
    fn add_bond(&mut self, name: &str, _m: Option<[u8; 6]>, _o: &BondOptions) -> io::Result<()> {
        self.create(name)
    }
    fn enslave(&mut self, slave: &str, bond: &str) -> io::Result<()> {
        assert!(valid_ifname(bond));
        self.call(slave)
    }
    fn add_vlan(
        &mut self,
        name: &str,
        parent: &str,
        _id: u16,
        _m: Option<[u8; 6]>,
    ) -> io::Result<()> {
        assert!(valid_ifname(parent));
        self.create(name)
    }
    fn add_addr(&mut self, dev: &str, _ip: IpAddr, prefix: u8) -> io::Result<()> {
        assert!(prefix <= 128);
        self.call(dev)
    }
    fn add_route(&mut self, dev: &str, _r: &Route) -> io::Result<()> {
        self.call(dev)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&fail, json)) = data.split_last() else {
        return;
    };
    let Ok(nd) = parse(&String::from_utf8_lossy(json)) else {
        return;
    };
    let nics: Vec<Nic> = (0..3u8)
        .map(|i| Nic {
            name: format!("eth{i}"),
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56 + i],
        })
        .collect();
    let mut k = Fake {
        names: nics.iter().map(|n| n.name.clone()).collect(),
        fail: fail % 8,
        n: 0,
    };
    let out = apply(&nd, &nics, &mut k);
    for d in out.dhcp.iter().chain(&out.dhcp6).chain(&out.configured) {
        assert!(
            k.names.contains(d),
            "{d:?} in the outcome, unknown to the kernel"
        );
    }
});
