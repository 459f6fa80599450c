//! In-memory backend for tests. (STUB)
