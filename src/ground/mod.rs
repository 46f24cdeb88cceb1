//! The test ground: real PostgreSQL clusters in temporary directories, used
//! by the test suite and by `pgdrill demo`.

pub mod compare;
