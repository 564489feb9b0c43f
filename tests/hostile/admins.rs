//! The last admin of an organisation cannot be demoted or deleted.
