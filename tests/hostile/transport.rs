//! Unauthenticated clients cannot exhaust memory or connections.
