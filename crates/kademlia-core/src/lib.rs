//! placeholder: being written

pub mod id;
pub mod time;
pub use id::{Distance, ID_BITS, ID_LEN, NodeId, ParseIdError};
pub use time::Instant;
