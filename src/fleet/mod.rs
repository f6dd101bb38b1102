//! Many databases from one poolwatch: one sampler task per database.
pub mod config;
