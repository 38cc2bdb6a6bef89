//! A rebuild of every projection while writes keep coming: none fails.
