//! Text a publisher or another user chose cannot drive the terminal of a person reading CLI tables.
