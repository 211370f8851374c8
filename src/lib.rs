pub use mailveil_core::*;
