//! One integration-test binary (ripgrep style): CLI behaviour against the real
//! binary and the real embedding model, with fake LLM servers on loopback.

mod common;
mod sim;
mod index_cli;
mod classify_knn;
mod classify_llm;
mod eval;
mod newcomer;
mod report_layout;
mod calibrate;
mod arbiter;
mod neighbours;
mod store;
mod collections;
mod serve;
mod bench;
mod two_stage;
mod routing;
mod embed;
mod helpdesk_fake;
mod helpdesk;
mod helpdesk_learn;
mod qdrant;
mod parity;
mod replicas;
mod cluster;
mod durability;
mod hostile;
mod input_edges;
mod first_hour;
mod dayone;
mod multilingual;
mod doctor;
mod provenance;
mod review;
mod review_ui;
