//! A full or read-only disk fails writes cleanly, and the server recovers without a restart.
