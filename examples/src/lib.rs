//! # liftbridge-examples
//!
//! Runnable examples. Each binary in `src/bin/` does one thing a new user wants to see. The client examples
//! (publish, subscribe, create stream) arrive with the client SDK; today the commit-log example shows the
//! storage engine the server is built on.
