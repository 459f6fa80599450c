//! sled backend. (STUB)
