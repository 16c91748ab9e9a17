//! Reports for people: the markdown of `check` (a pull-request comment and
//! the GitHub step summary). Rendering only; every number comes from
//! [`crate::eval`] and [`crate::stats`].

pub mod markdown;
