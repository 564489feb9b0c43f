//! Free text from clients and runners is bounded, and echoes of input are cut with a marker.
