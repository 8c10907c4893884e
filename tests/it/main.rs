//! One integration binary: each module spawns the real `stowage` binary on a
//! free port with a temp data dir and talks to it over gRPC, except
//! `txn_props`, which drives an `Engine` in process.

mod auth;
mod blob;
mod catalog;
mod cli;
mod corruption;
mod damage;
mod delta;
mod disk;
mod durability;
mod harness;
mod limits;
mod metrics;
mod names;
mod operator;
mod optimize;
mod rebuild;
mod recovery;
mod report;
mod report_page;
mod retention;
mod s3;
mod space;
mod tls;
mod txn_props;
