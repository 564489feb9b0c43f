//! A disabled connector stays disabled; a mistake on the runner's machine is not a source failure.
