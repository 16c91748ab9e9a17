//! Reports for people: the markdown of `check` (a pull-request comment and
//! the GitHub step summary), the HTML of `drift`, and the SVG charts they
//! and later reports share. Rendering only; every number comes from
//! [`crate::eval`], [`crate::drift`] and [`crate::stats`].

pub mod compare;
pub mod drift_html;
pub mod markdown;
pub mod svg;
