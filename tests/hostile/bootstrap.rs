//! The first start writes the admin token or commits nothing; the data folder and database files are private.
