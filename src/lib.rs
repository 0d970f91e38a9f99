//! ironic-agent: the OpenStack Ironic Python Agent protocol in one small
//! static binary. See README.md for what it does and how to run it; the
//! wire contract is IPA's (`ironic_python_agent/`), cited module by module.

#![deny(unsafe_code)]

pub mod agent;
pub mod api;
pub mod commands;
pub mod config;
pub mod error;
pub mod hardware;
pub mod image;
pub mod ironic;
pub mod logbuf;
pub mod root;
pub mod sys;
pub mod tls;
pub mod util;
