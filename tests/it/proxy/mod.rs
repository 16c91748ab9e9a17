//! `promptgate serve`: serving, live reload, crashes and back-pressure, official clients.

mod clients;
mod crash;
mod reload;
mod serving;
