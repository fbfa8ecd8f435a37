//! Bitrix24: the REST client (OAuth refresh and per-portal rate limiting built in) and the form codec of
//! the requests Bitrix24 posts to us.

pub mod client;
pub mod event;
pub mod form;
pub mod limiter;
pub mod oauth;
