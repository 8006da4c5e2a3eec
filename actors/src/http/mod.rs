//! HTTP servers: the REST API (port 8081, `/rest-api`) and the web pages (port 8080).

pub mod rest;
pub mod web;
