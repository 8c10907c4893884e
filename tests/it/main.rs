//! One integration binary: each module spawns the real `stowage` binary on a
//! free port with a temp data dir and talks to it over gRPC.

mod auth;
mod blob;
mod catalog;
mod cli;
mod corruption;
mod damage;
mod durability;
mod harness;
mod metrics;
mod rebuild;
mod report;
mod retention;
mod s3;
mod tls;
