//! Integration tests: the real server on port 0 with a temp data dir, over HTTP.
//! (One binary for all areas, so it links once.)

mod admin;
mod admin_backups;
mod admin_collections;
mod admin_live;
mod admin_ops;
mod admin_records;
mod admin_robustness;
mod admin_settings;
mod admin_support;
mod attack;
mod auth;
mod auth_flows;
mod batch;
mod bounds_budget;
mod bounds_server;
mod bounds_storage;
mod cli;
mod collections;
mod collections_pb;
mod errors;
mod files_serve;
mod hardening;
mod helpers;
mod mail;
mod mail_links;
mod numbers;
mod openapi;
mod persistence;
mod pocketbase_admin;
mod query;
mod ratelimit;
mod realtime;
mod records;
mod references;
