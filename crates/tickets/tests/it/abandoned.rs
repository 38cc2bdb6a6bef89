//! Clients that drop their connections mid-request at random.
