//! Malformed requests answer INVALID_ARGUMENT with a sentence, and parsers never panic.
