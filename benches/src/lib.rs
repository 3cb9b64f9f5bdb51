//! Benchmark support: servers in child processes of the bench binary, closed-loop
//! HTTP/1.1 keep-alive load on 127.0.0.1, one-off requests, and the numbers they yield.

pub mod base_process;
pub mod client;
pub mod guests;
pub mod load;
pub mod polyglot;
pub mod server_process;
pub mod verdict;
