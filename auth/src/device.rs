//! Issue 19: `arsync login` (to come).
