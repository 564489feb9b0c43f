//! SIGTERM ends the server within its grace, whatever its clients hold open.
