//! The filter language of every table: bare words, `field op value`, `and`/`or`/`not`, parentheses,
//! ordinal severity (`sev>=high`) and relative dates (`first_seen<7d`). It compiles to a parameterised
//! SQL condition; values never become SQL text.

mod filter;

pub use filter::{compile, Field, FieldKind, FilterError, Param, Compiled};
